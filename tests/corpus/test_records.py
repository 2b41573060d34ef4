"""Records: schema checks, JSONL/Parquet round-trips, ms-swift/LLaVA export, import of published files."""

from __future__ import annotations

import hashlib
import json

import pytest

from breastgpt.corpus.records import (MediaRef, Provenance, Record, RecordError, export_llava_json,
                                      export_swift_jsonl, import_published, read_records_jsonl,
                                      read_records_parquet, record_id, write_records_jsonl,
                                      write_records_parquet)
from breastgpt.corpus.templates import load_templates, render_sample
from tests.corpus.fixtures import FULL_LABELS
from tests.corpus.test_templates import view


def sample_records() -> list[Record]:
    ts = load_templates()
    return render_sample(view("mammography", FULL_LABELS["mammography"]), ts) + render_sample(
        view("mri", FULL_LABELS["mri"]), ts)


def test_jsonl_and_parquet_round_trip(tmp_path):
    records = sample_records()
    write_records_jsonl(tmp_path / "r.jsonl", records)
    write_records_parquet(tmp_path / "r.parquet", records)
    want = [r.to_dict() for r in records]
    assert [r.to_dict() for r in read_records_jsonl(tmp_path / "r.jsonl")] == want
    assert [r.to_dict() for r in read_records_parquet(tmp_path / "r.parquet")] == want
    assert not list(tmp_path.glob(".*.tmp"))
    first = json.loads((tmp_path / "r.jsonl").read_text().splitlines()[0])
    assert {"messages", "images", "videos", "id", "label", "answer_provenance", "patient_key"} <= set(first)


def _minimal(**kw) -> dict:
    base = dict(id="x", source="s", patient_key="P", study_key="S", stage="screening", modality="mammography",
                kind="image", task_family="open_vqa", template_id="t", answer_provenance=Provenance("label"),
                split="train", messages=[{"role": "user", "content": "<image>\nq"}, {"role": "assistant", "content": "a"}],
                label={"answer": "a", "key_findings": []}, media=[MediaRef("m.png", "0" * 64, "image")])
    base.update(kw)
    return base


@pytest.mark.parametrize("patch, problem", [
    ({"stage": "triage"}, "stage"),
    ({"split": "test"}, "split"),
    ({"media": []}, "1 <image> tokens for 0 image"),
    ({"messages": [{"role": "user", "content": "<image>"}]}, "user and assistant"),
    ({"task_family": "closed_vqa", "label": {"options": ["a"], "answer_index": 0}}, "2-6 options"),
    ({"task_family": "grounding", "label": {"box": [0, 0, 1200, 10]}}, "0-1000"),
    ({"answer_provenance": None}, ""),
])
def test_invalid_records_are_rejected(patch, problem):
    if patch.get("answer_provenance", 1) is None:
        with pytest.raises(RecordError, match="generator model"):
            Provenance("generated")
        return
    with pytest.raises(RecordError, match=problem):
        Record(**_minimal(**patch))


def test_unknown_keys_are_errors():
    data = Record(**_minimal()).to_dict() | {"extra": 1}
    with pytest.raises(RecordError, match="unknown keys"):
        Record.from_dict(data)


def test_exports(tmp_path):
    records = sample_records()
    n = export_swift_jsonl(records, tmp_path / "swift.jsonl", media_root="/corpus")
    rows = [json.loads(l) for l in (tmp_path / "swift.jsonl").read_text().splitlines()]
    assert n == len(records) == len(rows)
    assert set(rows[0]) <= {"messages", "images", "videos", "objects", "slides"}
    assert rows[0]["images"] == ["/corpus/media/aa/x.png"]
    grounding = next(r for r, rec in zip(rows, records) if rec.task_family == "grounding")
    assert grounding["objects"]["bbox_type"] == "norm1000"
    mri = next(r for r, rec in zip(rows, records) if rec.kind == "volume")
    assert mri["videos"] and not mri["images"] and mri["messages"][1]["content"].startswith("<video>")
    export_llava_json(records, tmp_path / "llava.json")
    items = json.loads((tmp_path / "llava.json").read_text())
    assert items[0]["conversations"][0]["from"] == "human" and items[0]["image"] == "media/aa/x.png"
    assert items[0]["conversations"][1]["value"] == records[0].message("assistant")


PUBLISHED = [
    {"messages": [{"role": "system", "content": "You are an expert in breast cancer screening."},
                  {"role": "user", "content": "<image>What is the breast density of this mammogram?\nA. A\nB. B\nC. C\nD. D"},
                  {"role": "assistant", "content": "C"}], "images": ["mammo/0001.png"]},
    {"messages": [{"role": "user", "content": "Locate the lesion in this breast ultrasound image."},
                  {"role": "assistant", "content": "[120, 200, 340, 410]"}], "images": ["us/7.png"]},
    {"messages": [{"role": "user", "content": "<video>Describe the findings of this breast MRI for treatment planning."},
                  {"role": "assistant", "content": "There is an irregular mass with washout kinetics."}],
     "videos": ["mri/case3"]},
]


def test_import_published_layout(tmp_path):
    (tmp_path / "mammo").mkdir()
    (tmp_path / "mammo" / "0001.png").write_bytes(b"img")
    path = tmp_path / "bench.json"
    path.write_text(json.dumps(PUBLISHED))
    recs = import_published(path, split="bench", media_root=tmp_path)
    closed, grounding, open_ = recs
    assert (closed.task_family, closed.stage, closed.modality) == ("closed_vqa", "screening", "mammography")
    assert closed.label == {"options": ["A", "B", "C", "D"], "answer_index": 2}
    assert closed.media[0].sha256 == hashlib.sha256(b"img").hexdigest()
    assert grounding_sha_unknown(recs[1])
    assert (grounding.task_family, grounding.modality, grounding.stage) == ("grounding", "ultrasound", "unknown")
    assert grounding.label["box"] == [120, 200, 340, 410]
    assert grounding.message("user").startswith("<image>")  # placeholder added as ms-swift would
    assert (open_.task_family, open_.kind, open_.modality, open_.stage) == ("open_vqa", "volume", "mri", "treatment")
    assert all(r.answer_provenance.kind == "unknown" and r.patient_key == "unknown" for r in recs)
    path.with_suffix(".jsonl").write_text("\n".join(json.dumps(p) for p in PUBLISHED))
    assert [r.id for r in import_published(path.with_suffix(".jsonl"), split="bench")] == [r.id for r in recs]


def grounding_sha_unknown(rec: Record) -> bool:
    return rec.media[0].sha256 == ""  # file not under media_root: hash unknown, not invented


def test_import_errors_name_file_and_item(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([PUBLISHED[0], {"images": []}]))
    with pytest.raises(RecordError, match=r"bad.json: item 1"):
        import_published(bad, split="train")
    bad.write_text("{not json")
    with pytest.raises(RecordError, match="not JSON"):
        import_published(bad, split="train")


def test_record_id_is_stable():
    assert record_id("cbis_ddsm", "P_1__CC", "t1") == record_id("cbis_ddsm", "P_1__CC", "t1")
    assert record_id("cbis_ddsm", "P_1__CC", "t1") != record_id("cbis_ddsm", "P_1__CC", "t2")
