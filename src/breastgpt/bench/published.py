"""Import the published BreastStage / BreastStage-Bench files (ms-swift layout) as corpus records (SPEC §4.3).

A published row has `messages` (optional system turn, user turns with one `<image>` / `<video>` placeholder per
entry of `images` / `videos`, the reference assistant turn), `images`, `videos`, optionally `objects` (ms-swift
grounding: `bbox` on the 0–1000 grid with `bbox_type: norm1000`) and sometimes more keys. Each record field is
taken from, in order:

  explicit fields  the keys in `PUBLISHED_FIELDS` (e.g. `modality`, `stage`, `patient_id`, `study_id`,
                   `dataset`); other keys are ignored and counted in the import summary;
  the media        `published_media.media_facts`: DICOM `Modality`, file content, file type; a slide (tile-feature
                   file or WSI) is a slide input whose placeholder becomes `<slide>`;
  the text         only to choose among what the media allow, and only when one candidate is named: the system
                   turn first, then the question. "CT … compared with the prior mammogram" with a volume is CT.
Stage is chosen among the stages the modality occurs in (SPEC §4.2: CT is screening only, pathology treatment
only). Anything still undecided is `unknown`, never a guess, and a field that contradicts the media is a
conflict (`unknown`, listed in the summary). Patients and studies are pseudonymised (sha256 with the source);
with neither, the scorer clusters by shared image (clusters.py).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from breastgpt.bench.aggregate import PAPER_COLUMNS
from breastgpt.bench.items import BenchDataError, canonical_value
from breastgpt.bench.published_media import MediaFacts, media_facts
from breastgpt.corpus.records import (FAMILIES, MEDIA_TOKENS, STAGES, MediaRef, Provenance, Record, RecordError,
                                      UNKNOWN)

# Our field -> the keys a published row may carry it under (first present wins).
PUBLISHED_FIELDS: dict[str, tuple[str, ...]] = {
    "id": ("id", "item_id", "question_id"),
    "source": ("source", "dataset", "sub_dataset"),
    "patient": ("patient_key", "patient_id", "patient"),
    "study": ("study_key", "study_id", "study"),
    "stage": ("stage", "clinical_stage"),
    "modality": ("modality",),
    "task_family": ("task_family", "task_type"),
    "template_id": ("template_id", "template"),
}
SWIFT_KEYS = ("messages", "images", "videos", "objects", "slides")
# Words that name a modality or a stage in prompt text (case-insensitive, whole words).
MODALITY_WORDS: dict[str, re.Pattern[str]] = {
    "mammography": re.compile(r"\bmammo(?:gra\w*|s)?\b", re.I),
    "ultrasound": re.compile(r"\bultrasound\w*|\bultrason\w*|\bsonogra\w*", re.I),
    "mri": re.compile(r"\bmri\b|\bmagnetic resonance\b", re.I),
    "ct": re.compile(r"\bct\b|\bcomputed tomography\b", re.I),
    "pathology": re.compile(r"\bwhole[- ]slide\b|\bhistopatholog\w*|\bhistolog\w*|\bwsi\b|\bh&e\b", re.I),
}
STAGE_WORDS: dict[str, re.Pattern[str]] = {
    "screening": re.compile(r"\bscreening\b", re.I),
    "diagnosis": re.compile(r"\bdiagnos\w*", re.I),
    "treatment": re.compile(r"\btreatment\b|\btherap\w*", re.I),
}
STAGES_OF_MODALITY: dict[str, frozenset[str]] = {
    m: frozenset(s for _, s, mm in PAPER_COLUMNS if mm == m) for _, _, m in PAPER_COLUMNS}
_ALL_MODALITIES = frozenset(STAGES_OF_MODALITY)
_MAX_LISTED = 20
_OPTION_LINE = re.compile(r"^\s*\(?([A-F])[\).:]\s+(.+?)\s*$", re.MULTILINE)
_ANSWER_LETTER = re.compile(r"^\s*\(?([A-F])\)?(?:[\).:]|\s|$)")
_BOX = re.compile(r"\[\s*(\d+(?:\.\d+)?(?:\s*,\s*\d+(?:\.\d+)?){3}(?:\s*,\s*\d+(?:\.\d+)?){0,2})\s*\]")


@dataclass
class PublishedImport:
    records: list[Record]
    summary: dict[str, Any] = field(default_factory=dict)


class _Tally:
    """Counts of how each record field was decided, for the import summary."""

    def __init__(self) -> None:
        self.counts: dict[str, Counter[str]] = defaultdict(Counter)
        self.conflicts: list[dict[str, Any]] = []

    def conflict(self, index: int, what: str, detail: str) -> None:
        self.counts["conflicts"][what] += 1
        if len(self.conflicts) < _MAX_LISTED:
            self.conflicts.append({"row": index, "field": what, "detail": detail})

    def as_dict(self, rows: int) -> dict[str, Any]:
        out: dict[str, Any] = {"rows": rows}
        out.update({k: dict(sorted(v.items())) for k, v in sorted(self.counts.items())})
        out["conflicts_listed"] = self.conflicts
        return out


def import_published(path: Path, *, split: str, source: str = "breaststage",
                     media_root: Path | None = None) -> PublishedImport:
    """Read a published JSON array or JSONL file; errors name the file and the row."""
    path = Path(path)
    rows = _read_rows(path)
    tally = _Tally()
    records = []
    for i, row in enumerate(rows):
        try:
            records.append(import_row(row, index=i, source=source, split=split, media_root=media_root, tally=tally))
        except (KeyError, TypeError, ValueError) as exc:
            raise BenchDataError(f"{path}: row {i} cannot be imported: {exc}") from None
    return PublishedImport(records, tally.as_dict(len(rows)))


def _read_rows(path: Path) -> list[dict[str, Any]]:
    text = path.read_text(encoding="utf-8")
    try:
        rows = json.loads(text) if text.lstrip().startswith("[") else [
            json.loads(line) for line in text.splitlines() if line.strip()]
    except json.JSONDecodeError as exc:
        raise BenchDataError(f"{path}: not JSON or JSONL ({exc.msg} at line {exc.lineno}); expected the published "
                             f"BreastStage ms-swift files") from None
    bad = next((i for i, r in enumerate(rows) if not isinstance(r, dict)), None)
    if bad is not None:
        raise BenchDataError(f"{path}: row {bad} is not a JSON object")
    return rows


def import_row(row: dict[str, Any], *, index: int, source: str, split: str, media_root: Path | None,
               tally: _Tally) -> Record:
    """One published row -> one Record (see the module docstring for where each field comes from)."""
    fields = _explicit_fields(row, tally)
    messages = _messages(row)
    facts = _media(row, media_root, tally)
    messages = _place_tokens(messages, row, facts)
    texts = [_joined(messages, "system"), _joined(messages, "user")]
    modality = _decide(index, "modality", fields.get("modality"), _allowed_modalities(facts), texts,
                       MODALITY_WORDS, tally, "media")
    stage = _decide(index, "stage", fields.get("stage"), STAGES_OF_MODALITY.get(modality, frozenset(STAGES)),
                    texts, STAGE_WORDS, tally, "modality")
    family, label = _family_and_label(row, messages, fields.get("task_family"))
    tally.counts["task_family"][family] += 1
    src = str(fields.get("source", source))
    kinds = sorted({f.kind for f in facts.values()})
    kind = kinds[0] if len(kinds) == 1 else UNKNOWN
    tally.counts["kind"][kind if kinds else "none"] += 1
    return Record(
        id=str(fields["id"]) if "id" in fields else _content_id(messages, row),
        source=src, patient_key=_pseudonym(src, "patient", fields.get("patient")),
        study_key=_study(src, fields.get("study"), facts, tally), stage=stage, modality=modality,
        kind=kind, task_family=family,
        template_id=str(fields.get("template_id", UNKNOWN)), answer_provenance=Provenance(UNKNOWN), split=split,
        messages=messages, label=label, media=[MediaRef(f.path, f.sha256, f.kind) for f in facts.values()],
        objects=row.get("objects") or None)


# ------------------------------------------------------------------------------------------------- fields


def _explicit_fields(row: dict[str, Any], tally: _Tally) -> dict[str, Any]:
    out: dict[str, Any] = {}
    known = set(SWIFT_KEYS)
    for name, keys in PUBLISHED_FIELDS.items():
        known.update(keys)
        value = next((row[k] for k in keys if row.get(k) not in (None, "")), None)
        if value is not None:
            out[name] = value
    for key in set(row) - known:
        tally.counts["ignored_keys"][key] += 1
    return out


def _messages(row: dict[str, Any]) -> list[dict[str, str]]:
    raw = row.get("messages")
    if not isinstance(raw, list) or not raw:
        raise RecordError("no messages")
    return [{"role": str(m["role"]), "content": str(m["content"])} for m in raw]


def _joined(messages: list[dict[str, str]], role: str) -> str:
    return "\n".join(m["content"] for m in messages if m["role"] == role)


def _pseudonym(source: str, what: str, value: Any) -> str:
    if value is None or str(value).strip().lower() in ("", UNKNOWN):
        return UNKNOWN
    digest = hashlib.sha256(f"{source}\x00{value}".encode()).hexdigest()
    return f"pub-{what}-{digest[:16]}"


def _study(source: str, value: Any, facts: dict[tuple[str, int], MediaFacts], tally: _Tally) -> str:
    if value is not None:
        tally.counts["study_key"]["field"] += 1
        return _pseudonym(source, "study", value)
    studies = sorted({f.study for f in facts.values() if f.study})
    tally.counts["study_key"]["dicom" if studies else "none"] += 1
    return studies[0] if studies else UNKNOWN


def _content_id(messages: list[dict[str, str]], row: dict[str, Any]) -> str:
    content = json.dumps({"messages": messages, "images": row.get("images") or [], "videos": row.get("videos") or [],
                          "slides": row.get("slides") or []}, sort_keys=True)
    return f"imp-{hashlib.sha256(content.encode()).hexdigest()[:20]}"


# -------------------------------------------------------------------------------------------------- media

_SLOTS = (("images", "image"), ("videos", "volume"), ("slides", "slide"))


def _media(row: dict[str, Any], media_root: Path | None, tally: _Tally) -> dict[tuple[str, int], MediaFacts]:
    """(slot, position) -> facts, in slot order (images, videos, slides)."""
    out = {}
    for slot, kind in _SLOTS:
        for n, path in enumerate(row.get(slot) or []):
            facts = media_facts(str(path), kind, media_root)
            tally.counts["media_evidence"][facts.evidence] += 1
            tally.counts["media_files"]["hashed" if facts.sha256 else "not found"] += 1
            if facts.problem:
                tally.counts["media_files"]["unreadable"] += 1
            out[(slot, n)] = facts
    return out


def _allowed_modalities(facts: dict[tuple[str, int], MediaFacts]) -> frozenset[str]:
    allowed = _ALL_MODALITIES
    for f in facts.values():
        if f.modalities is not None:
            allowed = allowed & f.modalities
    return allowed


def _place_tokens(messages: list[dict[str, str]], row: dict[str, Any],
                  facts: dict[tuple[str, int], MediaFacts]) -> list[dict[str, str]]:
    """The n-th placeholder of a slot is the n-th entry's: it becomes the token of the entry's real kind. Inputs
    still without a placeholder get one before the first user turn's text, as ms-swift does."""
    out = [dict(m) for m in messages]
    for slot, kind in _SLOTS:
        # a marker no slot's placeholder matches, so a converted placeholder is not claimed again by a later slot
        new = [f"\x00{facts[(slot, n)].kind}\x00" for n in range(len(row.get(slot) or []))]
        seen = 0
        for m in (m for m in out if m["role"] == "user"):
            m["content"], seen = _retoken(m["content"], MEDIA_TOKENS[kind], new, seen)
    for m in out:
        for k, token in MEDIA_TOKENS.items():
            m["content"] = m["content"].replace(f"\x00{k}\x00", token)
    have = _joined(out, "user")
    wanted = Counter(f.kind for f in facts.values())
    missing = "".join(MEDIA_TOKENS[k] * (wanted[k] - have.count(MEDIA_TOKENS[k])) for k in MEDIA_TOKENS)
    if missing:
        first = next(m for m in out if m["role"] == "user")
        first["content"] = missing + first["content"]
    return out


