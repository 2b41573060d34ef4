"""BenchItem conversion, saved-response files and ms-swift import/export."""

from __future__ import annotations

import json

import pytest

from breastgpt.bench.items import (BenchDataError, SavedResponse, export_swift_dataset, export_swift_results,
                                   import_swift_results, item_from_record, load_items, load_responses,
                                   reference_text, response_to_dict, write_jsonl_atomic)
from tests.bench.helpers import closed_record, grounding_record, open_record

BIRADS = {"name": "birads", "kind": "ordinal", "option_values": [2, 3, 4, 5], "positive_threshold": 4}


def test_closed_record_becomes_item():
    it = item_from_record(closed_record("q1", "p1", 1, target=BIRADS, options=["2", "3", "4", "5"]))
    assert (it.id, it.patient_key, it.stage, it.modality, it.answer_provenance) == (
        "q1", "p1", "diagnosis", "mammography", "label")
    assert it.options == ("2", "3", "4", "5") and it.answer_index == 1
    assert it.question == "<image>Question q1?"
    assert it.clinical_target.is_positive(4) and not it.clinical_target.is_positive(3)


def test_aliases_and_levels():
    rec = closed_record("q1", "p1", 0, stage="Treatment planning", modality="mammo", options=["A", "B", "C", "D"],
                        target={"name": "density", "kind": "ordinal", "option_values": ["A", "B", "C", "D"],
                                "levels": ["A", "B", "C", "D"], "positive_threshold": "C"})
    it = item_from_record(rec)
    assert (it.stage, it.modality) == ("treatment", "mammography")
    assert it.clinical_target.rank("C") == 2.0 and it.clinical_target.is_positive("D")


@pytest.mark.parametrize("mutate,message", [
    (lambda r: r.update(extra=1), "unknown keys"),
    (lambda r: r.pop("patient_key"), "missing field 'patient_key'"),
    (lambda r: r.update(task_family="quiz"), "task_family"),
    (lambda r: r.update(stage="triage"), "stage"),
    (lambda r: r["label"].update(answer_index=2), "answer_index"),
    (lambda r: r["label"].update(options=["only"]), "2-6 options"),
    (lambda r: r["label"].update(clinical_target={"name": "x", "kind": "ordinal", "cutoff": 4}), "clinical_target"),
    (lambda r: r["label"].update(clinical_target={"name": "x", "kind": "ordinal", "option_values": ["a", "b"],
                                                  "positive_threshold": "b"}), "numeric option_values"),
    (lambda r: r.update(answer_provenance="llm"), "answer_provenance"),
    (lambda r: r.update(messages=[{"role": "assistant", "content": "x"}]), "no user message"),
])
def test_bad_records_are_named_errors(mutate, message):
    rec = closed_record("q9", "p1")
    mutate(rec)
    with pytest.raises(BenchDataError, match=message) as exc:
        item_from_record(rec, "bench.jsonl:3")
    assert "bench.jsonl:3" in str(exc.value)


def test_grounding_and_open_items():
    g = item_from_record(grounding_record("g1", "p1", [10, 20, 30, 40]))
    assert g.box == (10.0, 20.0, 30.0, 40.0) and reference_text(g) == "[10,20,30,40]"
    with pytest.raises(BenchDataError, match="box"):
        item_from_record(grounding_record("g2", "p1", [30, 20, 10, 40]))
    with pytest.raises(BenchDataError, match="box"):
        item_from_record(grounding_record("g3", "p1", [0, 0, 10, 1001]))
    o = item_from_record(open_record("o1", "p1", "An oval mass.", ["oval mass"]))
    assert o.answer == "An oval mass." and o.key_findings == ("oval mass",) and o.answer_provenance == "generated"


def test_load_items_rejects_duplicates_and_bad_json(tmp_path):
    path = tmp_path / "bench.jsonl"
    write_jsonl_atomic(path, [closed_record("q1", "p1"), closed_record("q1", "p2")])
    with pytest.raises(BenchDataError, match="duplicate item id 'q1'"):
        load_items(path)
    path.write_text(json.dumps(closed_record("q1", "p1")) + "\nnot json\n")
    with pytest.raises(BenchDataError, match=r"bench.jsonl:2: not valid JSON"):
        list(load_items(path))


