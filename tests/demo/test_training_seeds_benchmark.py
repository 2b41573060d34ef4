"""benchmarks/demo_training_seeds.py pools the runs of two result documents only when they can be compared."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "demo_training_seeds.py"


@pytest.fixture(scope="module")
def seeds():
    spec = importlib.util.spec_from_file_location("demo_training_seeds", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(full: float, no_image: float, passed: bool) -> dict:
    points = {"full": full, "no_image": no_image, "shuffle_image": 50.0, "full-no_image": full - no_image}
    row = {k: {"point": v, "low": v - 5, "high": v + 5} for k, v in points.items()}
    return {**row, "criterion": {"passed": passed}}


def _document(runs: dict[str, dict], threads: int = 2, bootstrap: int = 2000, **command) -> dict:
    return {"date": "2026-12-07T02:25:26+00:00", "threads": threads,
            "settings": {"bootstrap": bootstrap, "train_seed": [int(s) for s in runs]}, "runs": runs, **command}


def test_later_runs_join_and_replace_the_earlier_ones(seeds):
    earlier = _document({"0": _run(61.6, 45.2, True), "1": _run(62.5, 48.0, False)},
                        command="python benchmarks/demo_training_seeds.py --seeds 0 1 --threads 2",
                        machine={"load_average_at_start": [1.8, 1.9, 1.9]})
    later = _document({"1": _run(70.0, 40.0, True), "2": _run(58.0, 50.0, False)},
                      commands=[{"command": "python benchmarks/demo_training_seeds.py --seeds 1 2 --threads 2",
                                 "date": "2026-12-07T03:00:00+00:00", "seeds": [1, 2]}])
    doc = seeds.merged(earlier, later)
    assert list(doc["runs"]) == ["0", "1", "2"] and doc["settings"]["train_seed"] == [0, 1, 2]
    assert doc["runs"]["1"]["full"]["point"] == 70.0  # the later run of a seed wins
    assert doc["criterion_passed"] == "2 of 3"
    assert doc["spread"]["full"] == {"min": 58.0, "max": 70.0}
    assert [c["seeds"] for c in doc["commands"]] == [[0, 1], [1, 2]]
    # a single command takes the document's date and its one load reading, taken when it was written
    assert doc["commands"][0]["date"] == "2026-12-07T02:25:26+00:00"
    assert doc["commands"][0]["load_average_at_end"] == [1.8, 1.9, 1.9]


def test_runs_of_another_thread_count_or_settings_are_refused(seeds):
    earlier = _document({"0": _run(61.6, 45.2, True)}, command="c")
    with pytest.raises(SystemExit, match="threads"):
        seeds.merged(earlier, _document({"1": _run(60.0, 45.0, True)}, threads=1, commands=[]))
    with pytest.raises(SystemExit, match="settings"):
        seeds.check_poolable(earlier, _document({}, bootstrap=1000, commands=[]))
    seeds.check_poolable(earlier, _document({}, commands=[]))  # the seeds alone differ: poolable


def test_the_committed_runs_pool_with_a_new_invocation_of_the_current_settings(seeds):
    # the settings as written hold lists where the demo's settings hold tuples: read back, they must still match
    committed = seeds.json.loads((SCRIPT.parent / "results" / "demo_training_seeds.json").read_text())
    assert len(committed["runs"]) >= 10
    seeds.check_poolable(committed, seeds.new_document([10], 2, add=True))
    with pytest.raises(SystemExit, match="threads"):
        seeds.check_poolable(committed, seeds.new_document([10], 1, add=True))


def test_a_run_started_above_the_core_count_has_noisy_seconds(seeds, monkeypatch):
    monkeypatch.setattr(seeds.os, "cpu_count", lambda: 2)
    started = seeds.dt.datetime(2026, 12, 7, 6, 0, tzinfo=seeds.dt.timezone.utc)
    monkeypatch.setattr(seeds, "cpu_model", lambda: "AMD EPYC (AVX-512)")
    busy = seeds.run_timing(393.24, started, (2.05, 2.0, 2.0))
    assert busy == {"seconds": 393.2, "started": "2026-12-07T06:00:00+00:00", "cpu": "AMD EPYC (AVX-512)",
                    "load_average_at_start": [2.05, 2.0, 2.0], "seconds_noisy": True}
    assert seeds.run_timing(350.0, started, (1.83, 2.07, 1.96))["seconds_noisy"] is False  # the 1-minute load decides
