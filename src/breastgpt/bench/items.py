"""Benchmark items and saved responses: the typed views the scorer works on.

A `BenchItem` is built from one corpus record dict (SPEC §4.3). This module deliberately does not import
`breastgpt.corpus.records`: the scorer must read bench files written by any version of the corpus code, and the
published ms-swift files, so it checks only the fields it scores on and says exactly what is wrong when one is bad.

A `SavedResponse` is one line of a run's `responses.jsonl` (what a model said for one item under one variant).
Import/export of ms-swift inference results (`response`, `labels`, optional `id`) lives here too.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

from breastgpt.artifacts import atomic_path

STAGES = ("screening", "diagnosis", "treatment", "unknown")
MODALITIES = ("mammography", "ultrasound", "mri", "ct", "pathology", "unknown")
FAMILIES = ("closed_vqa", "open_vqa", "grounding", "grounded_caption", "report")
PROVENANCES = ("label", "report", "generated", "unknown")
OPTION_LETTERS = "ABCDEF"
# circular_k: the closed options rotated by k positions (circular evaluation, ablations.py)
CIRCULAR_VARIANTS = tuple(f"circular_{k}" for k in range(1, len(OPTION_LETTERS)))
VARIANTS = ("full", "no_image", "shuffle_image", "permute_options", "no_prior_media", *CIRCULAR_VARIANTS)

# Aliases seen in published files and other tools; everything else outside the vocabularies is an error.
_STAGE_ALIASES = {"treatment planning": "treatment", "treatment_planning": "treatment", "dx": "diagnosis",
                  "scr": "screening", "tx": "treatment"}
_MODALITY_ALIASES = {"mammo": "mammography", "mam": "mammography", "mg": "mammography", "us": "ultrasound",
                     "bus": "ultrasound", "path": "pathology", "wsi": "pathology", "histopathology": "pathology",
                     "chest_ct": "ct", "breast_mri": "mri"}
# Record keys the scorer knows; it reads some and carries the rest untouched. Any other key is schema drift.
_RECORD_KEYS = {"id", "source", "patient_key", "study_key", "stage", "modality", "kind", "task_family",
                "template_id", "answer_provenance", "split", "messages", "images", "videos", "slides", "objects",
                "label", "media"}
_TARGET_KEYS = {"name", "kind", "positive_threshold", "option_values", "levels"}


class BenchDataError(ValueError):
    """A bench item or saved response that cannot be scored; the message names the file/item and the fix."""


@dataclass(frozen=True)
class ClinicalTarget:
    """How a closed question's options map onto a clinical variable (e.g. BI-RADS ≥ 4 = positive).

    `option_values[i]` is the clinical value of option i; for ordinal targets the value's rank is its position in
    `levels` when given, else the number itself. Binary targets: a truthy value is positive.
    """

    name: str
    kind: str  # binary | ordinal
    option_values: tuple[Any, ...]
    positive_threshold: Any = None
    levels: tuple[Any, ...] = ()

    def rank(self, value: Any) -> float:
        if self.levels:
            return float(self.levels.index(value))
        return float(value)

    def is_positive(self, value: Any) -> bool:
        if self.kind == "binary":
            return bool(value)
        return self.rank(value) >= self.rank(self.positive_threshold)


@dataclass(frozen=True)
class BenchItem:
    """One scorable benchmark question. Exactly the label fields of its task family are set."""

    id: str
    source: str
    patient_key: str
    stage: str
    modality: str
    task_family: str
    template_id: str
    answer_provenance: str
    question: str
    options: tuple[str, ...] = ()
    answer_index: int | None = None
    clinical_target: ClinicalTarget | None = None
    box: tuple[float, ...] | None = None
    answer: str | None = None
    key_findings: tuple[str, ...] = ()
    images: tuple[str, ...] = ()
    videos: tuple[str, ...] = ()
    study_key: str = "unknown"
    # One identity per visual input (sha256 of its bytes, or "path:<path>" when the hash is unknown): clusters fall
    # back to shared media when no patient or study is known (clusters.py).
    media_ids: tuple[str, ...] = ()
    answer_generator: str | None = None  # the model that wrote a 'generated' reference, when recorded
    partition: str = "internal"  # internal | external (a source or site held out of training, corpus --external)

    @property
    def is_closed(self) -> bool:
        return self.task_family == "closed_vqa"


@dataclass(frozen=True)
class SavedResponse:
    """One model answer for one item. `option_order` (presented position -> original option index) is required
    for the permute_options and circular variants; `score` is a model probability of the positive class, when it
    gives one; `option_probs` are the model's probabilities of the closed options in the order presented (option
    scoring: per-option log-likelihoods of a local model, or an endpoint's `logprobs`), normalised to sum 1."""

    item_id: str
    response: str
    model: str
    variant: str = "full"
    params: dict[str, Any] = field(default_factory=dict)
    option_order: tuple[int, ...] | None = None
    score: float | None = None
    option_probs: tuple[float, ...] | None = None


