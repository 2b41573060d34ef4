"""The CPU path of benchmarks/train_throughput.py runs and writes a complete result file."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest


SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "train_throughput.py"


@pytest.mark.slow  # three model sizes, five configurations each: about 16 s
def test_cpu_benchmark_writes_figures(tmp_path):
    spec = importlib.util.spec_from_file_location("train_throughput", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    payload = module.main(["--steps", "1", "--rounds", "2", "--seq", "16", "--batch", "1",
                           "--out", str(tmp_path / "r.json")])
    saved = json.loads((tmp_path / "r.json").read_text())
    assert saved["benchmark"] == "train_throughput" and saved["machine"]["cpu_count"] >= 1
    assert saved["rounds"] == 2 and isinstance(saved["noisy"], bool) and saved["load_average_max"] >= 0
    assert saved["results"]["tiny"]["full"]["timed_steps"] == 2  # one step in each of two rounds
    answers = {"answers 1/16, all logits", "answers 1/16, kept logits"}
    for name in ("tiny", "10m"):
        rows = saved["results"][name]
        assert set(rows) == {"full", "full+ckpt", "lora"} | answers
        assert rows["full"]["ratio_to_full"] == 1.0
        assert all(r["tokens_per_second"] > 0 for r in rows.values())
        assert rows["lora"]["trainable_params"] < rows["full"]["trainable_params"]
    assert set(saved["results"]["10m-qwen-vocab"]) == answers
    for name in ("tiny", "10m", "10m-qwen-vocab"):
        rows = saved["results"][name]
        assert rows["answers 1/16, all logits"]["ratio_to_all_logits"] == 1.0
        # the same model and batch either way: the loss agrees (float32 sums in another order)
        assert abs(rows["answers 1/16, kept logits"]["loss_last"] - rows["answers 1/16, all logits"]["loss_last"]) < 1e-4
    assert 8e6 < saved["results"]["10m"]["full"]["params"] < 14e6
    assert payload["results"] == saved["results"]


def test_threads_benchmark_measures_both_policies_under_both_conditions(tmp_path):
    import sys

    sys.path.insert(0, str(SCRIPT.parent))
    spec = importlib.util.spec_from_file_location("threads_benchmark", SCRIPT.with_name("threads.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main(["--rounds", "1", "--steps", "1", "--seq", "16", "--batch", "1", "--out", str(tmp_path / "t.json")])
    saved = json.loads((tmp_path / "t.json").read_text())
    assert saved["benchmark"] == "threads" and set(saved["results"]) == {"idle", "one core busy elsewhere"}
    for row in saved["results"].values():
        assert set(row["seconds_per_step"]) == {"every core", "automatic"}
        assert all(s > 0 for s in row["seconds_per_step"].values())
        assert 1 <= row["automatic_threads"][0] <= row["every_core_threads"]
