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
    config = SplitConfig()
    assert config.honour_dataset_test
    hashed = SplitConfig(honour_dataset_test=False)
    patients = [f"P{i}" for i in range(400)]
    by_hash = {p: split_for_patient("a", p, config) for p in patients}
    train_patients = [p for p in patients if by_hash[p] == "train"]
    bench_patients = [p for p in patients if by_hash[p] == "bench"]
    # one patient with a train and a test image (CBIS-DDSM: mass training + calc test), one official-train
    # patient the hash would send to the bench, and a source without an official test split
    rows = [("a", train_patients[0], "train"), ("a", train_patients[0], "test"), ("a", train_patients[1], "train"),
            ("a", bench_patients[0], "train"), *(("b", p, "train") for p in patients)]
    out = assign_splits(rows, config)
    assert out[("a", train_patients[0])] == "bench" and out[("a", train_patients[1])] == "train"
    assert out[("a", bench_patients[0])] in ("train", "val")
    assert [k for k, v in out.items() if v == "bench" and k[0] == "a"] == [("a", train_patients[0])]
    b_hash = {p: split_for_patient("b", p, config) for p in patients}
    assert {p: out[("b", p)] for p in patients} == b_hash  # no official test split: the hash alone
    assert sum(v == "bench" for k, v in out.items() if k[0] == "b") > 40
    ignored = assign_splits(rows, hashed)
    assert ignored[("a", train_patients[0])] == "train" and ignored[("a", bench_patients[0])] == "bench"


def test_bad_config():
    with pytest.raises(SplitError, match="sum to 1"):
        SplitConfig(train=0.9, val=0.1, bench=0.1)
    with pytest.raises(SplitError, match=r"split config: unknown key\(s\) \['test'\]; known keys are"):
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


# ---------------------------------------------------------------------------------------------- external


def test_external_sources_and_sites_are_held_out_whole():
    config = SplitConfig(salt="s", external=("b", "c:7"))
    rows = [("a", f"P{i}", None, None) for i in range(200)] + [("b", f"Q{i}", "test", None) for i in range(50)]
    rows += [("c", f"R{i}", None, "7" if i % 2 else 3) for i in range(100)]
    out = assign_splits(rows, config)
    assert {out[("b", f"Q{i}")] for i in range(50)} == {"external"}
    assert [out[("c", f"R{i}")] == "external" for i in range(100)] == [bool(i % 2) for i in range(100)]
    assert "external" not in {out[("a", f"P{i}")] for i in range(200)}
    # the other patients keep the split they had without any external source
    plain = assign_splits(rows, SplitConfig(salt="s"))
    assert all(out[k] == v for k, v in plain.items() if out[k] != "external")
    # one sample of a patient from the external site sends the whole patient there
    mixed = assign_splits([("c", "X", None, "3"), ("c", "X", None, "7")], config)
    assert mixed[("c", "X")] == "external"


def test_external_config_is_checked():
    assert SplitConfig(external="a, b:2,a").external == ("a", "b:2")
    with pytest.raises(SplitError, match="SOURCE or SOURCE:SITE"):
        SplitConfig(external=("a:",))


def test_external_build_writes_the_partition_and_freezes_it(tmp_path, monkeypatch):
    from breastgpt.corpus.build import BuildConfig, BuildError, SourceSpec, build_corpus
    from breastgpt.corpus.records import read_records_jsonl
    from tests.corpus.fixtures import SECRET, adapters_for, make_source, png_normaliser
    from tests.corpus.test_audit import _case

    monkeypatch.setenv("CORPUS_TEST_SECRET", SECRET)
    for name, prefix in (("alpha", "a"), ("beta", "b")):
        make_source(tmp_path / "src" / name, name, [_case(i, f"{name}-{i}", prefix) for i in range(6)])
    split = SplitConfig(train=0.5, val=0.0, bench=0.5, salt="ext", external=("beta",))
    sources = tuple(SourceSpec(n, tmp_path / "src" / n) for n in ("alpha", "beta"))
    cfg = BuildConfig(out=tmp_path / "out", sources=sources, secret_env="CORPUS_TEST_SECRET", split=split)
    summary = build_corpus(cfg, adapters=adapters_for("alpha", "beta"), normaliser=png_normaliser)
    records = read_records_jsonl(tmp_path / "out" / "records.jsonl")
    by_source = {s: {r.split for r in records if r.source == s} for s in ("alpha", "beta")}
    assert by_source["beta"] == {"external"} and "external" not in by_source["alpha"]
    assert summary.splits["external"] == sum(r.split == "external" for r in records) > 0
    frozen = json.loads((tmp_path / "out" / "bench_manifest.json").read_text())
    assert frozen["n_items"] == sum(r.split in ("bench", "external") for r in records)
    assert verify_manifest(tmp_path / "out" / "bench_manifest.json", records).ok
    moved = [type(r).from_dict(r.to_dict()) for r in records]
    next(r for r in moved if r.split == "external").split = "bench"
    assert "frozen in split 'external'" in " ".join(verify_manifest(tmp_path / "out" / "bench_manifest.json",
                                                                     moved).problems)
    with pytest.raises(BuildError, match="not among the sources"):
        BuildConfig(out=tmp_path / "o2", sources=sources, split=SplitConfig(external=("gamma",)))
