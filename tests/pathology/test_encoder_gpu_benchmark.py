"""The GPU encoder benchmark's --tiny path runs on CPU and writes a well-formed result."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "encoder_gpu.py"


def test_encoder_gpu_benchmark_tiny_path(tmp_path):
    spec = importlib.util.spec_from_file_location("encoder_gpu_bench", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "encoder_gpu.json"
    module.main(["--tiny", "--output", str(out)])
    doc = json.loads(out.read_text())
    assert doc["benchmark"] == "encoder_gpu" and doc["device"] == "cpu" and doc["date"]
    row = doc["results"]["tiny-random"]
    assert row["dim"] == 32 and row["production_tiles_per_second"] > 0 and row["float32_tiles_per_second"] > 0
    # On CPU the production path is float32 too: identical features.
    assert abs(row["mean_cosine_production_vs_float32"] - 1.0) < 1e-6
