"""One build item (one sample): normalise its media, render its records, check them for PHI, save its state.

This module is what workers import (local processes or dask workers): it holds only picklable task data and
module-level functions. The state file is written atomically last, so a killed worker leaves either a complete
state or none; media written before the kill are content-addressed and simply rewritten identically.

Workers never see the pseudonymisation secret: the keyed names an item needs (its state key, the quarantine key
of each of its input files) are computed by the build and carried in the task. A state file holds no raw
identifier: it is named by the keyed state key, and a quarantined item's row is scrubbed (`corpus.quarantine`).
"""

from __future__ import annotations

import hashlib
import json
import re
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from breastgpt.corpus.quarantine import input_reference, quarantine_row
from breastgpt.preprocessing import Preprocessing
from breastgpt.artifacts import atomic_write_bytes
from breastgpt.corpus.records import MediaRef, Record
from breastgpt.corpus.sources.media import resolve_boxes
from breastgpt.corpus.templates import SampleView, load_templates, render_sample
from breastgpt.io.errors import MedicalFileError

STATE_DIR = ".state"
STATE_VERSION = 5  # a state written under another version is redone
_STATE_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
_BOX_LITERAL = re.compile(r"\[\d+(?:,\d+){3,5}\]")


@dataclass
class ItemTask:
    sample: Any  # SourceSample (carries the raw patient id: in memory only, never written)
    patient_key: str
    study_key: str
    split: str
    fingerprint: str
    out: Path
    normaliser: Callable[..., Any]
    state_key: str  # keyed name of the item's state file (Pseudonymizer.input_key of its sample id)
    root: Path  # the source folder: input references are relative to it
    input_keys: dict[str, str]  # input reference of each media/mask file → its quarantine key (items that run)
    seed: int = 0
    templates_per_sample: int | None = None
    limits: Preprocessing = field(default_factory=Preprocessing)  # the corpus's preprocessing settings
    answer_style: str = "letter"
    media_position: str = "before"
    feature_key: str | None = None  # slides: keyed feature id (`slide_feature_id`), names features/<key>.h5


def state_reference(sample_id: str) -> str:
    """The reference whose input key names an item's state (a sample id is not a file of the source)."""
    return f"sample:{sample_id}"


def slide_feature_id(pseudonymizer: Any, source: str, sample_id: str) -> str:
    """The keyed name of a slide's feature file (`features/<id>.h5`): `Pseudonymizer.input_key` of the slide's
    sample, so no slide barcode or case id reaches records, state or feature folders; `breastgpt slides extract
    --corpus-sources` computes the same name under the same secret."""
    return pseudonymizer.input_key(source, f"slide:{sample_id}")


def item_state_path(out: Path, state_key: str) -> Path:
    return Path(out) / STATE_DIR / "items" / state_key[1:3] / f"{state_key}.json"


def read_item_state(out: Path, key: str, *, records: bool = True) -> dict[str, Any] | None:
    """An item's state: line 1 everything but the records, line 2 the records (read only with `records`, so
    checking whether an item is current does not parse them). None when absent, unreadable or of another
    version: the item is simply redone."""
    try:
        with open(item_state_path(out, key), encoding="utf-8") as handle:
            state = json.loads(handle.readline())
            if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
                return None
            if records and state.get("status") == "done":
                state["records"] = json.loads(handle.readline())
    except (OSError, ValueError):  # json.JSONDecodeError and UnicodeDecodeError are ValueErrors
        return None
    return state


def write_item_state(out: Path, state: dict[str, Any]) -> None:
    # compact JSON on two lines (see `read_item_state`). Not fsynced: a state is a cache, and one that a power
    # loss left unreadable is redone.
    head = _STATE_JSON.encode({k: v for k, v in state.items() if k != "records"})
    body = "\n" + _STATE_JSON.encode(state["records"]) if "records" in state else ""
    atomic_write_bytes(item_state_path(out, state["key"]), (head + body + "\n").encode(), durable=False)


