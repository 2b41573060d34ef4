"""benchmarks/demo_pixel_probe.py: a template drawn into the pixels is read, a template that is not is at its prior."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.demo.scripts import load_benchmark


def _record(i: int, template: str, answer: str, split: str) -> dict:
    options = ["No", "Yes"]
    return {"id": f"{template}-{i}", "template_id": template, "modality": "mammography", "split": split,
            "label": {"options": options, "answer_index": options.index(answer)},
            "media": [{"kind": "image", "path": f"m/{i}.png"}]}


def test_probe_reads_brightness_and_not_noise(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    (tmp_path / "corpus" / "m").mkdir(parents=True)
    rows = {"train": [], "bench": []}
    for i in range(80):
        bright = i % 2 == 0
        pixels = rng.normal(170 if bright else 70, 25, (48, 40)).clip(0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(tmp_path / "corpus" / "m" / f"{i}.png")
        split = "train" if i < 60 else "bench"
        rows[split].append(_record(i, "bright", "Yes" if bright else "No", split))
        rows[split].append(_record(i, "coin", "Yes" if rng.random() < 0.7 else "No", split))  # not in the pixels
    (tmp_path / "task_set").mkdir()
    for split, name in (("train", "train.jsonl"), ("bench", "bench.jsonl")):
        (tmp_path / "task_set" / name).write_text("".join(json.dumps(r) + "\n" for r in rows[split]))
    result = load_benchmark("demo_pixel_probe").probe(tmp_path)
    by = {t["template"]: t for t in result["templates"]}
    assert by["bright"]["probe"] == 1.0 and by["bright"]["prior"] == 0.5
    assert by["coin"]["probe"] <= by["coin"]["prior"] + 0.15
    assert result["items"] == 40 and result["probe"] == pytest.approx((20 + by["coin"]["probe"] * 20) / 40, abs=1e-3)


def test_probe_needs_a_task_set(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="run the demo's stages up to `task set`"):
        load_benchmark("demo_pixel_probe").probe(tmp_path)
