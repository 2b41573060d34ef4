"""The demo's task set: closed questions whose answer the synthetic image determines.

A closed template is *image-dependent* when every label fact its answer is built from is drawn into the pixels
by the synthetic renderer of its modality (`breastgpt.synth.contract.RENDERED_LABELS`). The set follows from
template metadata and the renderers' inputs alone — it is fixed before any model is trained, so it cannot be
tuned to the results.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable
from typing import Any

from breastgpt.corpus.templates import Template, load_templates
from breastgpt.corpus.templates.render import LETTERS
from breastgpt.synth.contract import is_rendered

# Sources of linked patients: their studies enter the task set through the pathway records only, so the
# single-question figures (and the criterion) keep the same sources as without them.
PATHWAY_ONLY_SOURCES = ("pathway_cohort",)

# Builders whose answer is one label fact (a yes/no on a field or one dict key, or a field's value).
_SINGLE_FACT_BUILDERS = ("yes_no", "field_choice")


def answer_facts(template: Template) -> list[tuple[str, str | None]]:
    """(field, key) pairs the answer of a closed template is built from."""
    key = template.args.get("key")
    return [(name, key) for name in template.fields]


def is_image_dependent(template: Template) -> bool:
    if template.family != "closed_vqa" or template.builder not in _SINGLE_FACT_BUILDERS:
        return False
    return all(is_rendered(template.modality, name, key) for name, key in answer_facts(template))


def image_dependent_templates(templates: Iterable[Template] | None = None) -> list[str]:
    """Ids of the image-dependent closed templates, in template order."""
    pool = load_templates().templates if templates is None else templates
    return [t.id for t in pool if is_image_dependent(t)]


def select_records(records: Iterable[dict[str, Any]], template_ids: Iterable[str]) -> list[dict[str, Any]]:
    wanted = set(template_ids)
    return [r for r in records if r["template_id"] in wanted]


_PLACEHOLDER = re.compile(r"\s*(<image>|<video>|<slide>)\s*")
_SWIFT_MEDIA = {"image": "images", "volume": "videos", "slide": "slides"}


def _turn(record: dict[str, Any], role: str) -> str:
    return next(m["content"] for m in record["messages"] if m["role"] == role)


def conversations(records: Iterable[dict[str, Any]], seed: int, group: bool = True,
                  max_turns: int = 0, variants: int = 1) -> list[dict[str, Any]]:
    """Training conversations: every question about one study, as turns of one conversation (ms-swift rows).

    Records that share their media and system prompt become one multi-turn conversation: the media once, in the
    first user turn, then each question and its answer. A training step then supervises every answer about an
    image for one pass of the vision encoder instead of one, which is what lets the demo's small model learn to
    read the images in a few hundred CPU steps (docs/notes/2026-12-demo-research.md). The turn order is shuffled per
    conversation (seeded), so no question always comes first. Evaluation still asks one question per conversation, as the
    bench does. `max_turns` > 0 splits a study's questions (after the shuffle) into conversations of at most that
    many turns, each with the media again: every answer then sits within a few turns of the image, as the
    bench's single question does.

    `variants` > 1 writes every conversation that many times, each copy after the first with every question
    re-worded: another of its template's phrasings and a new option order (`reword`), the turns shuffled again.
    The answers and media stay. Over several epochs a model then cannot lower its loss by memorising which
    wording of a study's questions goes with which answers — the text of a study changes from one pass to the
    next and only its image stays the same (docs/notes/2026-12-demo-research.md).
    """
    if variants < 1:
        raise ValueError(f"variants must be at least 1, not {variants}")
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for record in records:
        system = next((m["content"] for m in record["messages"] if m["role"] == "system"), "")
        key = (record["source"], *(m["path"] for m in record["media"]), system) if group else (record["id"],)
        groups.setdefault(key, []).append(record)
    rng = random.Random(seed)
    templates = load_templates() if variants > 1 else None
    rows = []
    for variant in range(variants):
        for key in sorted(groups):  # the same conversations whatever order the records came in
            ordered = sorted(groups[key], key=lambda r: r["id"])
            if variant:
                ordered = [reword(r, templates.by_id(r["template_id"]), rng) for r in ordered]
            rng.shuffle(ordered)
            size = max_turns if max_turns > 0 else len(ordered)
            for i in range(0, len(ordered), size):
                row = _conversation(ordered[i:i + size])
                if variant:
                    row["id"] += f"~{variant}"
                rows.append(row)
    return rows


def reword(record: dict[str, Any], template: Template, rng: random.Random) -> dict[str, Any]:
    """The record with its question re-worded: a phrasing of its template drawn from `rng` and, for a closed
    question, its options in a new order (letters re-assigned). The answer is unchanged.

    Raises ValueError when the user turn is not the one the template renders (a question and its option block
    must appear verbatim), so that a change to the corpus layout cannot silently leave questions unchanged.
    """
    options = list((record.get("label") or {}).get("options") or [])
    user = _turn(record, "user")
    block = "\n".join(f"{LETTERS[i]}. {text}" for i, text in enumerate(options))
    asked = [q for q in template.questions if f"\n{q}\n" in f"\n{user}\n"]
    if block not in user or len(asked) != 1 or any("$" in q for q in template.questions):
        raise ValueError(f"record {record['id']}: its question is not one of template {template.id}'s phrasings "
                         "followed by its options; cannot re-word it")
    order = list(range(len(options)))
    rng.shuffle(order)
    new_block = "\n".join(f"{LETTERS[j]}. {options[i]}" for j, i in enumerate(order))
    question = template.questions[rng.randrange(len(template.questions))]
    user = (user.replace(block, new_block, 1) if options else user).replace(asked[0], question, 1)
    messages = [dict(m, content=user) if m["role"] == "user" else dict(m) for m in record["messages"]]
    return dict(record, messages=messages)


def _conversation(group: list[dict[str, Any]]) -> dict[str, Any]:
    """One ms-swift row: the system prompt, the media in the first user turn, then each question and answer."""
    system = [m for m in group[0]["messages"] if m["role"] == "system"]
    messages = [dict(m) for m in system]
    for i, record in enumerate(group):
        user = _turn(record, "user")
        if i:
            user = _PLACEHOLDER.sub("\n", user).strip()
        messages += [{"role": "user", "content": user}, {"role": "assistant", "content": _turn(record, "assistant")}]
    row: dict[str, Any] = {"id": f"{group[0]['id']}+{len(group) - 1}", "messages": messages,
                           "images": [], "videos": [], "slides": []}
    for media in group[0]["media"]:
        row[_SWIFT_MEDIA[media["kind"]]].append(media["path"])
    return row


def pathway_rows(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Pathway records as ms-swift training rows, turns and media unchanged (they are conversations already)."""
    rows = []
    for record in sorted(records, key=lambda r: r["id"]):
        row: dict[str, Any] = {"id": record["id"], "messages": [dict(m) for m in record["messages"]],
                               "images": [], "videos": [], "slides": []}
        for media in record["media"]:
            row[_SWIFT_MEDIA[media["kind"]]].append(media["path"])
        rows.append(row)
    return rows


__all__ = ["PATHWAY_ONLY_SOURCES", "answer_facts", "conversations", "pathway_rows", "image_dependent_templates", "is_image_dependent", "reword",
           "select_records"]