def state_is_current(state: dict[str, Any] | None, task: ItemTask, *, retry_quarantined: bool = False) -> bool:
    """Reusable when the fingerprint matches and every media file it produced is still there."""
    if state is None or state.get("fingerprint") != task.fingerprint:
        return False
    if state["status"] == "done":
        media = state["media"]
        return all((Path(task.out) / p).is_file() for p in [*media["paths"], *media.get("mask_paths", [])])
    return state["status"] == "quarantined" and not retry_quarantined


def default_normaliser() -> Callable[..., Any]:
    from breastgpt.corpus.normalise import normalise_media

    return normalise_media


# ---------------------------------------------------------------------------------------------------- work


def process_item(task: ItemTask) -> tuple[str, str, int]:
    """Run one item end to end and persist its state; returns (state key, status, number of records)."""
    try:
        state = _render_item(task)
    except MedicalFileError as exc:
        state = _quarantine_state(task, exc.kind, exc.problem, exc.path, exc.hint)
    except Exception as exc:  # an adapter/normaliser bug on one input must not stop a 600k-item build
        where = traceback.extract_tb(exc.__traceback__)[-1]
        state = _quarantine_state(task, f"internal_error:{type(exc).__name__}", str(exc), "",
                                  f"raised at {Path(where.filename).name}:{where.lineno}; please report it")
    write_item_state(task.out, state)
    return task.state_key, state["status"], len(state.get("records", []))


def input_keys(pseudonymizer: Any, sample: Any, root: Path) -> dict[str, str]:
    """Input reference → quarantine key for every media and mask file of `sample` (computed by the build)."""
    references = [input_reference(root, path) for path in [*sample.media, *sample.masks,
                                                            *(m.path for m in sample.box_masks)]]
    return {reference: pseudonymizer.input_key(sample.source, reference) for reference in references}


def _quarantine_state(task: ItemTask, error: str, problem: str, path: str, hint: str = "") -> dict[str, Any]:
    """The failed file when the error names one of the item's inputs, else the item's first input."""
    sample = task.sample
    reference = input_reference(task.root, path) if path else ""
    if reference not in task.input_keys:
        reference = next(iter(task.input_keys), state_reference(sample.sample_id))
    key = task.input_keys.get(reference, task.state_key)
    own = [sample.sample_id, sample.patient_id, sample.study_id, path, str(task.root),
           *(str(p) for p in [*sample.media, *sample.masks, *(m.path for m in sample.box_masks)])]
    return {"version": STATE_VERSION, "key": task.state_key, "fingerprint": task.fingerprint,
            "status": "quarantined",
            "problem": quarantine_row(sample.source, key, reference, error, problem, hint, known=own)}


def _render_item(task: ItemTask) -> dict[str, Any]:

    sample = resolve_boxes(task.sample)
    media = task.normaliser(sample, Path(task.out), limits=task.limits)
    if media.kind == "slide":
        media.feature_path = f"features/{task.feature_key}.h5"
    view = SampleView(
        source=sample.source, sample_id=sample.sample_id, patient_key=task.patient_key, study_key=task.study_key,
        modality=sample.modality, kind=media.kind, split=task.split, media=media_refs(media),
        labels=sample.labels, report=sample.report, boxes=media.boxes_norm1000,
    )
    records = subsample(render_sample(view, load_templates(), task.answer_style, task.media_position, task.limits), task.templates_per_sample, task.seed)
    findings = item_phi_findings(sample, records)
    if findings:
        return _quarantine_state(task, "phi_leak", "; ".join(findings[:5]), "",
                                 "identifying values of this sample appear in its rendered records")
    return {"version": STATE_VERSION, "key": task.state_key, "fingerprint": task.fingerprint, "status": "done",
            "media": asdict(media), "missing": sample.missing, "records": [r.to_dict() for r in records]}


