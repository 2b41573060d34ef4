"""Shortcut ablations: no-image, shuffled image from another patient, permuted options (and the scorer's view)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from breastgpt.bench.ablations import (OptionsNotFound, build_ablation, locate_options, no_image, permute_options,
                                       shuffle_image_set)
from breastgpt.bench.items import SavedResponse, item_from_record
from breastgpt.bench.scoring import _score_closed
from breastgpt.corpus.records import MediaRef, Provenance, Record

SUFFIX = "Answer with the letter of the correct option."
OPTIONS = ["Benign", "Malignant", "Normal", "Cyst"]


def closed_prompt(question: str, options: list[str], tokens: str = "<image>", fmt: str = "{L}. {o}") -> str:
    lines = [fmt.format(L="ABCDEF"[i], o=o) for i, o in enumerate(options)]
    return "\n".join([f"{tokens}\n{question}", *lines, SUFFIX])


def make_record(rid: str, patient: str, *, answer: int = 1, options: list[str] | None = None,
                media: list[tuple[str, str]] | None = None, family: str = "closed_vqa", modality: str = "mammography",
                stage: str = "diagnosis", question: str | None = None, user: str | None = None,
                answer_text: str = "an oval mass", split: str = "bench") -> Record:
    """A bench record in the corpus layout; media = [(kind, path)] (default one image img/<rid>.png)."""
    media = [("image", f"img/{rid}.png")] if media is None else media
    refs = [MediaRef(path, hashlib.sha256(path.encode()).hexdigest(), kind) for kind, path in media]
    tokens = "".join({"image": "<image>", "volume": "<video>", "slide": "<slide>"}[k] for k, _ in media)
    question = question or f"Item {rid}: what is the finding?"
    if family == "closed_vqa":
        options = options or OPTIONS
        label = {"options": options, "answer_index": answer, "answer_letter": "ABCDEF"[answer]}
        user = user or closed_prompt(question, options, tokens)
        reply = f"{'ABCDEF'[answer]}. {options[answer]}"
    else:
        label = {"answer": answer_text, "key_findings": ["oval mass"]}
        user = user or f"{tokens}\n{question}"
        reply = answer_text
    return Record(id=rid, source="vindr", patient_key=patient, study_key=f"s-{patient}", stage=stage,
                  modality=modality, kind=media[0][0] if media else "image", task_family=family,
                  template_id=f"t-{family}", answer_provenance=Provenance("label"), split=split,
                  messages=[{"role": "system", "content": "You are BreastGPT."}, {"role": "user", "content": user},
                            {"role": "assistant", "content": reply}],
                  label=label, media=refs)


def write_pngs(root: Path, records: list[Record]) -> None:
    from PIL import Image

    for n, r in enumerate(records):
        for ref in r.media:
            if ref.kind == "image":
                path = root / ref.path
                path.parent.mkdir(parents=True, exist_ok=True)
                pixels = np.full((12, 10), 10 * (n % 25), np.uint8)
                Image.fromarray(pixels).save(path)


# ------------------------------------------------------------------------------------------------- no-image


def test_no_image_drops_media_and_placeholders() -> None:
    rec = make_record("a", "p1", media=[("image", "img/a1.png"), ("image", "img/a2.png")])
    bare = no_image(rec)
    assert bare.media == [] and rec.media  # the original is untouched
    assert bare.messages[1]["content"] == "\n".join(["Item a: what is the finding?", "A. Benign", "B. Malignant",
                                                     "C. Normal", "D. Cyst", SUFFIX])
    assert bare.label == rec.label and bare.messages[2] == rec.messages[2]


def test_no_image_refuses_items_without_media() -> None:
    recs = [make_record("a", "p1"), make_record("t", "p2", media=[])]
    out = build_ablation("no-image", recs)
    assert [p.item_id for p in out.prompts] == ["a"] and out.refused == {"t": "no visual input to remove"}
    assert out.counts()["refused_by_reason"] == {"no visual input to remove": 1}


# --------------------------------------------------------------------------------------------- shuffle-image


def _cohort() -> list[Record]:
    recs = [make_record(f"m{i}", f"p{i // 2}") for i in range(6)]  # two items per patient
    recs += [make_record("u0", "p9", modality="ultrasound"), make_record("u1", "p8", modality="ultrasound")]
    recs += [make_record("v0", "p7", media=[("volume", "vol/v0.npz")], modality="mri"),
             make_record("v1", "p6", media=[("volume", "vol/v1.npz")], modality="mri")]
    return recs


def test_shuffle_never_uses_the_same_patient_and_keeps_kind_and_modality() -> None:
    recs = _cohort()
    by_id = {r.id: r for r in recs}
    out = shuffle_image_set(recs, seed=3)
    assert len(out.prompts) == len(recs) and not out.refused
    for p in out.prompts:
        original = by_id[p.item_id]
        (donor,) = p.donors
        assert by_id[donor].patient_key != original.patient_key
        assert [m.kind for m in p.record.media] == [m.kind for m in original.media]
        assert by_id[donor].modality == original.modality  # same-modality donors exist for all of these
        assert p.record.media == by_id[donor].media and p.record.messages == original.messages
    assert {p.item_id: p.donors for p in out.prompts}["u0"] == ("u1",)
    assert {p.item_id: p.donors for p in out.prompts}["v1"] == ("v0",)


def test_shuffle_is_deterministic_given_the_seed() -> None:
    recs = _cohort()
    first = [p.donors for p in shuffle_image_set(recs, seed=0).prompts]
    assert first == [p.donors for p in shuffle_image_set(list(reversed(recs)), seed=0).prompts][::-1]
    seeds = {tuple(p.donors for p in shuffle_image_set(recs, seed=s).prompts) for s in range(5)}
    assert len(seeds) > 1  # the seed matters


def test_shuffle_refuses_when_no_other_patient_has_that_kind() -> None:
    recs = [make_record("a", "p1"), make_record("b", "p1"), make_record("c", "p2", media=[("volume", "v.npz")])]
    out = shuffle_image_set(recs)
    assert out.prompts == [] and set(out.refused) == {"a", "b", "c"}


def test_shuffle_with_unknown_patients_only_requires_a_different_file() -> None:
    recs = [make_record("a", "unknown"), make_record("b", "unknown")]
    donors = {p.item_id: p.donors for p in shuffle_image_set(recs).prompts}
    assert donors == {"a": ("b",), "b": ("a",)}


# ------------------------------------------------------------------------------------------- permute-options


@pytest.mark.parametrize("fmt", ["{L}. {o}", "({L}) {o}", "{L}) {o}", "{L}: {o}"])
def test_permute_rewrites_lines_and_answer_consistently(fmt: str) -> None:
    rec = make_record("q", "p1", answer=1, user=closed_prompt("Item q?", OPTIONS, fmt=fmt))
    permuted, order = permute_options(rec, seed=0)
    assert sorted(order) == [0, 1, 2, 3] and order.index(1) != 1  # the correct option moved
    expected = [fmt.format(L="ABCD"[p], o=OPTIONS[order[p]]) for p in range(4)]
    assert permuted.messages[1]["content"] == "\n".join(["<image>\nItem q?", *expected, SUFFIX])
    new = permuted.label["answer_index"]
    assert permuted.label["options"][new] == "Malignant" and permuted.label["answer_letter"] == "ABCD"[new]
    assert permuted.messages[2]["content"] == f"{'ABCD'[new]}. Malignant"
    assert permute_options(rec, seed=0)[1] == order and rec.label["answer_index"] == 1


def test_permute_with_two_options_swaps_them() -> None:
    rec = make_record("q", "p1", answer=0, options=["Benign", "Malignant"])
    permuted, order = permute_options(rec, seed=5)
    assert order == (1, 0) and permuted.messages[1]["content"].splitlines()[2:4] == ["A. Malignant", "B. Benign"]


def test_permuted_answer_scores_through_option_order() -> None:
    rec = make_record("q", "p1", answer=2)
    permuted, order = permute_options(rec, seed=1)
    item = item_from_record(rec.to_dict())
    letter = "ABCD"[permuted.label["answer_index"]]
    row: dict = {}
    _score_closed(row, item, SavedResponse("q", letter, "m", "permute_options", option_order=order), letter)
    assert row["correct"] == 1.0 and row["pred_index"] == 2
    wrong = "ABCD"[2] if letter != "C" else "A"  # the letter of the original position is now another option
    _score_closed(row, item, SavedResponse("q", wrong, "m", "permute_options", option_order=order), wrong)
    assert row["correct"] == 0.0


@pytest.mark.parametrize("user, why", [
    ("<image>\nWhich one: Benign, Malignant, Normal or Cyst?", "lettered lines"),
    (closed_prompt("Item?", ["Benign", "Malignant", "Normal", "Cystic"]), "lettered lines"),
    (closed_prompt("Item?", OPTIONS + ["Other"]), "option E"),
    ("\n".join(["<image>\nItem?", "B. Malignant", "A. Benign", "C. Normal", "D. Cyst"]), "letter order"),
])
def test_permute_refuses_options_it_cannot_locate(user: str, why: str) -> None:
    rec = make_record("q", "p1", user=user)
    with pytest.raises(OptionsNotFound, match=why):
        permute_options(rec)
    out = build_ablation("permute-options", [rec, make_record("ok", "p2"), make_record("o", "p3", family="open_vqa")])
    assert [p.item_id for p in out.prompts] == ["ok"] and set(out.refused) == {"q"} and out.not_applicable == 1
    assert out.counts()["refused_by_reason"] == {"options not located in the prompt": 1}


def test_locate_options_spans() -> None:
    text = closed_prompt("Q?", ["Benign", "Malignant"])
    spans = locate_options(text, ["Benign", "Malignant"])
    assert [text[s:e] for s, e, _ in spans] == ["Benign", "Malignant"] and [p for _, _, p in spans] == ["A. ", "B. "]


def test_unknown_ablation_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown ablation"):
        build_ablation("no-text", [])


def _pathway_record(rid: str = "pw1") -> Record:
    media = [MediaRef("media/a.png", "a" * 64, "image"), MediaRef("media/b.png", "b" * 64, "image"),
             MediaRef("features/c.h5", "c" * 64, "slide")]
    messages = [{"role": "system", "content": "sys"},
                {"role": "user", "content": "<image>\nScreening mammogram. BI-RADS?"},
                {"role": "assistant", "content": "BI-RADS 4"},
                {"role": "user", "content": "<image>\nUltrasound. Benign or malignant?"},
                {"role": "assistant", "content": "Malignant"},
                {"role": "user", "content": "<slide>\nER status?\nA. ER-positive\nB. ER-negative\nAnswer with the letter."},
                {"role": "assistant", "content": "A. ER-positive"}]
    return Record(id=rid, source="s", patient_key="p1", study_key="k", stage="treatment", modality="pathology",
                  kind="slide", task_family="closed_vqa", template_id="pathway-er-treatment",
                  answer_provenance=Provenance("label"), split="bench", messages=messages,
                  label={"options": ["ER-positive", "ER-negative"], "answer_index": 0}, media=media)


def test_no_prior_media_keeps_the_history_text_and_the_last_turns_media() -> None:
    ablated = build_ablation("no-prior-media", [_pathway_record(), make_record("r2", "p2")])
    assert ablated.variant == "no_prior_media" and len(ablated.prompts) == 1
    assert ablated.refused == {"r2": "no media in earlier turns to remove"}
    record = ablated.prompts[0].record
    assert [m.kind for m in record.media] == ["slide"]
    users = [m["content"] for m in record.messages if m["role"] == "user"]
    assert users[0] == "Screening mammogram. BI-RADS?" and users[1] == "Ultrasound. Benign or malignant?"
    assert users[2].startswith("<slide>\nER status?")
    assert [m["content"] for m in record.messages if m["role"] == "assistant"] == ["BI-RADS 4", "Malignant",
                                                                                   "A. ER-positive"]


def test_ablations_are_registered_by_cli_name_and_a_new_one_is_one_decorated_builder() -> None:
    from breastgpt.bench.ablations import ABLATIONS, AblationSet, Prompt, build_ablation_sets
    from breastgpt.bench.runner import RunConfig

    assert ABLATIONS.names() == ("no-image", "no-prior-media", "shuffle-image", "permute-options", "circular")

    @ABLATIONS.register("echo")
    def _echo(records, seed=0):
        return [AblationSet("echo", "echo", [Prompt(r.id, "echo", r) for r in records])]

    try:
        sets = build_ablation_sets("echo", [make_record("r1", "p1")])
        assert [p.item_id for p in sets[0].prompts] == ["r1"]
        RunConfig(bench="b.jsonl", model="local:m", out="o", ablations=("echo",))  # accepted without other edits
    finally:
        ABLATIONS.remove("echo")
    with pytest.raises(ValueError, match="known: no-image, no-prior-media"):
        build_ablation_sets("echo", [])
