"""Corpus records (SPEC §4.3): the ms-swift layout plus the fields scoring, splitting and auditing need.

A record is one instruction pair. Its user message carries one placeholder token per visual input, in ms-swift
style: `<image>` for each entry of `images`, `<video>` for each entry of `videos` (a volume's slices are video
frames), and `<slide>` for each entry of `slides` (a whole slide, by reference to its tile-feature file; ms-swift
has no slide slot: `corpus.swift_export` leaves such rows out). Grounding answers are boxes on the 0–1000 grid.

`label` is the structured answer used for scoring:
  closed_vqa        {"options": [...], "answer_index": i, "clinical_target": {"name", "kind", "option_values",
                                                                          "positive_threshold"?, "levels"?}?}
  grounding         {"box": [x1, y1, x2, y2(, z1, z2)], "boxes": [...], "target": str}
  open_vqa / report / grounded_caption   {"answer": str, "key_findings": [str, ...]}
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Iterable, Iterator

from breastgpt.artifacts import atomic_path, atomic_write_bytes, atomic_write_json  # noqa: F401 (re-exported)

STAGES: tuple[str, ...] = ("screening", "diagnosis", "treatment")
FAMILIES: tuple[str, ...] = ("closed_vqa", "open_vqa", "grounding", "grounded_caption", "report")
PROVENANCES: tuple[str, ...] = ("label", "report", "generated", "unknown")
RECORD_SPLITS: tuple[str, ...] = ("train", "val", "bench", "external", "unknown")
MODALITIES: tuple[str, ...] = ("mammography", "ultrasound", "mri", "ct", "pathology", "unknown")
KINDS: tuple[str, ...] = ("image", "volume", "slide", "unknown")
MEDIA_TOKENS: dict[str, str] = {"image": "<image>", "volume": "<video>", "slide": "<slide>"}
UNKNOWN = "unknown"


class RecordError(ValueError):
    """A record that breaks the corpus schema."""


@dataclass
class MediaRef:
    """One visual input of a record: a path relative to the corpus root and the sha256 of its bytes."""

    path: str
    sha256: str
    kind: str  # image | volume | slide

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise RecordError(f"media {self.path}: kind {self.kind!r} not in {KINDS}")


@dataclass
class Provenance:
    """Where the assistant answer came from; `generator` is filled only for model-written answers."""

    kind: str  # label | report | generated | unknown
    generator_model: str | None = None
    generator_prompt_sha256: str | None = None
    generator_endpoint: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in PROVENANCES:
            raise RecordError(f"answer provenance {self.kind!r} not in {PROVENANCES}")
        if self.kind == "generated" and not (self.generator_model and self.generator_prompt_sha256):
            raise RecordError("generated answers must name the generator model and the prompt hash")


@dataclass
class Record:
    id: str
    source: str
    patient_key: str
    study_key: str
    stage: str
    modality: str
    kind: str
    task_family: str
    template_id: str
    answer_provenance: Provenance
    split: str
    messages: list[dict[str, str]]
    label: dict[str, Any]
    media: list[MediaRef] = field(default_factory=list)
    objects: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        validate_record(self)

    @property
    def images(self) -> list[str]:
        return [m.path for m in self.media if m.kind == "image"]

    @property
    def videos(self) -> list[str]:
        return [m.path for m in self.media if m.kind == "volume"]

    @property
    def slides(self) -> list[str]:
        return [m.path for m in self.media if m.kind == "slide"]

    def message(self, role: str) -> str:
        """The content of the first message with `role` ('' when absent)."""
        return next((m["content"] for m in self.messages if m["role"] == role), "")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict in ms-swift layout (messages/images/videos/objects) plus our fields."""
        out: dict[str, Any] = {
            "id": self.id,
            "messages": [dict(m) for m in self.messages],
            "images": self.images,
            "videos": self.videos,
            "slides": self.slides,
        }
        if self.objects is not None:
            out["objects"] = self.objects
        out.update(
            source=self.source, patient_key=self.patient_key, study_key=self.study_key, stage=self.stage,
            modality=self.modality, kind=self.kind, task_family=self.task_family, template_id=self.template_id,
            # the field dicts directly: dataclasses.asdict's recursive deep copy was a fifth of a corpus build
            answer_provenance=dict(vars(self.answer_provenance)), split=self.split, label=self.label,
            media=[dict(vars(m)) for m in self.media],
        )
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Record:
        """Inverse of `to_dict`; unknown keys are errors so schema drift is caught at load time."""
        derived = {"images", "videos", "slides"}
        names = {f.name for f in fields(cls)}
        unknown = set(data) - names - derived
        if unknown:
            raise RecordError(f"record {data.get('id')!r}: unknown keys {sorted(unknown)}")
        kwargs = {k: v for k, v in data.items() if k in names}
        kwargs["answer_provenance"] = Provenance(**data["answer_provenance"])
        kwargs["media"] = [MediaRef(**m) for m in data.get("media", [])]
        return cls(**kwargs)