# ------------------------------------------------------------------------------------------ record -> BenchItem


def item_from_record(rec: dict[str, Any], where: str = "<dict>") -> BenchItem:
    """Convert one corpus/bench record dict into a `BenchItem`, validating what scoring relies on."""
    rid = rec.get("id")
    ctx = f"{where}: item {rid!r}"
    unknown = set(rec) - _RECORD_KEYS
    if unknown:
        raise BenchDataError(f"{ctx}: unknown keys {sorted(unknown)}; the bench expects SPEC §4.3 records")
    for key in ("id", "source", "patient_key", "task_family", "messages", "label"):
        if key not in rec:
            raise BenchDataError(f"{ctx}: missing field {key!r}; re-export the bench with the corpus tools")
    family = rec["task_family"]
    if family not in FAMILIES:
        raise BenchDataError(f"{ctx}: task_family {family!r} not in {FAMILIES}")
    label = rec["label"]
    if not isinstance(label, dict):
        raise BenchDataError(f"{ctx}: label must be an object, got {type(label).__name__}")
    common = dict(
        id=str(rid), source=str(rec["source"]), patient_key=str(rec["patient_key"]),
        stage=_normalise(rec.get("stage", "unknown"), STAGES, ctx, "stage"),
        modality=_normalise(rec.get("modality", "unknown"), MODALITIES, ctx, "modality"),
        task_family=family, template_id=str(rec.get("template_id", "unknown")),
        answer_provenance=_provenance(rec.get("answer_provenance", "unknown"), ctx),
        question=_question(rec["messages"], ctx),
        images=tuple(rec.get("images") or ()), videos=tuple(rec.get("videos") or ()),
        study_key=str(rec.get("study_key") or "unknown"), media_ids=_media_ids(rec),
        answer_generator=_generator(rec.get("answer_provenance")),
        partition="external" if rec.get("split") == "external" else "internal",
    )
    return BenchItem(**common, **_label_fields(family, label, ctx))


def _normalise(value: Any, vocab: tuple[str, ...], ctx: str, what: str) -> str:
    text = canonical_value(value, what)
    if text is None:
        raise BenchDataError(f"{ctx}: {what} {value!r} not in {vocab}")
    return text


def canonical_value(value: Any, what: str) -> str | None:
    """A stage or modality spelled any accepted way -> its vocabulary value; None when it is not one."""
    vocab, aliases = {"stage": (STAGES, _STAGE_ALIASES), "modality": (MODALITIES, _MODALITY_ALIASES)}[what]
    text = str(value).strip().lower()
    text = aliases.get(text, text)
    return text if text in vocab else None


def _media_ids(rec: dict[str, Any]) -> tuple[str, ...]:
    media = rec.get("media")
    if isinstance(media, list) and all(isinstance(m, dict) and "path" in m for m in media):
        return tuple(str(m.get("sha256") or f"path:{m['path']}") for m in media)
    paths = [*(rec.get("images") or ()), *(rec.get("videos") or ()), *(rec.get("slides") or ())]
    return tuple(f"path:{p}" for p in paths)


def _generator(provenance: Any) -> str | None:
    model = provenance.get("generator_model") if isinstance(provenance, dict) else None
    return str(model) if model else None


