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


def _tool_env(env: dict[str, str]) -> dict[str, str]:
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", **env}
    environment.pop("PYTHONPATH", None)
    return environment


def run_tool(command: list[str], cwd: Path, timeout: float = 600, **env: str) -> subprocess.CompletedProcess:
    """Run an outside tool with a clean environment of its own (no coverage of ours, one thread per library)."""
    return Tool(command, cwd, **env).result(timeout)


class Tool:
    """An outside tool started now (as `run_tool` runs it) and waited for later, so that a module's tools can run
    side by side: most of each run is the tool importing its libraries on one core."""

    def __init__(self, command: list[str], cwd: Path, **env: str):
        self.command = command
        self.process = subprocess.Popen(command, cwd=cwd, env=_tool_env(env), stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True)
        self._done: subprocess.CompletedProcess | None = None

    def result(self, timeout: float = 600) -> subprocess.CompletedProcess:
        if self._done is None:
            try:
                out, err = self.process.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.stop()
                raise
            self._done = subprocess.CompletedProcess(self.command, self.process.returncode, out, err)
        result = self._done
        assert result.returncode == 0, f"{self.command[0]} failed:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
        return result

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.communicate()
