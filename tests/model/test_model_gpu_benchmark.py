"""The GPU benchmark script's --tiny path runs on CPU and writes a well-formed result."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "model_gpu.py"


def test_model_gpu_benchmark_tiny_path(tmp_path):
    spec = importlib.util.spec_from_file_location("model_gpu_bench", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "model_gpu.json"
    module.main(["--tiny", "--device", "cpu", "--repeats", "1", "--text-tokens", "96", "--tiles", "24",
                 "--latency-tiles", "24", "--output", str(out)])
    doc = json.loads(out.read_text())
    assert doc["benchmark"] == "model_gpu" and doc["flavour"] == "tiny" and doc["text_tokens"] == 96
    assert doc["machine"]["cpu_count"] >= 1 and doc["date"]
    # the load when the script started and when it wrote its result: three averages each
    assert len(doc["machine"]["load_average_at_start"]) == len(doc["machine"]["load_average_at_end"]) == 3
    for part in ("text_only", "with_slide"):
        assert len(doc["train_step"][part]["seconds"]) == 1 and doc["train_step"][part]["median_seconds"] > 0
    assert doc["slide_latency"]["tiles"] == 24
    assert doc["slide_latency"]["longnet_projector_selection"]["median_seconds"] > 0
