"""Fixtures for the training tests: tiny configs on a small synthetic corpus, CPU only."""

from __future__ import annotations


import pytest

from breastgpt.train.config import TrainConfig
from breastgpt.train.recipes import get_recipe


def train_interrupted(config: TrainConfig, after_step: int) -> None:
    """Run `config` as a process that dies right after step `after_step` (its checkpoints stay as they were)."""
    from breastgpt.train import loop

    real_after = loop._after_step

    def stop(run, result, *args):
        real_after(run, result, *args)
        if run.step == after_step:
            raise KeyboardInterrupt

    loop._after_step = stop
    try:
        with pytest.raises(KeyboardInterrupt):
            loop.train(config)
    finally:
        loop._after_step = real_after


def tiny_config(out, steps: int = 4, **changes) -> TrainConfig:
    """tiny-debug with fewer steps and records, writing under ``out``."""
    config = get_recipe("tiny-debug")
    config.output_dir = str(out)
    config.schedule.max_steps = steps
    config.data.synthetic_records = 12
    config.checkpoint.every_steps = 0
    for key, value in changes.items():
        section, name = key.split("__")
        setattr(getattr(config, section), name, value)
    return config


@pytest.fixture
def tiny(tmp_path):
    return lambda steps=4, **kw: tiny_config(tmp_path / "run", steps, **kw)