def media_refs(media: Any) -> list[MediaRef]:
    """A record's media: the normalised files, or for a slide its tile-feature file (relative to the features
    root, written by `breastgpt slides`) with the slide's own sha256, so leakage checks see the slide."""
    if media.kind == "slide" and media.feature_path:
        return [MediaRef(media.feature_path, media.sha256s[0], "slide")]
    return [MediaRef(p, h, media.kind) for p, h in zip(media.paths, media.sha256s)]


def subsample(records: list[Record], k: int | None, seed: int) -> list[Record]:
    """Keep k records per sample chosen by a seeded hash of the record id, in template order."""
    if k is None or len(records) <= k:
        return records
    ranked = sorted(records, key=lambda r: hashlib.sha256(f"{seed}|{r.id}".encode()).hexdigest())
    keep = {r.id for r in ranked[:k]}
    return [r for r in records if r.id in keep]


# ---------------------------------------------------------------------------------------------------- PHI


def record_texts(rec: Record | dict[str, Any]) -> list[tuple[str, str]]:
    """(where, text) pairs of a record's text that comes from the sample rather than from packaged data.

    Questions, options and label-derived answers are built only from template data and validated vocabulary
    values, so they cannot carry a patient's identifiers (and scanning them only produces false positives when
    a name component is a common word, e.g. "Name the finding"). Report and model-written answers can: those
    are scanned, with box literals removed (short numeric ids would match coordinates by chance)."""
    kind = rec.answer_provenance.kind if isinstance(rec, Record) else rec["answer_provenance"]["kind"]
    if kind == "label":
        return []
    data = rec.to_dict() if isinstance(rec, Record) else rec
    return [(f"{data['id']}.messages[{i}]", _BOX_LITERAL.sub("", m["content"]))
            for i, m in enumerate(data["messages"]) if m["role"] == "assistant"]


def scan_texts(scanner: Any, pairs: list[tuple[str, str]]) -> list[str]:
    """Findings over (where, text) pairs, scanning each distinct text once (templated text repeats a lot)."""
    first_where: dict[str, str] = {}
    for where, text in pairs:
        first_where.setdefault(text, where)
    return [str(f) for text, where in first_where.items() for f in scanner.check_text(text, where)]


def phi_scanner_class() -> type | None:
    try:
        from breastgpt.deid.scanner import PhiScanner
    except ImportError:
        return None
    return PhiScanner


# Digit-only dataset ids shorter than this are row numbers (BCNB numbers its patients 1-1058), not identifiers
# of a person; searched for in free text they match every size, count and follow-up number ("measuring 105 mm",
# "study 120 of the programme") and would stop a whole build. Hospital record numbers are longer and still scanned.
MIN_DIGIT_ID_LENGTH = 5


def add_patient_id(scanner: Any, patient_id: str) -> None:
    """Add a dataset's raw patient id to `scanner` unless it is a short row number (`MIN_DIGIT_ID_LENGTH`)."""
    text = str(patient_id).strip()
    if text.isdigit() and len(text) < MIN_DIGIT_ID_LENGTH:
        return
    scanner.add_value("patient_id", text)


def item_phi_findings(sample: Any, records: list[Record]) -> list[str]:
    """This sample's own identifiers (raw patient id, DICOM header PHI of its inputs) in its own records."""
    pairs = [pair for rec in records for pair in record_texts(rec)]
    scanner_cls = phi_scanner_class()
    if scanner_cls is None or not pairs:
        return []  # label-derived texts only: nothing of this sample's own can be in them (`record_texts`)
    scanner = scanner_cls()
    add_patient_id(scanner, sample.patient_id)
    for path in sample.media:
        if _looks_like_dicom(Path(path)):
            try:
                scanner.add_file(path)
            except MedicalFileError:
                pass  # the normaliser already read it; a header the scanner cannot parse adds no values
    return scan_texts(scanner, pairs)


def _looks_like_dicom(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            return fh.read(132)[128:132] == b"DICM"
    except OSError:
        return False
