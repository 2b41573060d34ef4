"""Acceptance 2: every template renders on a fixture and its answer agrees with the labels."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from breastgpt.corpus.labels import FIELDS
from breastgpt.corpus.records import MediaRef
from breastgpt.corpus.templates import SampleView, load_templates, render_sample
from breastgpt.corpus.templates.builders import check_builder_args
from breastgpt.corpus.templates.schema import STAGE_MODALITIES, TemplateError, _parse_template, check_template, value_key

from tests.corpus.fixtures import FULL_LABELS

KIND = {"mammography": "image", "ultrasound": "image", "ct": "volume", "mri": "volume", "pathology": "slide"}
REPORT = "Findings: irregular spiculated mass in the upper outer quadrant. Impression: highly suspicious."


def view(modality: str, labels: dict, sample_id: str = "s1", report: str | None = REPORT) -> SampleView:
    boxes = [{"box": [100, 200, 300, 400] + ([2, 9] if KIND[modality] == "volume" else []), "label": "lesion"}]
    return SampleView(source="fixture", sample_id=sample_id, patient_key="Pabc", study_key="Sabc",
                      modality=modality, kind=KIND[modality], split="train",
                      media=[MediaRef("media/aa/x.png", "0" * 64, KIND[modality])], labels=labels, report=report,
                      boxes=boxes if "boxes" in labels else [])


def expected_closed(t, labels: dict, vocab: dict) -> str | set[str]:
    """Independent re-derivation of the correct option text from the template data and the labels."""
    args = t.args
    if t.builder == "field_choice":
        return vocab[args["field"]][value_key(labels[args["field"]])]
    if t.builder == "yes_no":
        value = labels[args["field"]]
        value = value[args["key"]] if "key" in args else value
        return "Yes" if value in args.get("positive", [True]) else "No"
    if t.builder == "triple_negative":
        return "Yes" if not (labels["er"] or labels["pr"] or labels["her2"]) else "No"
    if t.builder == "present_choice":
        return {vocab[args["field"]][k] for k, v in labels[args["field"]].items() if v}
    raise AssertionError(t.builder)


def test_template_inventory_covers_the_matrix():
    ts = load_templates()
    assert len(ts.templates) >= 136
    cells = Counter((t.stage, t.modality) for t in ts.templates)
    for stage, modalities in STAGE_MODALITIES.items():
        for modality in modalities:
            fams = {t.family for t in ts.templates if (t.stage, t.modality) == (stage, modality)}
            assert {"closed_vqa", "open_vqa", "report"} <= fams, (stage, modality, fams)
            assert cells[(stage, modality)] >= 15
    assert all(len(t.questions) >= 3 for t in ts.templates)
    for t in ts.templates:
        if t.options:
            n = t.options.n
            assert 2 <= n <= 6
    targets = {t.clinical_target for t in ts.templates} - {None}
    assert targets == {"malignancy", "birads_ordinal", "density_ordinal", "biomarker_status", "node_status"}


def test_every_template_renders_and_answers_match_labels():
    ts = load_templates()
    rendered: dict[str, object] = {}
    for modality, labels in FULL_LABELS.items():
        for rec in render_sample(view(modality, labels), ts):
            rendered[rec.template_id] = rec
            t = ts.by_id(rec.template_id)
            answer = rec.message("assistant")
            if t.family == "closed_vqa":
                chosen = rec.label["options"][rec.label["answer_index"]]
                want = expected_closed(t, labels, ts.vocab_text)
                assert chosen in want if isinstance(want, set) else chosen == want, t.id
                assert answer == f"{rec.label['answer_letter']}. {chosen}"
                assert len(set(rec.label["options"])) == len(rec.label["options"])
                assert f"{rec.label['answer_letter']}. {chosen}" in rec.message("user")
                if t.clinical_target:
                    assert rec.label["clinical_target"]["name"] == t.clinical_target
            elif t.family == "grounding":
                assert rec.label["box"] == [100, 200, 300, 400] + ([2, 9] if rec.kind == "volume" else [])
                assert answer == json.dumps(rec.label["box"]).replace(" ", "")
                assert rec.objects["bbox_type"] == "norm1000"
            elif t.family == "report":
                assert answer == REPORT and rec.answer_provenance.kind == "report"
            else:
                assert answer == rec.label["answer"] and rec.label["key_findings"]
                for finding in rec.label["key_findings"]:
                    assert finding in answer
                if t.family == "grounded_caption":
                    assert "[100,200,300,400" in rec.message("user")
            if t.family != "report":
                assert rec.answer_provenance.kind == "label"
            assert rec.message("user").startswith({"image": "<image>", "volume": "<video>", "slide": "<slide>"}[rec.kind])
            assert t.stage in rec.message("system").lower() or "treatment planning" in rec.message("system")
    missing = sorted(t.id for t in ts.templates if t.id not in rendered)
    assert not missing, f"templates that never rendered on the fixtures: {missing}"


def test_open_answers_exact_values():
    ts = load_templates()
    recs = {r.template_id: r for r in render_sample(view("mammography", FULL_LABELS["mammography"]), ts)}
    assert recs["scr-mam-density-open"].message("assistant") == "The breast density is heterogeneously dense (ACR C)."
    assert recs["dx-mam-mass-open"].message("assistant") == "The mass is irregular in shape. Its margin is spiculated."
    assert recs["scr-mam-birads-open"].message("assistant") == (
        "The assessment is BI-RADS 4 (suspicious); tissue diagnosis is recommended.")
    ct = {r.template_id: r for r in render_sample(view("ct", FULL_LABELS["ct"]), ts)}
    assert ct["scr-ct-findings-open"].message("assistant") == (
        "The scan shows: arterial wall calcification, atelectasis, lung nodule, lung opacity, pleural effusion.")


def test_missing_fields_and_when_filters_skip_templates():
    ts = load_templates()
    recs = render_sample(view("mammography", {"density": "A"}, report=None), ts)
    assert {r.template_id for r in recs} == {"scr-mam-density-choice", "scr-mam-dense-yesno", "scr-mam-density-open"}
    normal = render_sample(view("ultrasound", {"pathology": "normal"}, report=None), ts)
    ids = {r.template_id for r in normal}
    assert "dx-us-benign-malignant-choice" not in ids and "scr-us-pathology-choice" in ids
    yes_no = next(r for r in normal if r.template_id == "scr-us-lesion-yesno")
    assert yes_no.label["options"][yes_no.label["answer_index"]] == "No"


def test_adjacent_distractors_are_a_window_whose_place_does_not_tell_the_answer():
    """Ordinal options are n consecutive values holding the answer; the window is drawn among all that hold it, so
    the answer is not always in its middle (where a reader that never looks at the image would learn to point)."""
    ts = load_templates()
    texts = ts.vocab_text["birads"]
    places = Counter()
    for i in range(200):
        rec = next(r for r in render_sample(view("mammography", {"birads": 3}, sample_id=f"n{i}"), ts)
                   if r.template_id == "scr-mam-birads-choice")
        values = sorted(int(k) for k, v in texts.items() if v in rec.label["options"])
        assert len(values) == 4 and values == list(range(values[0], values[0] + 4)) and 3 in values
        places[values.index(3)] += 1
    assert set(places) == {0, 1, 2, 3} and min(places.values()) >= 30, places  # BI-RADS 3: windows 0-3 ... 3-6


def test_option_sets_of_small_vocabularies_are_the_same_whatever_the_answer():
    """A vocabulary that fits in six options is shown whole (less the values the template's `when` excludes), so the
    option set carries nothing about the answer; e.g. the mammographic abnormality type drew 4 of 6 values around
    the answer, and a model without the image scored 24 points over the template's prior."""
    ts = load_templates()
    for template_id, field, values in (
            ("scr-mam-abnormality-choice", "abnormality", FIELDS["abnormality"].values),
            ("dx-mam-abnormality-choice", "abnormality", ts.by_id("dx-mam-abnormality-choice").when["abnormality"]),
            ("dx-mam-margin-choice", "mass_margin", FIELDS["mass_margin"].values)):
        sets = set()
        for value in values:
            labels = {**FULL_LABELS["mammography"], field: value}
            rec = next(r for r in render_sample(view("mammography", labels), ts) if r.template_id == template_id)
            assert rec.label["options"][rec.label["answer_index"]] == ts.vocab_text[field][value_key(value)]
            sets.add(frozenset(rec.label["options"]))
        assert len(sets) == 1 and len(next(iter(sets))) == len(values), template_id
    excluded = ts.by_id("tx-mri-lesion-type-choice")
    assert excluded.options.n == len(excluded.when["lesion_type"]) < len(FIELDS["lesion_type"].values)


def test_an_option_count_that_would_draw_a_subset_of_a_small_vocabulary_is_refused():
    raw = {"id": "x-choice", "stage": "screening", "modality": "mammography", "family": "closed_vqa",
           "fields": ["density"], "builder": "field_choice", "args": {"field": "density"}, "options": {"n": 3},
           "questions": ["a?", "b?", "c?"]}
    with pytest.raises(TemplateError, match="options.n=3, but its 4 answerable values are all shown.*set n to 4"):
        check_builder_args(_parse_template(raw, "t.json"), "t.json")
    check_builder_args(_parse_template({**raw, "options": {"n": 4}}, "t.json"), "t.json")


def test_rendering_is_deterministic_and_ids_differ_per_sample():
    ts = load_templates()
    a = [r.to_dict() for r in render_sample(view("mri", FULL_LABELS["mri"]), ts)]
    b = [r.to_dict() for r in render_sample(view("mri", FULL_LABELS["mri"]), ts)]
    c = [r.to_dict() for r in render_sample(view("mri", FULL_LABELS["mri"], sample_id="s2"), ts)]
    assert a == b
    assert {r["id"] for r in a}.isdisjoint({r["id"] for r in c})


def test_letter_balance_across_many_records():
    """No letter is correct more often than 1/n + 5 points (per option count n)."""
    ts = load_templates()
    counts: dict[int, Counter] = {}
    for i in range(150):
        for modality in ("mammography", "ultrasound", "pathology"):
            for rec in render_sample(view(modality, FULL_LABELS[modality], sample_id=f"b{i}", report=None), ts):
                if rec.task_family == "closed_vqa":
                    n = len(rec.label["options"])
                    counts.setdefault(n, Counter())[rec.label["answer_letter"]] += 1
    for n, c in counts.items():
        total = sum(c.values())
        assert total >= 300
        assert set(c) == set("ABCDEF"[:n])
        assert max(c.values()) / total <= 1 / n + 0.05, (n, c)


@pytest.mark.parametrize("patch, problem", [
    ({"colour": 1}, "unknown keys"),
    ({"questions": ["a?", "b?"]}, "at least 3"),
    ({"builder": "field_sentence"}, "serves open_vqa"),
    ({"args": {"field": "density", "extra": 1}}, "takes args"),
    ({"fields": ["density", "no_such_field"]}, "not in the vocabulary"),
    ({"options": {"n": 7}}, "outside 2-6"),
    ({"stage": "treatment"}, "outside the stage mapping"),
    ({"clinical_target": "mood"}, "clinical_target"),
])
def test_bad_template_data_is_rejected(patch, problem):
    raw = {"id": "x", "stage": "screening", "modality": "mammography", "family": "closed_vqa", "fields": ["density"],
           "builder": "field_choice", "args": {"field": "density"}, "options": {"n": 4},
           "questions": ["q1?", "q2?", "q3?"]}
    raw.update(patch)
    with pytest.raises(TemplateError, match=problem):
        t = _parse_template(raw, "test.json[0]")
        check_template(t, "test.json[0]")
        check_builder_args(t, "test.json[0]")


def test_vocab_text_covers_vocabulary():
    ts = load_templates()
    for name, table in ts.vocab_text.items():
        values = FIELDS[name].values
        for v in values:
            assert value_key(v) in table, (name, v)


def test_every_clinical_target_is_scorable_by_the_bench() -> None:
    """Closed records with a clinical target load as bench items, and the correct option's clinical call is
    computable (ranked or binary), e.g. BI-RADS ≥ 4 = positive."""
    from breastgpt.bench.items import item_from_record

    ts = load_templates()
    targets = set()
    for modality, labels in FULL_LABELS.items():
        for rec in render_sample(view(modality, labels), ts):
            t = ts.by_id(rec.template_id)
            if t.family != "closed_vqa" or not t.clinical_target:
                continue
            item = item_from_record(rec.to_dict())
            target = item.clinical_target
            assert target is not None and len(target.option_values) == len(rec.label["options"]), t.id
            target.is_positive(target.option_values[item.answer_index])
            targets.add(target.name)
    assert targets == {"malignancy", "birads_ordinal", "density_ordinal", "biomarker_status", "node_status"}


def test_text_answer_style_answers_with_the_option_text_that_the_bench_parser_accepts() -> None:
    from breastgpt.bench.items import item_from_record
    from breastgpt.bench.parsing import parse_choice

    ts = load_templates()
    labels = FULL_LABELS["mammography"]
    letter = {r.template_id: r for r in render_sample(view("mammography", labels), ts)}
    text = {r.template_id: r for r in render_sample(view("mammography", labels), ts, answer_style="text")}
    assert letter.keys() == text.keys()
    for template_id, rec in text.items():
        if rec.task_family != "closed_vqa":
            assert rec.message("assistant") == letter[template_id].message("assistant")
            continue
        options, index = rec.label["options"], rec.label["answer_index"]
        assert rec.label == letter[template_id].label  # same options, same order, same answer
        assert rec.message("assistant") == options[index]
        assert "text of the correct option" in rec.message("user")
        assert "text of the one correct option" in rec.message("system")
        assert parse_choice(rec.message("assistant"), list(item_from_record(rec.to_dict()).options)) == index
    with pytest.raises(ValueError, match="answer_style"):
        render_sample(view("mammography", labels), ts, answer_style="emoji")


def test_no_option_text_reads_like_an_option_letter():
    """Closed questions list options as "A. <text>"; a text that itself starts with a capital letter and a break
    ("C (heterogeneously dense)") makes the answer ambiguous with an option label — a small model then answers
    "C (almost entirely fatty)", the label of one option glued to the text of another."""
    import re

    ts = load_templates()
    offending = [(field, key, text) for field, values in ts.vocab_text.items() for key, text in values.items()
                 if re.match(r"^[A-Z]\b", text)]
    assert offending == []