def _provenance(value: Any, ctx: str) -> str:
    kind = value.get("kind") if isinstance(value, dict) else value
    if kind not in PROVENANCES:
        raise BenchDataError(f"{ctx}: answer_provenance {value!r}; expected one of {PROVENANCES}")
    return str(kind)


def _question(messages: Any, ctx: str) -> str:
    if not isinstance(messages, list) or not all(isinstance(m, dict) and "role" in m for m in messages):
        raise BenchDataError(f"{ctx}: messages must be a list of {{role, content}} objects")
    users = [str(m.get("content", "")) for m in messages if m["role"] == "user"]
    if not users:
        raise BenchDataError(f"{ctx}: no user message to ask")
    return users[-1]


def _label_fields(family: str, label: dict[str, Any], ctx: str) -> dict[str, Any]:
    if family == "closed_vqa":
        return _closed_fields(label, ctx)
    out: dict[str, Any] = {}
    if family in ("grounding", "grounded_caption") and "box" in label:
        out["box"] = _box(label["box"], ctx)
    elif family == "grounding":
        raise BenchDataError(f"{ctx}: grounding label needs 'box' [x1,y1,x2,y2] on the 0-1000 grid")
    if family != "grounding":
        answer, findings = label.get("answer"), label.get("key_findings", [])
        if not isinstance(answer, str) or not isinstance(findings, list):
            raise BenchDataError(f"{ctx}: {family} label needs 'answer' (str) and 'key_findings' (list)")
        out.update(answer=answer, key_findings=tuple(str(f) for f in findings))
    return out


def _closed_fields(label: dict[str, Any], ctx: str) -> dict[str, Any]:
    options, idx = label.get("options"), label.get("answer_index")
    if not isinstance(options, list) or not 2 <= len(options) <= len(OPTION_LETTERS):
        raise BenchDataError(f"{ctx}: closed label needs 2-{len(OPTION_LETTERS)} options, got {options!r}")
    if not isinstance(idx, int) or isinstance(idx, bool) or not 0 <= idx < len(options):
        raise BenchDataError(f"{ctx}: answer_index {idx!r} is not an index into the {len(options)} options")
    target = label.get("clinical_target")
    return dict(options=tuple(str(o) for o in options), answer_index=idx,
                clinical_target=None if target is None else _target(target, len(options), ctx))


def _target(raw: Any, n_options: int, ctx: str) -> ClinicalTarget:
    if not isinstance(raw, dict) or set(raw) - _TARGET_KEYS or "name" not in raw:
        raise BenchDataError(f"{ctx}: clinical_target must be an object with keys from {sorted(_TARGET_KEYS)}, "
                             f"got {raw!r}")
    kind = raw.get("kind")
    if kind not in ("binary", "ordinal"):
        raise BenchDataError(f"{ctx}: clinical_target kind {kind!r}; expected 'binary' or 'ordinal'")
    values = tuple(raw.get("option_values", range(n_options)))
    if len(values) != n_options:
        raise BenchDataError(f"{ctx}: clinical_target option_values has {len(values)} values for {n_options} options")
    target = ClinicalTarget(name=str(raw["name"]), kind=kind, option_values=values,
                            positive_threshold=raw.get("positive_threshold"), levels=tuple(raw.get("levels", ())))
    if kind == "ordinal":
        try:
            [target.rank(v) for v in values + (target.positive_threshold,)]
        except (ValueError, TypeError) as exc:
            raise BenchDataError(f"{ctx}: ordinal clinical_target needs numeric option_values and "
                                 f"positive_threshold, or all of them listed in 'levels' ({exc})") from None
    return target


def _box(raw: Any, ctx: str) -> tuple[float, ...]:
    ok = isinstance(raw, (list, tuple)) and len(raw) in (4, 6) and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and 0 <= v <= 1000 for v in raw)
    if not ok or raw[0] > raw[2] or raw[1] > raw[3] or (len(raw) == 6 and raw[4] > raw[5]):
        raise BenchDataError(f"{ctx}: box {raw!r} must be [x1,y1,x2,y2] (3-D: [x1,y1,x2,y2,z1,z2]) with "
                             f"0 <= x1 <= x2 <= 1000 etc.")
    return tuple(float(v) for v in raw)