def test_saved_responses_round_trip_and_validate(tmp_path):
    rs = [SavedResponse("q1", "B", "m"), SavedResponse("q1", "A", "m", "permute_options", {"t": 0}, (1, 0), 0.2)]
    path = tmp_path / "responses.jsonl"
    write_jsonl_atomic(path, [response_to_dict(r) for r in rs])
    assert load_responses(path) == rs
    path.write_text(json.dumps({"item_id": "q1", "response": "A", "model": "m", "variant": "permute_options"}))
    with pytest.raises(BenchDataError, match="option_order"):
        load_responses(path)
    path.write_text(json.dumps({"item_id": "q1", "response": "A", "model": "m", "temperature": 0}))
    with pytest.raises(BenchDataError, match="unknown keys"):
        load_responses(path)


def test_swift_export_import_round_trip(tmp_path):
    items = [item_from_record(closed_record("q1", "p1", 1)), item_from_record(open_record("o1", "p2", "Oval.", []))]
    responses = [SavedResponse("q1", "B", "m"), SavedResponse("o1", "An oval mass", "m")]
    export_swift_dataset(items, tmp_path / "ds.jsonl")
    first = json.loads((tmp_path / "ds.jsonl").read_text().splitlines()[0])
    assert first["id"] == "q1" and first["messages"][-1] == {"role": "assistant", "content": "B. Malignant"}
    export_swift_results(items, responses, tmp_path / "res.jsonl")
    assert import_swift_results(tmp_path / "res.jsonl", items, "m") == responses
    # Without ids, lines are matched by question + media.
    rows = [json.loads(x) for x in (tmp_path / "res.jsonl").read_text().splitlines()]
    write_jsonl_atomic(tmp_path / "noid.jsonl", [{k: v for k, v in r.items() if k != "id"} for r in rows])
    assert [r.item_id for r in import_swift_results(tmp_path / "noid.jsonl", items, "m")] == ["q1", "o1"]
    rows[0]["labels"] = "A. Benign"
    write_jsonl_atomic(tmp_path / "stale.jsonl", rows)
    with pytest.raises(BenchDataError, match="another bench version"):
        import_swift_results(tmp_path / "stale.jsonl", items, "m")


def test_swift_infer_lines_match_by_media_file_names(tmp_path):
    """`swift infer` result lines as ms-swift 4.6 writes them: no id, images as {"bytes": null, "path": ...}
    (absolute when the dataset was), volumes as lists of frame paths in a folder named after the volume file."""
    from typer.testing import CliRunner

    from breastgpt.bench.cli import app

    volume = dict(open_record("v1", "p3", "Washout.", []), images=[], videos=["media/cd/abc123.npz"])
    volume["messages"][0]["content"] = "<video>Curve?"
    records = [closed_record("q1", "p1", 1), open_record("o1", "p2", "Oval.", []), volume]
    items = [item_from_record(r) for r in records]
    write_jsonl_atomic(tmp_path / "items.jsonl", records)
    frames = [f"/data/corpus/swift_frames/abc123/{i:04d}.png" for i in range(4)]
    lines = [{"response": "B", "labels": "B. Malignant", "logprobs": None, "objects": None, "dataset": "d.jsonl",
              "messages": [{"role": "user", "content": items[0].question}, {"role": "assistant", "content": "B"}],
              "images": [{"bytes": None, "path": "/data/corpus/img/q1.png"}], "videos": []},
             {"response": "An oval mass", "messages": [{"role": "user", "content": items[1].question}],
              "images": [{"bytes": None, "path": "img/o1.png"}], "videos": []},
             {"response": "Washout", "messages": [{"role": "user", "content": "<video>Curve?"}], "images": [],
              "videos": [frames]}]
    write_jsonl_atomic(tmp_path / "result.jsonl", lines)
    result = CliRunner().invoke(app, ["import-swift", str(tmp_path / "result.jsonl"), "--items",
                                      str(tmp_path / "items.jsonl"), "--out", str(tmp_path / "run"), "--model", "m"])
    assert result.exit_code == 0, result.output
    responses = load_responses(tmp_path / "run" / "responses.jsonl")
    assert [(r.item_id, r.response) for r in responses] == [("q1", "B"), ("o1", "An oval mass"), ("v1", "Washout")]
    lines[2]["videos"] = [[f.replace("abc123", "other") for f in frames]]
    write_jsonl_atomic(tmp_path / "wrong.jsonl", lines)
    refused = CliRunner().invoke(app, ["import-swift", str(tmp_path / "wrong.jsonl"), "--items",
                                       str(tmp_path / "items.jsonl"), "--out", str(tmp_path / "run2"), "--model", "m"])
    assert refused.exit_code == 2 and "match 0 items" in refused.output
    assert not (tmp_path / "run2" / "responses.jsonl").exists()
