"""The interoperability environment (ms-swift, lmms-eval: scripts/ensure_interop_env.sh, built by `make test`).

Tests here run the outside tools themselves in that environment, as subprocesses. Without it they are skipped,
saying how to build it."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def interop_env() -> Path | None:
    configured = os.environ.get("BREASTGPT_INTEROP_ENV")
    pointer = ROOT / ".venv" / ".interop-env"
    folder = Path(configured) if configured else Path(pointer.read_text().strip()) if pointer.is_file() else None
    return folder if folder is not None and (folder / ".complete").is_file() else None


@pytest.fixture(scope="session")
def interop_bin() -> Path:
    folder = interop_env()
    if folder is None:
        pytest.skip("the ms-swift/lmms-eval environment is not built: run `bash scripts/ensure_interop_env.sh` "
                    "(`make test` builds it)")
    return folder / "bin"


def run_tool(command: list[str], cwd: Path, timeout: float = 600, **env: str) -> subprocess.CompletedProcess:
    """Run an outside tool with a clean environment of its own (no coverage of ours, one thread per library)."""
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", **env}
    environment.pop("PYTHONPATH", None)
    result = subprocess.run(command, cwd=cwd, env=environment, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{command[0]} failed:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
    return result