# -------------------------------------------------------------------------------------------------- file I/O


def read_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (line number, object) for each non-blank line; a line that is not a JSON object is an error."""
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise BenchDataError(f"{path}:{n}: not valid JSON ({exc.msg}); fix or remove the line") from None
            if not isinstance(obj, dict):
                raise BenchDataError(f"{path}:{n}: expected a JSON object per line")
            yield n, obj


def load_items(path: Path, split: str | None = None) -> list[BenchItem]:
    """Read a bench JSONL file (only the records of `split` when given, e.g. 'train' from a corpus's
    records.jsonl); duplicate ids are an error (every score is keyed by item id)."""
    items: list[BenchItem] = []
    seen: set[str] = set()
    for n, rec in read_jsonl(Path(path)):
        if split is not None and rec.get("split") != split:
            continue
        item = item_from_record(rec, f"{path}:{n}")
        if item.id in seen:
            raise BenchDataError(f"{path}:{n}: duplicate item id {item.id!r}; bench ids must be unique")
        seen.add(item.id)
        items.append(item)
    return items


def response_from_dict(obj: dict[str, Any], where: str) -> SavedResponse:
    known = {"item_id", "response", "model", "variant", "params", "option_order", "score", "option_probs"}
    extra = set(obj) - known
    if extra:
        raise BenchDataError(f"{where}: unknown keys {sorted(extra)} in saved response; expected {sorted(known)}")
    for key in ("item_id", "response", "model"):
        if key not in obj:
            raise BenchDataError(f"{where}: saved response lacks {key!r}")
    variant = obj.get("variant", "full")
    if variant not in VARIANTS:
        raise BenchDataError(f"{where}: variant {variant!r} not in {VARIANTS}")
    order = obj.get("option_order")
    if (variant == "permute_options" or variant in CIRCULAR_VARIANTS) and order is None:
        raise BenchDataError(f"{where}: {variant} responses need 'option_order' (presented -> original)")
    probs = obj.get("option_probs")
    if probs is not None and (not isinstance(probs, list) or not probs
                              or not all(isinstance(p, (int, float)) and 0 <= p <= 1 for p in probs)):
        raise BenchDataError(f"{where}: option_probs must be a list of probabilities, got {probs!r}")
    response = obj["response"]
    return SavedResponse(item_id=str(obj["item_id"]), response="" if response is None else str(response),
                         model=str(obj["model"]), variant=variant, params=dict(obj.get("params") or {}),
                         option_order=None if order is None else tuple(int(i) for i in order),
                         score=None if obj.get("score") is None else float(obj["score"]),
                         option_probs=None if probs is None else tuple(float(p) for p in probs))


def load_responses(path: Path) -> list[SavedResponse]:
    return [response_from_dict(obj, f"{path}:{n}") for n, obj in read_jsonl(Path(path))]


def write_jsonl_atomic(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    """Write JSONL through a temp file in the same folder and rename, so readers never see half a file."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")


def response_to_dict(resp: SavedResponse) -> dict[str, Any]:
    out = asdict(resp)
    out["option_order"] = None if resp.option_order is None else list(resp.option_order)
    out["option_probs"] = None if resp.option_probs is None else list(resp.option_probs)
    return {k: v for k, v in out.items() if v is not None}


# ------------------------------------------------------------------------------------------- ms-swift interop


def reference_text(item: BenchItem) -> str:
    """The reference answer as ms-swift writes it in `labels`: letter + option for closed, box text, or answer."""
    if item.is_closed:
        assert item.answer_index is not None
        return f"{OPTION_LETTERS[item.answer_index]}. {item.options[item.answer_index]}"
    if item.task_family == "grounding":
        assert item.box is not None
        return "[" + ",".join(f"{v:g}" for v in item.box) + "]"
    return item.answer or ""


