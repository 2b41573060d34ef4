"""Records: schema checks, JSONL/Parquet round-trips, LLaVA export (ms-swift: test_swift_export.py; published-file import: tests/bench)."""

from __future__ import annotations

import json

import pytest

from breastgpt.corpus.records import (MediaRef, Provenance, Record, RecordError, export_llava_json,
                                      read_records_jsonl,
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


def test_llava_export(tmp_path):
    records = sample_records()
    export_llava_json(records, tmp_path / "llava.json")
    items = json.loads((tmp_path / "llava.json").read_text())
    assert items[0]["conversations"][0]["from"] == "human" and items[0]["image"] == "media/aa/x.png"
    assert items[0]["conversations"][1]["value"] == records[0].message("assistant")


def test_record_id_is_stable():
    assert record_id("cbis_ddsm", "P_1__CC", "t1") == record_id("cbis_ddsm", "P_1__CC", "t1")
    assert record_id("cbis_ddsm", "P_1__CC", "t1") != record_id("cbis_ddsm", "P_1__CC", "t2")
