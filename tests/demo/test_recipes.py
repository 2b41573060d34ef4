"""The demo's trainings are recipes (recipes/demo.py) derived from tiny-debug; the demo only fills in its run."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from breastgpt.demo.settings import FULL
from breastgpt.demo.training import encoder_config, train_config
from breastgpt.train.recipes import get_recipe


def _differences(a: dict, b: dict, prefix: str = "") -> set[str]:
    out = set()
    for key in set(a) | set(b):
        if isinstance(a.get(key), dict) and isinstance(b.get(key), dict):
            out |= _differences(a[key], b[key], f"{prefix}{key}.")
        elif a.get(key) != b.get(key):
            out.add(prefix + key)
    return out


def test_demo_recipes_are_tiny_debug_changed_where_the_demo_differs() -> None:
    tiny, demo = get_recipe("tiny-debug").to_dict(), get_recipe("demo-breastgpt").to_dict()
    assert _differences(tiny, demo) == {
        "name", "deterministic", "output_dir", "data.synthetic_records", "data.train", "data.format", "data.media_root",
        "data.slide_root", "data.max_length", "model.flavour", "model.path", "model.trainable", "optim.lr",
        "schedule.max_steps", "schedule.scheduler", "schedule.warmup_ratio", "schedule.micro_batch_size",
        "checkpoint.every_steps", "checkpoint.keep_last", "logging.every_steps", "logging.progress"}
    thumbnail = get_recipe("demo-thumbnail").to_dict()
    assert _differences(demo, thumbnail) == {"name", "output_dir", "data.slide_mode"}
    encoders = get_recipe("demo-encoders").to_dict()
    assert _differences(tiny, encoders) == {
        "name", "objective", "deterministic", "output_dir", "data.synthetic_records", "data.train", "data.media_root",
        "data.slide_root", "data.mirror", "data.group_by_length", "data.image_min_pixels", "data.image_max_pixels",
        "model.flavour", "model.path", "model.trainable",
        "optim.lr", "optim.grad_clip", "schedule.max_steps", "schedule.micro_batch_size", "checkpoint.every_steps",
        "checkpoint.keep_last", "logging.every_steps", "logging.progress"}


def test_the_demo_fills_in_its_run() -> None:
    ctx = SimpleNamespace(settings=FULL, out=Path("/run"), state={"corpus": Path("/run/corpus"),
                                                                 "task_set": Path("/run/task_set"),
                                                                 "init": Path("/run/init")})
    config = train_config(ctx, "thumbnail")
    assert config.output_dir == "/run/runs/thumbnail" and config.data.media_root == "/run/corpus"
    assert config.data.slide_mode == "thumbnail" and config.model.path == "/run/init"
    assert config.schedule.max_steps == FULL.train_steps and config.optim.lr == FULL.lr
    encoders = encoder_config(ctx, "thumbnail")
    assert encoders.objective == "encoders" and encoders.output_dir == "/run/runs/encoders-thumbnail"
    assert encoders.data.train == "/run/task_set/train.jsonl" and encoders.data.slide_mode == "thumbnail"
    assert encoders.schedule.max_steps == FULL.encoder_steps and encoders.schedule.micro_batch_size == 2 * FULL.micro_batch
    assert encoders.data.mirror is FULL.encoder_mirror and encoders.model.path == "/run/init"
    assert encoders.data.image_max_pixels == FULL.thumbnail_px ** 2 > FULL.image_long_side ** 2  # at stored sizes
    ctx.state["encoders:thumbnail"] = Path("/run/runs/encoders-thumbnail/final")
    assert train_config(ctx, "thumbnail").model.path == "/run/runs/encoders-thumbnail/final"


def test_train_seed_redraws_the_trainings_alone() -> None:
    from dataclasses import replace

    state = {"corpus": Path("/run/corpus"), "task_set": Path("/run/task_set"), "init": Path("/run/init")}
    default = SimpleNamespace(settings=FULL, out=Path("/run"), state=state)
    assert train_config(default, "breastgpt").seed == FULL.seed == encoder_config(default, "breastgpt").seed
    other = SimpleNamespace(settings=replace(FULL, train_seed=7), out=Path("/run"), state=state)
    assert train_config(other, "breastgpt").seed == 7 == encoder_config(other, "breastgpt").seed
    assert other.settings.seed == FULL.seed  # the cohort and the initial checkpoint keep theirs