def media_identity(entry: Any) -> str:
    """A media entry as the stem of its file name, however a tool wrote it: a path (relative or absolute), an
    ms-swift `{"bytes": null, "path": ...}`, or a volume exported as a frame list (its folder is named after the
    volume file, `corpus.swift_export`). Corpus media files are named by their content hash, so stems identify."""
    if isinstance(entry, dict):
        entry = entry.get("path") or ""
    if isinstance(entry, (list, tuple)):
        first = entry[0] if entry else ""
        return Path(str(first.get("path") if isinstance(first, dict) else first)).parent.name
    name = Path(str(entry)).name
    return name.split(".", 1)[0]


def _content_key(question: str, media: Iterable[Any]) -> str:
    return hashlib.sha256(json.dumps([question, sorted(media_identity(m) for m in media)]).encode()).hexdigest()


def import_swift_results(path: Path, items: list[BenchItem], model: str) -> list[SavedResponse]:
    """Read an ms-swift inference result JSONL (`response`, `labels`, and `id` when the dataset carried one).

    Lines without an id (what `swift infer` writes) are matched to items by their last user message and media,
    compared by file stem (`media_identity`), so relative, absolute and frame-list media all match; a line that
    matches no item or several is an error. When `labels` is present it must equal the item's reference text, which catches a
    result file produced from a different bench version.
    """
    by_id = {it.id: it for it in items}
    by_content: dict[str, list[BenchItem]] = {}
    for it in items:
        by_content.setdefault(_content_key(it.question, it.images + it.videos), []).append(it)
    out: list[SavedResponse] = []
    for n, obj in read_jsonl(Path(path)):
        where = f"{path}:{n}"
        if "response" not in obj:
            raise BenchDataError(f"{where}: ms-swift result line lacks 'response'")
        item = _match_swift_line(obj, by_id, by_content, where)
        ref = obj.get("labels", obj.get("reference"))
        if isinstance(ref, str) and ref.strip() != reference_text(item).strip():
            raise BenchDataError(f"{where}: labels {ref[:60]!r} differ from item {item.id}'s reference "
                                 f"{reference_text(item)[:60]!r}; results come from another bench version")
        out.append(SavedResponse(item_id=item.id, response=str(obj["response"] or ""), model=model))
    return out


def _match_swift_line(obj: dict[str, Any], by_id: dict[str, BenchItem], by_content: dict[str, list[BenchItem]],
                      where: str) -> BenchItem:
    rid = obj.get("id", obj.get("item_id"))
    if rid is not None:
        if str(rid) not in by_id:
            raise BenchDataError(f"{where}: id {rid!r} is not in the bench items")
        return by_id[str(rid)]
    msgs = obj.get("messages") or []
    users = [m.get("content", "") for m in msgs if isinstance(m, dict) and m.get("role") == "user"]
    media = list(obj.get("images") or []) + list(obj.get("videos") or [])
    hits = by_content.get(_content_key(users[-1] if users else "", media), [])
    if len(hits) != 1:
        raise BenchDataError(f"{where}: line has no id and its question/media match {len(hits)} items; "
                             f"run ms-swift on a dataset that keeps the 'id' column")
    return hits[0]


def export_swift_dataset(items: list[BenchItem], path: Path, system: dict[str, str] | None = None) -> None:
    """Write the items as an ms-swift inference dataset (user turn + reference assistant turn, media, id)."""
    rows = []
    for it in items:
        msgs = [{"role": "system", "content": system[it.stage]}] if system and it.stage in system else []
        msgs += [{"role": "user", "content": it.question}, {"role": "assistant", "content": reference_text(it)}]
        rows.append({"id": it.id, "messages": msgs, "images": list(it.images), "videos": list(it.videos)})
    write_jsonl_atomic(path, rows)


def export_swift_results(items: list[BenchItem], responses: list[SavedResponse], path: Path) -> None:
    """Write saved responses in ms-swift's result layout (`response`, `labels`, messages, media, id)."""
    by_id = {it.id: it for it in items}
    rows = []
    for r in responses:
        it = by_id[r.item_id]
        rows.append({"id": it.id, "response": r.response, "labels": reference_text(it),
                     "messages": [{"role": "user", "content": it.question}],
                     "images": list(it.images), "videos": list(it.videos)})
    write_jsonl_atomic(path, rows)
