"""The CPU thread budget: explicit value, then BREASTGPT_THREADS, then the cores not busy elsewhere."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from breastgpt import threads


def _stat(tmp_path: Path, running: int) -> Path:
    path = tmp_path / "stat"
    path.write_text(f"cpu  1 2 3 4\nctxt 99\nprocs_running {running}\nprocs_blocked 0\n")
    return path


def test_busy_elsewhere_reads_procs_running_minus_the_reader(tmp_path: Path) -> None:
    assert threads.busy_elsewhere(_stat(tmp_path, 3)) == 2
    assert threads.busy_elsewhere(_stat(tmp_path, 1)) == 0
    assert threads.busy_elsewhere(tmp_path / "missing") is None
    (tmp_path / "odd").write_text("cpu 1 2\n")
    assert threads.busy_elsewhere(tmp_path / "odd") is None


def test_precedence_explicit_then_env_then_free_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(threads, "usable_cores", lambda: 8)
    monkeypatch.setattr(threads, "busy_elsewhere", lambda: 3)
    monkeypatch.delenv(threads.ENV_VAR, raising=False)
    assert threads.choose_threads() == 5
    monkeypatch.setenv(threads.ENV_VAR, "2")
    assert threads.choose_threads() == 2
    assert threads.choose_threads(7) == 7
    monkeypatch.delenv(threads.ENV_VAR)
    monkeypatch.setattr(threads, "busy_elsewhere", lambda: 20)  # a crowded machine still gets one thread
    assert threads.choose_threads() == 1
    monkeypatch.setattr(threads, "busy_elsewhere", lambda: None)  # no /proc: every usable core
    assert threads.choose_threads() == 8


@pytest.mark.parametrize("value", ["zero", "0", "-2", "1.5"])
def test_a_bad_environment_value_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv(threads.ENV_VAR, value)
    with pytest.raises(threads.ThreadsError, match=threads.ENV_VAR):
        threads.choose_threads()


def test_training_applies_the_configured_threads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from breastgpt.train.loop import set_determinism
    from tests.train.conftest import tiny_config

    before, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    monkeypatch.delenv(threads.ENV_VAR, raising=False)
    try:
        config = tiny_config(tmp_path)
        config.threads = 2
        set_determinism(config)  # deterministic recipe, explicit threads: honoured
        assert torch.get_num_threads() == 2
        config.threads = 0
        set_determinism(config)  # deterministic and automatic: one thread
        assert torch.get_num_threads() == 1
        config.deterministic = False
        monkeypatch.setenv(threads.ENV_VAR, "3")
        set_determinism(config)
        assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before)
        torch.use_deterministic_algorithms(deterministic)