def record_id(source: str, sample_id: str, template_id: str) -> str:
    """Stable record id from what makes a record unique (no patient identifier enters it)."""
    digest = hashlib.sha256(f"{source}\x00{sample_id}\x00{template_id}".encode()).hexdigest()
    return f"bs-{digest[:20]}"


def _check_in(rec_id: str, name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise RecordError(f"record {rec_id}: {name} {value!r} not in {allowed}")


def validate_record(rec: Record) -> None:
    """Schema checks: vocabularies, message roles, one placeholder per media item, label shape per family."""
    _check_in(rec.id, "stage", rec.stage, STAGES + (UNKNOWN,))
    _check_in(rec.id, "task_family", rec.task_family, FAMILIES + (UNKNOWN,))
    _check_in(rec.id, "split", rec.split, RECORD_SPLITS)
    _check_in(rec.id, "modality", rec.modality, MODALITIES)
    _check_in(rec.id, "kind", rec.kind, KINDS)
    roles = [m.get("role") for m in rec.messages]
    if "user" not in roles or "assistant" not in roles or set(roles) - {"system", "user", "assistant"}:
        raise RecordError(f"record {rec.id}: messages need user and assistant roles only (+system), got {roles}")
    user_text = "".join(m["content"] for m in rec.messages if m["role"] == "user")
    for kind, token in MEDIA_TOKENS.items():
        want = sum(1 for m in rec.media if m.kind == kind)
        if user_text.count(token) != want:
            raise RecordError(f"record {rec.id}: {user_text.count(token)} {token} tokens for {want} {kind} inputs")
    _validate_label(rec)


def _validate_label(rec: Record) -> None:
    lab = rec.label
    if rec.task_family == "closed_vqa":
        opts, idx = lab.get("options"), lab.get("answer_index")
        if not isinstance(opts, list) or not 2 <= len(opts) <= 6 or not isinstance(idx, int) or not 0 <= idx < len(opts):
            raise RecordError(f"record {rec.id}: closed label needs 2-6 options and a valid answer_index, got {lab}")
    elif rec.task_family == "grounding":
        box = lab.get("box")
        if not isinstance(box, list) or len(box) not in (4, 6) or not all(0 <= v <= 1000 for v in box):
            raise RecordError(f"record {rec.id}: grounding label needs a box on the 0-1000 grid, got {lab}")
    elif rec.task_family in ("open_vqa", "report", "grounded_caption"):
        if not isinstance(lab.get("answer"), str) or not isinstance(lab.get("key_findings"), list):
            raise RecordError(f"record {rec.id}: {rec.task_family} label needs answer and key_findings, got {lab}")


# ---------------------------------------------------------------------------------------------------- writers


# one encoder each (json.dumps with options builds a new encoder per call, a tenth of writing a corpus)
_LINE = json.JSONEncoder(sort_keys=True, ensure_ascii=False, separators=(",", ":"))
_CELL = json.JSONEncoder(sort_keys=True, ensure_ascii=False)


def dumps_line(obj: dict[str, Any]) -> str:
    """One canonical JSONL line (sorted keys, no spaces): equal records give equal bytes."""
    return _LINE.encode(obj)


def write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    atomic_write_bytes(path, "".join(dumps_line(r) + "\n" for r in rows).encode())


def write_records_jsonl(path: Path, records: Iterable[Record]) -> None:
    write_jsonl(path, (r.to_dict() for r in records))


def iter_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError as exc:
                raise RecordError(f"{path}:{lineno}: not valid JSON ({exc.msg}); fix or remove the line") from exc


def read_records_jsonl(path: Path) -> list[Record]:
    out = []
    for row in iter_jsonl(path):
        try:
            out.append(Record.from_dict(row))
        except (RecordError, TypeError, KeyError) as exc:
            raise RecordError(f"{path}: record {row.get('id')!r} is invalid: {exc}") from exc
    return out


_PARQUET_JSON_COLUMNS = ("messages", "images", "videos", "slides", "objects", "answer_provenance", "label", "media")


def _cell(value: Any) -> str:
    return "[]" if isinstance(value, list) and not value else _CELL.encode(value)


def write_records_parquet(path: Path, records: Iterable[Record | dict[str, Any]]) -> None:
    """Flat Parquet: scalar fields as columns, nested ones as canonical JSON strings (stable across readers).
    `records`: Records or their `to_dict` rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [r.to_dict() if isinstance(r, Record) else r for r in records]
    columns: dict[str, list[Any]] = {}
    names = ["id", "source", "patient_key", "study_key", "stage", "modality", "kind", "task_family",
             "template_id", "split", *_PARQUET_JSON_COLUMNS]
    for name in names:
        if name in _PARQUET_JSON_COLUMNS:
            columns[name] = [_cell(r.get(name)) for r in rows]
        else:
            columns[name] = [r[name] for r in rows]
    table = pa.table({n: pa.array(columns[n], type=pa.string()) for n in names})
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")


def read_records_parquet(path: Path) -> list[Record]:
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    out = []
    for row in table.to_pylist():
        data = {k: (json.loads(v) if k in _PARQUET_JSON_COLUMNS else v) for k, v in row.items()}
        if data.get("objects") is None:
            data.pop("objects", None)
        out.append(Record.from_dict(data))
    return out


# ---------------------------------------------------------------------------------------------------- interop


def _media_path(path: str, media_root: str | None) -> str:
    return str(Path(media_root) / path) if media_root else path


def to_llava(rec: Record, media_root: str | None = None) -> dict[str, Any]:
    """LLaVA conversation item; the stage system prompt travels in an extra `system` key."""
    turns = []
    for m in rec.messages:
        if m["role"] == "user":
            turns.append({"from": "human", "value": m["content"]})
        elif m["role"] == "assistant":
            turns.append({"from": "gpt", "value": m["content"]})
    item: dict[str, Any] = {"id": rec.id, "conversations": turns, "system": rec.message("system")}
    images = [_media_path(p, media_root) for p in rec.images]
    if images:
        item["image"] = images[0] if len(images) == 1 else images
    videos = [_media_path(p, media_root) for p in rec.videos]
    if videos:
        item["video"] = videos[0] if len(videos) == 1 else videos
    if rec.slides:
        item["slide"] = [_media_path(p, media_root) for p in rec.slides]
    return item


def export_llava_json(records: Iterable[Record], path: Path, media_root: str | None = None) -> int:
    items = [to_llava(r, media_root) for r in records]
    atomic_write_bytes(path, (json.dumps(items, ensure_ascii=False, indent=1) + "\n").encode())
    return len(items)
