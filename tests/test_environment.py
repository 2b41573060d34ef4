"""Each checkout imports its own code: two clones on one machine share the cached dependencies, not the install.

Runs `scripts/ensure_env.sh` (the set-up step of `make test` and `make demo`) in a second clone of this repository
against the same dependency cache, then asks both checkouts' `.venv` which `breastgpt` they import.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# What decides the cached environment's key: copied into the clone, so it reuses this checkout's environment even
# when these files have uncommitted changes (a second key would build a new multi-GB environment).
KEY_FILES = ("pyproject.toml", "constraints.txt", "scripts/ensure_env.sh", "scripts/list_deps.py")


def _imported_from(checkout: Path) -> Path:
    done = subprocess.run([str(checkout / ".venv" / "bin" / "python"), "-c",
                           "import breastgpt, pathlib; print(pathlib.Path(breastgpt.__file__).resolve())"],
                          capture_output=True, text=True, check=True, cwd="/")
    return Path(done.stdout.strip())


@pytest.fixture(scope="module")
def shared_env() -> Path:
    marker = ROOT / ".venv" / ".shared-env"
    if not (ROOT / ".git").exists() or not marker.is_file():
        pytest.skip("needs a git checkout set up by scripts/ensure_env.sh (make test does both)")
    assert Path(sys.prefix).resolve() == (ROOT / ".venv").resolve(), "run the suite with this checkout's .venv"
    return Path(marker.read_text().strip())


def test_two_clones_each_import_their_own_src(shared_env: Path, tmp_path: Path) -> None:
    clone = tmp_path / "second-clone"
    subprocess.run(["git", "clone", "--quiet", "--no-hardlinks", str(ROOT), str(clone)], check=True)
    for name in KEY_FILES:
        shutil.copyfile(ROOT / name, clone / name)
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(Path.home()),
           "BREASTGPT_ENV_CACHE": str(shared_env.parent), "PYTHON": sys._base_executable}
    started = time.perf_counter()
    done = subprocess.run(["bash", "scripts/ensure_env.sh"], cwd=clone, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    assert done.returncode == 0, done.stdout + done.stderr
    assert "reusing" in done.stdout, f"the clone built a new environment instead of reusing {shared_env}"
    print(f"warm set-up of a second clone: {seconds:.1f} s")

    assert _imported_from(clone) == clone.resolve() / "src" / "breastgpt" / "__init__.py"
    # The first checkout is untouched by the second one's set-up.
    assert _imported_from(ROOT) == ROOT / "src" / "breastgpt" / "__init__.py"
    assert (clone / ".venv" / ".shared-env").read_text().strip() == str(shared_env)
    version = subprocess.run([str(clone / ".venv" / "bin" / "breastgpt"), "--version"], capture_output=True,
                             text=True, cwd="/")
    assert version.returncode == 0 and version.stdout.strip()[0].isdigit(), version.stdout + version.stderr
    # The dependencies' own commands run with the clone's Python, so they also see the clone's code.
    accelerate = (clone / ".venv" / "bin" / "accelerate").read_text().splitlines()[0]
    assert accelerate == f"#!{clone.resolve()}/.venv/bin/python"
