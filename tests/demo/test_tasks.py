"""The demo's task set and its training conversations (`breastgpt.demo.tasks`), and the learning criterion."""

from __future__ import annotations

from breastgpt.corpus.templates import load_templates
from breastgpt.demo.evaluate import criterion
from breastgpt.demo.tasks import conversations, image_dependent_templates, is_image_dependent


def _record(rid: str, media: str, question: str, answer: str, *, system: str = "sys", kind: str = "image",
            source: str = "src") -> dict:
    token = {"image": "<image>", "volume": "<video>", "slide": "<slide>"}[kind]
    return {"id": rid, "source": source, "media": [{"path": media, "kind": kind, "sha256": "0" * 64}],
            "messages": [{"role": "system", "content": system},
                         {"role": "user", "content": f"{token}\n{question}"},
                         {"role": "assistant", "content": answer}]}


def test_questions_about_one_study_become_one_conversation_with_the_media_once() -> None:
    records = [_record("a1", "m/a.png", "Q1?", "yes"), _record("b1", "m/b.npz", "Q3?", "no", kind="volume"),
               _record("a2", "m/a.png", "Q2?", "no"), _record("a3", "m/a.png", "Q4?", "oval", system="other")]
    rows = conversations(records, seed=0)
    assert len(rows) == 3  # a1+a2 share media and system prompt; a3 has another system prompt; b1 alone
    pair = next(r for r in rows if len(r["messages"]) == 5)
    assert pair["images"] == ["m/a.png"] and pair["videos"] == [] and pair["slides"] == []
    roles = [m["role"] for m in pair["messages"]]
    assert roles == ["system", "user", "assistant", "user", "assistant"]
    users = [m["content"] for m in pair["messages"] if m["role"] == "user"]
    assert users[0].startswith("<image>\n") and "<image>" not in users[1]
    assert sorted(u.split("\n")[-1] for u in users) == ["Q1?", "Q2?"]
    answers = {u.split("\n")[-1]: a["content"] for u, a in zip(users, pair["messages"][2::2])}
    assert answers == {"Q1?": "yes", "Q2?": "no"}  # each answer stays with its question
    volume = next(r for r in rows if r["videos"])
    assert volume["videos"] == ["m/b.npz"] and volume["messages"][1]["content"] == "<video>\nQ3?"
    assert conversations(list(reversed(records)), seed=0) == rows  # input order does not matter
    orders = {tuple(m["content"] for m in conversations(records, seed=s)[1]["messages"][1::2]) for s in range(8)}
    assert len(orders) == 2  # the turn order is shuffled by the seed


def test_image_dependent_templates_follow_the_renderers_contract() -> None:
    ids = image_dependent_templates()
    assert ids and len(ids) == len(set(ids))
    by_id = {t.id: t for t in load_templates().templates}
    assert all(by_id[i].family == "closed_vqa" for i in ids)
    modalities = {by_id[i].modality for i in ids}
    assert modalities == {"mammography", "ultrasound", "mri", "ct", "pathology"}
    # BI-RADS is drawn at random beside the image (2 vs 3 cannot be told from the pixels): never in the set.
    assert not any(is_image_dependent(t) for t in load_templates().templates if "birads" in t.fields)


def _iv(point: float, low: float, high: float) -> dict:
    return {"point": point, "low": low, "high": high}


def test_criterion_needs_every_part() -> None:
    row = {"chance": 0.40, "full": _iv(0.61, 0.56, 0.66), "no_image": _iv(0.45, 0.40, 0.50)}
    assert criterion(row) == {"passed": True, "over_chance": True, "over_no_image": True, "intervals_separate": True}
    assert criterion({**row, "full": _iv(0.59, 0.56, 0.66)})["passed"] is False  # 19 points over chance
    assert criterion({**row, "no_image": _iv(0.47, 0.42, 0.52)})["over_no_image"] is False  # 14 points
    overlap = criterion({**row, "no_image": _iv(0.45, 0.40, 0.57)})
    assert overlap["passed"] is False and overlap["intervals_separate"] is False
    assert criterion({"chance": 0.4, "full": _iv(0.9, 0.85, 0.95)})["passed"] is False  # no ablation, no claim


def test_prior_is_the_most_frequent_training_answer_per_template() -> None:
    import numpy as np

    from breastgpt.bench.items import BenchItem
    from breastgpt.demo.evaluate import Scored, prior_correct, template_table

    def train(k: int, template: str, answer: str) -> dict:
        return {"id": f"r{k}", "source": "s", "patient_key": f"q{k}", "task_family": "closed_vqa",
                "template_id": template, "messages": [{"role": "user", "content": "Q?"}],
                "label": {"options": ["Yes", "No"], "answer_index": ["Yes", "No"].index(answer)}}

    rows = [train(k, t, a) for k, (t, a) in enumerate([("t1", "Yes")] * 3 + [("t1", "No"), ("t2", "No")])]
    items = [BenchItem(id=f"i{k}", source="s", patient_key=f"p{k}", stage="diagnosis", modality="mri",
                       task_family="closed_vqa", template_id=t, answer_provenance="label", question="Q?",
                       options=("No", "Yes"), answer_index=a)
             for k, (t, a) in enumerate([("t1", 1), ("t1", 0), ("t2", 0), ("t3", 0)])]
    prior = prior_correct(items, rows)
    assert prior.tolist() == [1.0, 0.0, 1.0, 0.0]  # t3 was never trained: no prior answer, never right
    scored = Scored(items, {"full": np.array([1.0, 1.0, 0.0, 1.0])}, prior)
    table = {row["template"]: row for row in template_table(scored, n_resamples=50, seed=0)}
    assert table["t1"]["n_items"] == 2 and table["t1"]["full"]["point"] == 1.0 and table["t1"]["prior"]["point"] == 0.5
    assert table["t3"]["prior"]["point"] == 0.0


