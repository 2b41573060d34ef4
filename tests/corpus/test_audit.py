"""Acceptance 5: the audit is silent on a clean corpus and finds each planted leak."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from breastgpt.corpus.audit import AuditConfig, audit_corpus, audit_records
from breastgpt.corpus.build import BuildConfig, SourceSpec, build_corpus
from breastgpt.corpus.records import Provenance, read_records_jsonl, write_records_jsonl
from breastgpt.corpus.splits import SplitConfig, split_for_patient
from breastgpt.deid.pseudonym import Pseudonymizer
from tests.corpus.fixtures import SECRET, adapters_for, make_source, png_normaliser, random_image

ENV = "CORPUS_TEST_SECRET"
SPLIT = SplitConfig(train=0.5, val=0.0, bench=0.5, salt="audit-test")


def patient_in(source: str, split: str, prefix: str) -> str:
    """A raw patient id whose pseudonym lands in `split` (so planted copies cross splits on purpose)."""
    pseudo = Pseudonymizer(SECRET.encode())
    for i in range(1000):
        pid = f"{prefix}{i}"
        if split_for_patient(source, pseudo.patient_key(source, pid), SPLIT) == split:
            return pid
    raise AssertionError("no patient id found")


def _case(i: int, patient: str, prefix: str) -> dict:
    return {"id": f"{prefix}{i:02d}", "patient": patient, "seed": 1000 * ord(prefix[0]) + i,
            "labels": {"density": "ABCD"[i % 4], "birads": 1 + i % 5},
            "report": f"Case {prefix}{i}: scattered fibroglandular tissue, no mass or suspicious calcification seen."}


def _build(src: Path, out: Path, names: tuple[str, ...]):
    cfg = BuildConfig(out=out, sources=tuple(SourceSpec(n, src / n) for n in names), secret_env=ENV, split=SPLIT)
    return build_corpus(cfg, adapters=adapters_for(*names), normaliser=png_normaliser)


@pytest.fixture(scope="module")
def clean_once(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("audit")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(ENV, SECRET)
        make_source(base / "src" / "alpha", "alpha", [_case(i, f"ALPHA-{i}", "a") for i in range(10)])
        make_source(base / "src" / "beta", "beta", [_case(i, f"BETA-{i}", "b") for i in range(10)])
        _build(base / "src", base / "clean", ("alpha", "beta"))
    return base


@pytest.fixture()
def clean(clean_once, tmp_path, monkeypatch) -> tuple[Path, Path]:
    """A private copy of the clean build (tests plant leaks in it)."""
    monkeypatch.setenv(ENV, SECRET)
    shutil.copytree(clean_once / "src", tmp_path / "src")
    shutil.copytree(clean_once / "clean", tmp_path / "clean")
    return tmp_path / "src", tmp_path / "clean"


def test_clean_corpus_has_no_findings(clean):
    _, out = clean
    records = read_records_jsonl(out / "records.jsonl")
    assert {r.split for r in records} == {"train", "bench"}
    report = audit_corpus(out)
    assert not report.leakage, report.to_text()
    assert report.to_json()["counts"] == {k: 0 for k in report.findings}
    assert report.info["near_duplicates_within_split_across_sources"] == []


def test_planted_leaks_are_all_found(clean, tmp_path):
    src, _ = clean
    alpha = read_records_jsonl(tmp_path / "clean" / "records.jsonl")
    a_train = next(r for r in alpha if r.source == "alpha" and r.split == "train")
    b_any = next(r for r in alpha if r.source == "beta")
    b_split = b_any.split
    # (1) a resized, re-encoded JPEG copy of a train image in another source, for a bench patient
    original = np.asarray(Image.open(tmp_path / "clean" / a_train.media[0].path))
    small = Image.fromarray(original).resize((48, 48), Image.BILINEAR)
    buf = io.BytesIO()
    small.save(buf, format="JPEG", quality=80)
    # (2) a byte-identical copy of a beta image under another file name, for a patient in the other split
    beta_png = src / "beta" / f"{b_any.id and 'b00'}.png"
    other_split = "bench" if b_split == "train" else "train"
    gamma = [
        {"id": "g-jpeg", "patient": patient_in("gamma", "bench" if a_train.split == "train" else "train", "G"),
         "bytes": buf.getvalue(), "labels": {"density": "B"}},
        {"id": "g-copy", "patient": patient_in("gamma", other_split, "H"), "bytes": beta_png.read_bytes(),
         "labels": {"density": "C"}},
    ]
    make_source(src / "gamma", "gamma", gamma)
    out = tmp_path / "leaky"
    _build(src, out, ("alpha", "beta", "gamma"))
    records = read_records_jsonl(out / "records.jsonl")
    # (3) the same patient in two splits: move one record of a two-record patient
    moved = next(r for r in records if r.source == "alpha")
    moved.split = "bench" if moved.split == "train" else "train"
    write_records_jsonl(out / "records.jsonl", records)
    report = audit_corpus(out)
    assert report.leakage
    assert [(p["source"], p["patient_key"]) for p in report.findings["patients_in_several_splits"]] == [
        ("alpha", moved.patient_key)]
    identical = report.findings["identical_media"]
    assert any(set(f["sources"]) == {"beta", "gamma"} for f in identical), identical
    near = report.findings["near_duplicate_media"]
    assert any(set(f["sources"]) == {"alpha", "gamma"} and f["phash_distance"] <= 8 for f in near), near
    assert not report.findings["letter_imbalance"]


def test_duplicate_media_file_under_another_name(clean):
    _, out = clean
    records = read_records_jsonl(out / "records.jsonl")
    train = next(r for r in records if r.split == "train")
    bench = next(r for r in records if r.split == "bench" and r.media[0].path != train.media[0].path)
    copy = Path("media/zz/renamed.png")
    (out / copy).parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(out / train.media[0].path, out / copy)
    for r in records:
        if r.media[0].path == bench.media[0].path:
            r.media[0].path, r.media[0].sha256 = str(copy), train.media[0].sha256
    report = audit_records(records, out)
    assert [f["paths"] for f in report.findings["identical_media"]] == [sorted([train.media[0].path, str(copy)])]
    assert report.findings["media_integrity"] == []


def test_repeated_report_text_and_integrity(clean):
    _, out = clean
    records = read_records_jsonl(out / "records.jsonl")
    reports = [r for r in records if r.task_family == "report"]
    train = next(r for r in reports if r.split == "train")
    bench = next(r for r in reports if r.split == "bench")
    bench.messages[-1]["content"] = train.messages[-1]["content"]
    bench.messages[1]["content"] = train.messages[1]["content"]
    records[0].media[0].sha256 = "0" * 64
    report = audit_records(records, out)
    kinds = sorted(f["kind"] for f in report.findings["repeated_text"])
    assert kinds == ["question+answer", "report_text"]
    assert report.findings["media_integrity"][0]["problem"] == "sha256 differs from the record"


def test_letter_bias_is_flagged(clean):
    _, out = clean
    records = [r for r in read_records_jsonl(out / "records.jsonl") if r.task_family == "closed_vqa"]
    biased = []
    for k in range(10):
        for r in records:
            r2 = type(r).from_dict(r.to_dict() | {"id": f"{r.id}-{k}"})
            r2.label["answer_index"] = 0
            biased.append(r2)
    report = audit_records(biased, out, AuditConfig(near_duplicates=False))
    flagged = report.findings["letter_imbalance"]
    assert flagged and all(g["max_letter"] == "A" and g["max_share"] == 1.0 for g in flagged)


def _closed(i: int, split: str, answer: str, options: list[str]) -> object:
    from types import SimpleNamespace

    return SimpleNamespace(task_family="closed_vqa", split=split, template_id="dx-mam-abnormality-choice",
                           label={"options": options, "answer_index": options.index(answer)})


def test_option_sets_that_tell_the_answer_are_flagged():
    """Options drawn around the answer (2 of 5 types) tell it: the offered option most often correct in training
    beats the template's most frequent answer. The same answers with every type offered are not flagged."""
    from breastgpt.corpus.stats import option_set_leak

    rng = np.random.default_rng(0)
    types = ["mass", "calcification", "asymmetry", "distortion", "other"]
    answers = rng.choice(types, size=400, p=[0.4, 0.3, 0.1, 0.1, 0.1])
    leaky, fair = [], []
    for i, answer in enumerate(answers):
        split = "train" if i % 2 else "bench"
        distractor = rng.choice([t for t in types if t != answer])
        leaky.append(_closed(i, split, answer, sorted([answer, distractor])))
        fair.append(_closed(i, split, answer, types))
    [row] = option_set_leak(leaky)
    assert row["flagged"] and row["items"] == 200 and row["offered_option_prior"] - row["prior"] > 0.2
    [row] = option_set_leak(fair)
    assert not row["flagged"] and row["offered_option_prior"] == row["prior"] and row["p_value"] == 1.0
    few = option_set_leak(leaky[:12])  # six held-out items: an excess that may be chance is not flagged
    assert not few[0]["flagged"]
