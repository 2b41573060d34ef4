"""Patient-level splits and the frozen benchmark manifest."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from breastgpt.corpus.splits import (SplitConfig, SplitError, assign_splits, split_for_patient,
                                     verify_manifest, write_bench_manifest)
from tests.corpus.test_records import sample_records


def test_proportions_and_determinism():
    config = SplitConfig(train=0.7, val=0.1, bench=0.2, salt="s")
    counts = Counter(split_for_patient("src", f"P{i}", config) for i in range(20000))
    assert abs(counts["train"] / 20000 - 0.7) < 0.015 and abs(counts["bench"] / 20000 - 0.2) < 0.015
    assert split_for_patient("src", "P1", config) == split_for_patient("src", "P1", config)
    other_salt = SplitConfig(train=0.7, val=0.1, bench=0.2, salt="t")
    assert any(split_for_patient("src", f"P{i}", config) != split_for_patient("src", f"P{i}", other_salt)
               for i in range(50))


def test_adding_patients_and_sources_never_moves_anyone():
    config = SplitConfig()
    first = assign_splits([("a", f"P{i}", None) for i in range(500)], config)
    grown = assign_splits([("b", f"Q{i}", None) for i in range(300)] + [("a", f"P{i}", None) for i in range(900)],
                          config)
    assert all(grown[k] == v for k, v in first.items())


def test_dataset_test_split_honoured_for_the_whole_patient():
    config = SplitConfig(honour_dataset_test=True)
    train_patients = [f"P{i}" for i in range(200) if split_for_patient("a", f"P{i}", config) == "train"]
    rows = [("a", train_patients[0], "train"), ("a", train_patients[0], "test"), ("a", train_patients[1], "train")]
    out = assign_splits(rows, config)
    assert out[("a", train_patients[0])] == "bench" and out[("a", train_patients[1])] == "train"
    assert assign_splits(rows, SplitConfig())[("a", train_patients[0])] == "train"


def test_bad_config():
    with pytest.raises(SplitError, match="sum to 1"):
        SplitConfig(train=0.9, val=0.1, bench=0.1)
    with pytest.raises(SplitError, match="unknown split config keys"):
        SplitConfig.from_dict({"train": 1.0, "val": 0, "bench": 0, "test": 0})


def test_bench_manifest_verifies_and_detects_changes(tmp_path):
    records = sample_records()
    for r in records[::2]:
        r.split = "bench"
    manifest = write_bench_manifest(records, tmp_path / "bench_manifest.json")
    assert manifest["n_items"] == len(records[::2])
    assert verify_manifest(tmp_path / "bench_manifest.json", records).ok
    changed = [type(r).from_dict(r.to_dict()) for r in records]
    changed[0].messages[-1]["content"] = "something else"
    changed[2].media[0].sha256 = "f" * 64
    changed[1].split = "bench"
    check = verify_manifest(tmp_path / "bench_manifest.json", changed)
    assert not check.ok
    text = "\n".join(check.problems)
    assert "answer_sha256 changed" in text and "media_sha256 changed" in text and "not in the manifest" in text
    data = json.loads((tmp_path / "bench_manifest.json").read_text())
    data["items"][0]["prompt_sha256"] = "0"
    (tmp_path / "bench_manifest.json").write_text(json.dumps(data))
    assert any("items_sha256" in p for p in verify_manifest(tmp_path / "bench_manifest.json", records).problems)