def _retoken(text: str, old: str, new: list[str], seen: int) -> tuple[str, int]:
    parts = text.split(old)
    rebuilt = parts[0]
    for part in parts[1:]:
        rebuilt += (new[seen] if seen < len(new) else old) + part
        seen += 1
    return rebuilt, seen


# ----------------------------------------------------------------------------------------- stage, modality


def _decide(index: int, what: str, field_value: Any, allowed: frozenset[str], texts: list[str],
            words: dict[str, re.Pattern[str]], tally: _Tally, narrowed_by: str) -> str:
    value, basis = _resolve(field_value, allowed, texts, words, what, narrowed_by)
    tally.counts[what][value] += 1
    tally.counts[f"{what}_from"][basis] += 1
    if basis == "conflict":
        tally.conflict(index, what, f"field {field_value!r} vs {narrowed_by} allowing {sorted(allowed) or 'nothing'}")
    return value


def _resolve(field_value: Any, allowed: frozenset[str], texts: list[str], words: dict[str, re.Pattern[str]],
             what: str, narrowed_by: str) -> tuple[str, str]:
    """(value, how it was decided): field | <narrowed_by> (the only value allowed) | <narrowed_by>+text (the one
    allowed value the text names) | text | conflict | unrecognised field | undecided."""
    if field_value is not None:
        value = canonical_value(field_value, what)
        if value in (None, UNKNOWN):
            return UNKNOWN, "unrecognised field"
        return (value, "field") if value in allowed else (UNKNOWN, "conflict")
    if not allowed:
        return UNKNOWN, "conflict"
    if len(allowed) == 1:
        return next(iter(allowed)), narrowed_by
    narrowed = allowed != frozenset(words)
    for text in texts:  # the system turn names the stage in the published layout, so it is read first
        named = {v for v, pattern in words.items() if pattern.search(text)} & allowed
        if len(named) == 1:
            return named.pop(), f"{narrowed_by}+text" if narrowed else "text"
    return UNKNOWN, "undecided"


