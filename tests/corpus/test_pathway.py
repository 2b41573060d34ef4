"""Issue 34, point 1: the linked synthetic cohort gives pathway records (provenance `label`) for every patient, with
answers that agree with the generator's truth, and the leakage audit keeps each patient's pathway in one split."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from breastgpt.corpus.audit import AuditConfig, audit_records
from breastgpt.corpus.build import BuildConfig, SourceSpec, build_corpus
from breastgpt.corpus.build_items import slide_feature_id
from breastgpt.corpus.pathway import Study, is_pathway, linked_patients, patient_records, pathway_template_ids
from breastgpt.corpus.records import MediaRef, read_records_jsonl
from breastgpt.deid.pseudonym import Pseudonymizer
from breastgpt.synth.cohort import generate

PATIENTS = 50
SECRET = "pathway-test-secret-0123456789"


@pytest.fixture(scope="module")
def linked(tmp_path_factory) -> tuple[Path, Path]:
    out = tmp_path_factory.mktemp("pathway")
    roots = generate(out / "raw", PATIENTS, ["pathway_cohort"], seed=2)
    mp = pytest.MonkeyPatch()
    mp.setenv("BREASTGPT_DEID_SECRET", SECRET)
    try:
        summary = build_corpus(BuildConfig(out=out / "corpus", seed=0,
                                           sources=(SourceSpec("pathway_cohort", roots["pathway_cohort"]),)))
    finally:
        mp.undo()
    assert summary.quarantined == 0 and summary.phi_gate == "passed"
    return out / "raw", out / "corpus"


def test_every_synthetic_patient_has_a_three_stage_pathway(linked):
    raw, corpus = linked
    records = read_records_jsonl(corpus / "records.jsonl")
    counts = linked_patients(records)
    assert counts["patients_with_three_stages"] == counts["patients"] == PATIENTS
    pathway = [r for r in records if is_pathway(r)]
    assert len(pathway) == PATIENTS * len(pathway_template_ids())
    for record in pathway:
        assert record.answer_provenance.kind == "label" and record.stage == "treatment"
        assert [m["role"] for m in record.messages] == ["system"] + ["user", "assistant"] * 3
        assert [m.kind for m in record.media] == ["image", "image", "slide"]
        users = [m["content"] for m in record.messages if m["role"] == "user"]
        assert [u.count("<image>") + u.count("<slide>") for u in users] == [1, 1, 1]


def test_pathway_answers_agree_with_the_generated_truth(linked):
    raw, corpus = linked
    truth = {t["sample_id"]: t["labels"] for t in json.loads((raw / ".truth" / "pathway_cohort.json").read_text())}
    records = read_records_jsonl(corpus / "records.jsonl")
    # The slide's feature file is named by the keyed id of the treatment study's sample (no sample id in records)
    keyed = Pseudonymizer(SECRET.encode())
    sample_of = {slide_feature_id(keyed, "pathway_cohort", s): s for s in truth if s.endswith("treatment")}
    checked = 0
    for record in (r for r in records if is_pathway(r)):
        sample = sample_of[Path(record.slides[0]).stem]
        field = "er" if record.template_id == "pathway-er-treatment" else "her2"
        value = record.label["clinical_target"]["option_values"][record.label["answer_index"]]
        assert value == truth[sample][field], (sample, field)
        screening = truth[sample.replace("treatment", "screening")]
        assert record.messages[2]["content"] == f"BI-RADS {screening['birads']}"
        assert truth[sample.replace("treatment", "diagnosis")]["pathology"] == "malignant"
        checked += 1
    assert checked == PATIENTS * 2
    letters = [r.label["answer_index"] for r in records if is_pathway(r)]
    assert 0.3 < sum(letters) / len(letters) < 0.7  # the correct option's position is balanced


def test_a_patients_pathway_stays_in_one_split(linked):
    _, corpus = linked
    records = read_records_jsonl(corpus / "records.jsonl")
    split_of: dict[str, set[str]] = {}
    for record in records:
        split_of.setdefault(record.patient_key, set()).add(record.split)
    assert len(split_of) == PATIENTS and all(len(s) == 1 for s in split_of.values())
    config = AuditConfig(near_duplicates=False)
    clean = audit_records(records, corpus, config)
    assert clean.findings["patients_in_several_splits"] == [] and clean.findings["identical_media"] == []
    # A pathway record moved to another split is found twice over: its patient and its media cross splits.
    moved = next(r for r in records if is_pathway(r))
    other = "train" if moved.split != "train" else "bench"
    planted = [replace(r, split=other) if r.id == moved.id else r for r in records]
    report = audit_records(planted, corpus, config)
    assert len(report.findings["patients_in_several_splits"]) == 1
    assert len(report.findings["identical_media"]) >= 3


def _study(stage: str, modality: str, kind: str, labels: dict, date: str = "") -> Study:
    ref = MediaRef(f"media/{stage}.png" if kind == "image" else f"features/{stage}.h5", stage * 4, kind)
    return Study("s", "pk", f"sk-{stage}-{date}", "train", stage, date, modality, kind, (ref,), labels)


def test_a_pathway_needs_screening_and_a_labelled_treatment_study():
    screening = _study("screening", "mammography", "image", {"birads": 4})
    treatment = _study("treatment", "pathology", "slide", {"er": True})
    assert len(patient_records([screening, treatment])) == 1  # er only: the HER2 template does not apply
    assert patient_records([treatment]) == []
    assert patient_records([screening, _study("treatment", "pathology", "slide", {})]) == []
    later = _study("screening", "mammography", "image", {"birads": 2}, date="2025-01-01")
    first = replace(screening, date="2024-01-01")
    (record,) = patient_records([later, first, treatment], answer_style="text", media_position="after")
    assert record.messages[2]["content"] == "BI-RADS 4"  # the earliest screening study opens the pathway
    assert record.messages[1]["content"].endswith("<image>") and record.messages[-1]["content"].startswith("ER-")


def test_a_manifest_stage_outside_the_pathway_is_a_source_problem(tmp_path):
    from breastgpt.corpus.sources import SourceProblem, get_adapter

    root = generate(tmp_path / "raw", 1, ["pathway_cohort"], seed=0)["pathway_cohort"]
    manifest = root / "manifest.csv"
    manifest.write_text(manifest.read_text().replace(",diagnosis,", ",triage,", 1))
    found = list(get_adapter("pathway_cohort").discover(root))
    problems = [p for p in found if isinstance(p, SourceProblem)]
    assert len(found) == 3 and len(problems) == 1 and "triage" in problems[0].reason
    assert sorted(s.meta["stage"] for s in found if not isinstance(s, SourceProblem)) == ["screening", "treatment"]
