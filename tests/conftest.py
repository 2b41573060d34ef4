"""Shared fixtures: the real sample files beside the repository (../shared/realdata)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
REALDATA = Path(os.environ.get("BREASTGPT_REALDATA", REPO.parent / "shared" / "realdata"))


@pytest.fixture(scope="session")
def realdata() -> Path:
    """The real sample files. Outside CI a missing folder skips; in CI (CI=true) it is an error, so the
    real-file tests can never silently stop running."""
    if not REALDATA.is_dir():
        message = f"real sample files not found at {REALDATA} (set BREASTGPT_REALDATA)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return REALDATA


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny BreastGPT checkpoint written by the training loop (a few steps; built once per test session)."""
    from tests.infer.checkpoint import train_tiny_checkpoint

    return train_tiny_checkpoint(tmp_path_factory.mktemp("tiny-checkpoint"))