# ---------------------------------------------------------------------------------------- family and label


def _family_and_label(row: dict[str, Any], messages: list[dict[str, str]],
                      field_value: Any) -> tuple[str, dict[str, Any]]:
    user, answer = _joined(messages, "user"), next(
        (m["content"] for m in reversed(messages) if m["role"] == "assistant"), "")
    family, label = _shape_of(user, answer, row.get("objects"))
    if field_value is None or field_value == family:
        return family, label
    if field_value not in FAMILIES:
        raise RecordError(f"task family {field_value!r} not in {FAMILIES}")
    if field_value in ("open_vqa", "report", "grounded_caption"):
        out = {"answer": answer, "key_findings": []}
        if field_value == "grounded_caption" and "box" in label:
            out["box"] = label["box"]
        return field_value, out
    raise RecordError(f"task family {field_value!r} but the answer {answer[:60]!r} is not of that shape "
                      f"(closed: a lettered option; grounding: a box)")


def _shape_of(user: str, answer: str, objects: Any) -> tuple[str, dict[str, Any]]:
    """Closed if the prompt lists lettered options and the answer starts with one; grounding if it is a box."""
    options = _OPTION_LINE.findall(user)
    letter = _ANSWER_LETTER.match(answer)
    letters = [o[0] for o in options]
    if len(options) >= 2 and letter and letter.group(1) in letters and letters == sorted(letters):
        return "closed_vqa", {"options": [o[1] for o in options], "answer_index": letters.index(letter.group(1))}
    box = _box(answer, objects)
    if box is not None:
        return "grounding", {"box": box, "boxes": [box], "target": UNKNOWN}
    return "open_vqa", {"answer": answer, "key_findings": []}


def _box(answer: str, objects: Any) -> list[int] | None:
    if answer.strip() == "<bbox>" and isinstance(objects, dict) and objects.get("bbox"):
        if objects.get("bbox_type", "real") != "norm1000":
            raise RecordError(f"objects bbox_type {objects.get('bbox_type', 'real')!r}: only 'norm1000' boxes can "
                              f"be scored without the image size; convert the file's boxes to the 0-1000 grid")
        values = [float(v) for v in objects["bbox"][0]]
    else:
        match = _BOX.fullmatch(answer.strip())
        if match is None:
            return None
        values = [float(v) for v in match.group(1).split(",")]
    if not all(0 <= v <= 1000 for v in values):
        return None
    return [round(v) for v in values]