def test_max_turns_splits_a_study_into_short_conversations_each_with_the_media() -> None:
    records = [_record(f"a{i}", "m/a.png", f"Q{i}?", f"A{i}") for i in range(5)]
    rows = conversations(records, seed=3, max_turns=2)
    assert [len(r["messages"]) for r in rows] == [5, 5, 3]  # system + 2 turns, 2 turns, 1 turn
    assert all(r["images"] == ["m/a.png"] and r["messages"][1]["content"].startswith("<image>\n") for r in rows)
    asked = [m["content"].split("\n")[-1] for r in rows for m in r["messages"] if m["role"] == "user"]
    assert sorted(asked) == [f"Q{i}?" for i in range(5)]  # every question exactly once
    whole = conversations(records, seed=3)
    assert asked == [m["content"].split("\n")[-1] for m in whole[0]["messages"] if m["role"] == "user"]


def _closed_record(rid: str, template_id: str, answer_index: int = 1) -> dict:
    """A record as the corpus renders a closed question: media token, a phrasing, lettered options, suffix."""
    template = load_templates().by_id(template_id)
    options = [v if isinstance(v, str) else str(v) for v in ("first option", "second option", "third option")]
    lines = [f"{'ABC'[i]}. {o}" for i, o in enumerate(options)]
    user = "\n".join(["<image>\n" + template.questions[0], *lines, "Answer with the text of the correct option."])
    record = _record(rid, "m/a.png", "", options[answer_index])
    record["messages"][1]["content"] = user
    record.update(template_id=template_id, label={"options": options, "answer_index": answer_index})
    return record


def test_reword_changes_phrasing_and_option_order_but_never_the_answer() -> None:
    import random

    from breastgpt.demo.tasks import reword

    template = load_templates().by_id("scr-mam-density-choice")
    record = _closed_record("r1", template.id)
    rng = random.Random(0)
    seen_questions, seen_orders = set(), set()
    for _ in range(60):
        out = reword(record, template, rng)
        user = out["messages"][1]["content"]
        lines = user.split("\n")
        assert lines[0] == "<image>" and lines[-1] == "Answer with the text of the correct option."
        assert lines[1] in template.questions
        options = [line[3:] for line in lines[2:-1]]
        assert [line[:3] for line in lines[2:-1]] == ["A. ", "B. ", "C. "]
        assert sorted(options) == sorted(record["label"]["options"])  # the same options, re-lettered
        assert out["messages"][2]["content"] == "second option" and out["messages"][0] == record["messages"][0]
        seen_questions.add(lines[1])
        seen_orders.add(tuple(options))
    assert seen_questions == set(template.questions) and len(seen_orders) == 6
    assert record["messages"][1]["content"].split("\n")[1] == template.questions[0]  # the input is untouched


def test_reword_refuses_a_question_it_cannot_find() -> None:
    import random

    import pytest

    from breastgpt.demo.tasks import reword

    template = load_templates().by_id("scr-mam-density-choice")
    record = _closed_record("r1", template.id)
    record["messages"][1]["content"] = record["messages"][1]["content"].replace(template.questions[0], "What?")
    with pytest.raises(ValueError, match="r1.*scr-mam-density-choice"):
        reword(record, template, random.Random(0))


def test_variants_repeat_every_conversation_re_worded_after_the_first() -> None:
    records = [_closed_record("a1", "scr-mam-density-choice", 0), _closed_record("a2", "scr-mam-dense-yesno", 2)]
    base = conversations(records, seed=1)
    rows = conversations(records, seed=1, variants=4)
    assert len(base) == 1 and len(rows) == 4 and rows[0] == base[0]
    assert len({r["id"] for r in rows}) == 4
    assert len({tuple(m["content"] for m in r["messages"][1::2]) for r in rows}) > 1  # the wording changes
    phrasings = {t: load_templates().by_id(t).questions for t in ("scr-mam-density-choice", "scr-mam-dense-yesno")}
    expected = {"scr-mam-density-choice": "first option", "scr-mam-dense-yesno": "third option"}
    for row in rows:  # ... and each answer still stays with its question
        for user, answer in zip(row["messages"][1::2], row["messages"][2::2]):
            asked = [t for t, qs in phrasings.items() if any(q in user["content"] for q in qs)]
            assert len(asked) == 1 and answer["content"] == expected[asked[0]]
    assert conversations(records, seed=1, variants=4) == rows  # deterministic


def test_reword_gives_an_open_question_another_phrasing() -> None:
    import random

    from breastgpt.demo.tasks import reword

    template = load_templates().by_id("scr-mam-density-open")
    record = _record("o1", "m/a.png", template.questions[0], "The breast density is extremely dense (ACR D).")
    record["template_id"] = template.id
    rng = random.Random(0)
    asked = {reword(record, template, rng)["messages"][1]["content"] for _ in range(40)}
    assert asked == {f"<image>\n{q}" for q in template.questions}
