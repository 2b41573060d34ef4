"""Shortcut ablations (SPEC §5): the same bench items shown with no image, a shuffled image, or permuted options.

Each ablation turns corpus records into the prompts a model is shown under that variant; the scorer compares
accuracy on the same items between the full run and the ablated one (`aggregate.shortcut_table`).

* `no-image`: every visual input removed and its placeholder dropped from the prompt (items without media are
  refused: there is nothing to remove, so they say nothing about shortcuts).
* `shuffle-image`: each media entry replaced by one of the same kind from another patient, chosen with a seeded
  generator keyed by the item id, so the same seed gives the same swaps. Donors of the same modality are
  preferred; a donor is never the same patient. When either patient key is "unknown" (imported published files
  carry no patient), "another patient" cannot be checked, so the donor must at least be a different file.
* `permute-options`: a closed question's lettered option lines are re-ordered (never the identity, and the
  correct option always moves), the label follows, and the saved answer carries `option_order` (presented
  position -> original option index), which is what the scorer maps back through. Items whose options cannot be
  found as lettered lines in the prompt are refused and counted, never guessed.
* `circular` (circular evaluation): every rotation of a closed question's options — rotation k presents original
  option (p + k) mod n at position p — as variants `circular_1` … `circular_{n−1}`; with the full answer, an item
  counts as right only when it is right under every rotation. Cost: n − 1 extra prompts per closed item
  (3 for four options), stated in run.json and in the report.
* `no-prior-media`: for multi-turn (pathway) items, the media of every user turn before the last are removed with
  their placeholders; the earlier turns' text and answers stay, as do the last turn's media. Does the answer
  depend on the earlier stages' images? Items whose earlier turns carry no media are refused.

Each is registered in `ABLATIONS` by its CLI name; a new ablation is one decorated builder here.
"""

from __future__ import annotations

import hashlib
import random
import re
from dataclasses import dataclass, field, replace
from typing import Any, Callable

from breastgpt.corpus.records import MEDIA_TOKENS, MediaRef, Record
from breastgpt.registry import Registry, RegistryError

LETTERS = "ABCDEF"
_PLACEHOLDER = re.compile("(?:" + "|".join(re.escape(t) for t in MEDIA_TOKENS.values()) + r")[ \t]*\n?")


@dataclass(frozen=True)
class Prompt:
    """What one model request shows for one item under one variant."""

    item_id: str
    variant: str  # full | no_image | shuffle_image | permute_options | circular_k | no_prior_media
    record: Record
    option_order: tuple[int, ...] | None = None  # permute_options: presented position -> original index
    donors: tuple[str, ...] = ()  # shuffle_image: ids of the records the media came from


@dataclass
class AblationSet:
    variant: str
    cache_key: str  # the variant and the seed that fixes it: a cache row answers exactly this prompt set
    prompts: list[Prompt]
    refused: dict[str, str] = field(default_factory=dict)  # item id -> why it was not run
    not_applicable: int = 0  # items the ablation does not concern (e.g. open questions for permute-options)

    def counts(self) -> dict[str, Any]:
        reasons: dict[str, int] = {}
        for why in self.refused.values():
            category = why.split(":")[0]  # the detail after ':' names the item's own option text
            reasons[category] = reasons.get(category, 0) + 1
        return {"prompts": len(self.prompts), "refused": len(self.refused), "refused_by_reason": reasons,
                "not_applicable": self.not_applicable}


class OptionsNotFound(ValueError):
    """The option lines of a closed question cannot be located in its prompt."""


# CLI name (`bench run --ablate NAME`) -> builder (bench records, seed) -> its prompt sets
AblationBuilder = Callable[[list[Record], int], list[AblationSet]]
ABLATIONS: Registry[AblationBuilder] = Registry("ablation")


def full_set(records: list[Record]) -> AblationSet:
    return AblationSet("full", "full", [Prompt(r.id, "full", r) for r in records])


def build_ablation_sets(name: str, records: list[Record], seed: int = 0) -> list[AblationSet]:
    """The prompt sets of one ablation (CLI name): one set, or one per rotation for 'circular'."""
    try:
        build = ABLATIONS.get(name)
    except RegistryError as exc:
        raise ValueError(str(exc)) from None
    return build(records, seed)


def build_ablation(name: str, records: list[Record], seed: int = 0) -> AblationSet:
    """The prompts of one single-set ablation (CLI name, e.g. 'no-image') over the bench records."""
    sets = build_ablation_sets(name, records, seed)
    if len(sets) != 1:
        raise ValueError(f"ablation {name!r} builds {len(sets)} prompt sets; use build_ablation_sets")
    return sets[0]


