"""benchmarks/selection.py runs end to end on a tiny case and records what issue 31 asks of it.

Behind `slow`: every measurement is a fresh interpreter (for honest peak memory), seven of them here, about 30 s —
the tool is checked when it is changed or run, not in every default suite."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_selection_benchmark_records_medians_ratios_and_host_reads(tmp_path: Path) -> None:
    out = tmp_path / "selection.json"
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "selection.py"), "--only", "400:16:clustered",
                    "--rounds", "2", "--out", str(out)], check=True, capture_output=True, text=True, timeout=300)
    results = json.loads(out.read_text())
    (case,) = results["cases"]
    assert case["identical_indices"] is True and case["rounds"] == 2
    for method in ("stored", "streaming", "dense"):
        assert len(case[method]["seconds_rounds"]) == 2 and case[method]["seconds_median"] > 0
    assert case["stored"]["stats"]["stored_matrix"] and not case["streaming"]["stats"]["stored_matrix"]
    assert case["speedup_over_dense"] > 0 and case["speedup_over_streaming"] > 0
    assert 0 < case["host_reads_per_selection"]["static_shapes"] <= 10
    assert isinstance(case["noisy"], bool) and case["load_average_max"] >= 0
    table = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "selection.py"), "--table", "--out", str(out)],
                           check=True, capture_output=True, text=True).stdout
    assert "| 400 | 16 | clustered |" in table