def _seeded(seed: int, *parts: str) -> random.Random:
    digest = hashlib.sha256("\x00".join([str(seed), *parts]).encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


# ---------------------------------------------------------------------------------------------------- no-image


def no_image(record: Record) -> Record:
    """The record with every visual input removed and the placeholders (with their line break) dropped."""
    messages = [{**m, "content": _PLACEHOLDER.sub("", m["content"]).strip() if m["role"] == "user" else m["content"]}
                for m in record.messages]
    return replace(record, messages=messages, media=[])


@ABLATIONS.register("no-image")
def _no_image_sets(records: list[Record], seed: int = 0) -> list[AblationSet]:
    out = AblationSet("no_image", "no_image", [])
    for r in records:
        if r.media:
            out.prompts.append(Prompt(r.id, "no_image", no_image(r)))
        else:
            out.refused[r.id] = "no visual input to remove"
    return [out]


# ---------------------------------------------------------------------------------------------- no-prior-media


def no_prior_media(record: Record) -> Record:
    """The record with the media of every user turn before the last removed (placeholders and all)."""
    last = max(i for i, m in enumerate(record.messages) if m["role"] == "user")
    earlier = "".join(m["content"] for m in record.messages[:last] if m["role"] == "user")
    dropped = len(_PLACEHOLDER.findall(earlier))
    messages = [{**m, "content": _PLACEHOLDER.sub("", m["content"]).strip()} if m["role"] == "user" and i < last
                else dict(m) for i, m in enumerate(record.messages)]
    return replace(record, messages=messages, media=list(record.media[dropped:]))


@ABLATIONS.register("no-prior-media")
def _no_prior_media_sets(records: list[Record], seed: int = 0) -> list[AblationSet]:
    out = AblationSet("no_prior_media", "no_prior_media", [])
    for r in records:
        if len(no_prior_media(r).media) == len(r.media):
            out.refused[r.id] = "no media in earlier turns to remove"
        else:
            out.prompts.append(Prompt(r.id, "no_prior_media", no_prior_media(r)))
    return [out]


# ----------------------------------------------------------------------------------------------- shuffle-image


@dataclass(frozen=True)
class _Donor:
    record_id: str
    patient_key: str
    modality: str
    ref: MediaRef


def _is_other_patient(record: Record, ref: MediaRef, donor: _Donor) -> bool:
    if donor.record_id == record.id or donor.ref.path == ref.path or (ref.sha256 and donor.ref.sha256 == ref.sha256):
        return False
    if "unknown" in (record.patient_key, donor.patient_key):
        return True  # no patient to compare: a different file is the most that can be checked
    return donor.patient_key != record.patient_key


@ABLATIONS.register("shuffle-image")
def _shuffle_image_sets(records: list[Record], seed: int = 0) -> list[AblationSet]:
    return [shuffle_image_set(records, seed)]


def shuffle_image_set(records: list[Record], seed: int = 0) -> AblationSet:
    """Each item's media swapped for media of the same kind from another patient, deterministic given `seed`."""
    pool: dict[str, list[_Donor]] = {}
    for r in sorted(records, key=lambda r: r.id):
        for ref in r.media:
            pool.setdefault(ref.kind, []).append(_Donor(r.id, r.patient_key, r.modality, ref))
    out = AblationSet("shuffle_image", f"shuffle_image:seed={seed}", [])
    for r in records:
        if not r.media:
            out.refused[r.id] = "no visual input to swap"
            continue
        media, donors = [], []
        for index, ref in enumerate(r.media):
            candidates = [d for d in pool.get(ref.kind, []) if _is_other_patient(r, ref, d)]
            same_modality = [d for d in candidates if d.modality == r.modality]
            candidates = same_modality or candidates
            if not candidates:
                break
            donor = candidates[_seeded(seed, r.id, str(index)).randrange(len(candidates))]
            media.append(donor.ref)
            donors.append(donor.record_id)
        if len(media) != len(r.media):
            out.refused[r.id] = "no media of the same kind from another patient"
            continue
        out.prompts.append(Prompt(r.id, "shuffle_image", replace(r, media=media), donors=tuple(donors)))
    return out


# --------------------------------------------------------------------------------------------- permute-options


def locate_options(text: str, options: list[str]) -> list[tuple[int, int, str]]:
    """(start, end, prefix) of each option's text on its own lettered line ('A. x', '(A) x', 'A) x', 'A: x').

    Each option must appear exactly once, on the line of its own letter, in order, and no further lettered line
    may follow (the prompt and the label would disagree on the options).
    """
    found = []
    for i, opt in enumerate(options):
        pattern = re.compile(r"(?m)^([ \t]*\(?" + LETTERS[i] + r"[\).:][ \t]+)(" + re.escape(opt) + r")[ \t]*$")
        hits = list(pattern.finditer(text))
        if len(hits) != 1:
            raise OptionsNotFound(f"option {LETTERS[i]} {opt!r} is on {len(hits)} lettered lines, expected 1")
        found.append((hits[0].start(2), hits[0].end(2), hits[0].group(1)))
    if [s for s, _, _ in found] != sorted(s for s, _, _ in found):
        raise OptionsNotFound("option lines are not in letter order")
    if len(options) < len(LETTERS):
        extra = re.compile(r"(?m)^[ \t]*\(?" + LETTERS[len(options)] + r"[\).:][ \t]+\S")
        if extra.search(text):
            raise OptionsNotFound(f"the prompt lists an option {LETTERS[len(options)]} the label does not have")
    return found


def option_order(n: int, answer_index: int, rng: random.Random) -> tuple[int, ...]:
    """A permutation (presented position -> original index) that moves the correct option."""
    order = list(range(n))
    while order.index(answer_index) == answer_index:
        rng.shuffle(order)
    return tuple(order)


def permute_options(record: Record, seed: int = 0) -> tuple[Record, tuple[int, ...]]:
    """The closed record with its option lines re-ordered and the label re-indexed; and the order used."""
    label = record.label
    order = option_order(len(label["options"]), int(label["answer_index"]), _seeded(seed, record.id))
    return reorder_options(record, order), order


def reorder_options(record: Record, order: tuple[int, ...]) -> Record:
    """The closed record with option p showing original option order[p]; label and reference answer follow."""
    label = record.label
    options, answer = [str(o) for o in label["options"]], int(label["answer_index"])
    user_at = max(i for i, m in enumerate(record.messages) if m["role"] == "user")
    text = record.messages[user_at]["content"]
    spans = locate_options(text, options)
    for position in reversed(range(len(options))):
        start, end, _ = spans[position]
        text = text[:start] + options[order[position]] + text[end:]
    messages = [dict(m) for m in record.messages]
    messages[user_at]["content"] = text
    new_answer = order.index(answer)
    new_label = _permuted_label(label, order, new_answer)
    for m in messages[user_at + 1:]:
        if m["role"] == "assistant" and m["content"].strip() == f"{LETTERS[answer]}. {options[answer]}":
            m["content"] = f"{LETTERS[new_answer]}. {options[answer]}"
    return replace(record, messages=messages, label=new_label)


def _permuted_label(label: dict[str, Any], order: tuple[int, ...], new_answer: int) -> dict[str, Any]:
    out = dict(label)
    out["options"] = [label["options"][i] for i in order]
    out["answer_index"] = new_answer
    if "answer_letter" in out:
        out["answer_letter"] = LETTERS[new_answer]
    target = label.get("clinical_target")
    if isinstance(target, dict) and isinstance(target.get("option_values"), list):
        out["clinical_target"] = {**target, "option_values": [target["option_values"][i] for i in order]}
    return out


@ABLATIONS.register("permute-options")
def _permute_sets(records: list[Record], seed: int = 0) -> list[AblationSet]:
    out = AblationSet("permute_options", f"permute_options:seed={seed}", [])
    for r in records:
        if r.task_family != "closed_vqa":
            out.not_applicable += 1
            continue
        try:
            permuted, order = permute_options(r, seed)
        except OptionsNotFound as exc:
            out.refused[r.id] = f"options not located in the prompt: {exc}"
            continue
        out.prompts.append(Prompt(r.id, "permute_options", permuted, option_order=order))
    return [out]


# --------------------------------------------------------------------------------------------------- circular


def rotation(n: int, k: int) -> tuple[int, ...]:
    """Presented position p -> original option (p + k) mod n."""
    return tuple((p + k) % n for p in range(n))


@ABLATIONS.register("circular")
def _circular_sets(records: list[Record], seed: int = 0) -> list[AblationSet]:
    return circular_sets(records)


def circular_sets(records: list[Record]) -> list[AblationSet]:
    """One prompt set per rotation k = 1 … (most options − 1); an item with n options is in rotations 1 … n−1."""
    closed = [r for r in records if r.task_family == "closed_vqa"]
    most = max((len(r.label.get("options", [])) for r in closed), default=0)
    sets = []
    for k in range(1, min(most, len(LETTERS))):
        out = AblationSet(f"circular_{k}", f"circular_{k}", [], not_applicable=len(records) - len(closed))
        for r in closed:
            n = len(r.label["options"])
            if k >= n:
                out.not_applicable += 1
                continue
            order = rotation(n, k)
            try:
                out.prompts.append(Prompt(r.id, out.variant, reorder_options(r, order), option_order=order))
            except OptionsNotFound as exc:
                out.refused[r.id] = f"options not located in the prompt: {exc}"
        sets.append(out)
    return sets
