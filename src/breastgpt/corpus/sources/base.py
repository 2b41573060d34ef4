"""The contract between source adapters (one module per dataset) and the corpus build.

An adapter reads one dataset exactly as users download it and yields `SourceSample`s, one per image / volume /
slide, with labels already mapped onto the shared vocabulary (`breastgpt.corpus.labels`). A row it cannot use
becomes a `SourceProblem` (yielded, never raised) so the build quarantines it and carries on.

Identifiers: `sample_id` is built from dataset image/file ids only — never patient names, DICOM PatientName or
PatientID. `patient_id` carries the dataset's raw patient id; it is never written out (the build turns it into a
keyed pseudonym with `breastgpt.deid.Pseudonymizer`).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Literal, Protocol, runtime_checkable

from breastgpt.corpus.labels import LabelError, validate_labels

Modality = Literal["mammography", "ultrasound", "mri", "ct", "pathology"]
Kind = Literal["image", "volume", "slide"]
Split = Literal["train", "test", "val"]

MODALITIES: tuple[str, ...] = ("mammography", "ultrasound", "mri", "ct", "pathology")
KINDS: tuple[str, ...] = ("image", "volume", "slide")
SPLITS: tuple[str, ...] = ("train", "test", "val")
_SAFE_ID = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class BoxMask:
    """An ROI mask whose foreground box becomes one entry of the sample's `labels["boxes"]`."""

    path: Path
    label: str


@dataclass
class SourceSample:
    """One unit of media (an image, a volume or a slide, possibly several files of one study) with its labels."""

    source: str
    sample_id: str  # unique within the source, from dataset file names / image ids, never a person's identifier
    patient_id: str  # raw dataset patient id: never written out; the build pseudonymises it
    study_id: str
    modality: str
    kind: str
    media: list[Path]
    labels: dict[str, Any] = field(default_factory=dict)  # validated vocabulary; boxes in source pixel coordinates
    masks: list[Path] = field(default_factory=list)
    report: str | None = None
    dataset_split: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)  # non-identifying extras (view, vendor, source columns)
    # optional annotations this download lacks for the sample (e.g. "roi_mask"): its labels are kept, only the
    # tasks that need the annotation (grounding) are not made; the build counts them per source
    missing: list[str] = field(default_factory=list)
    # ROI masks to turn into `labels["boxes"]`, decoded by the build's item workers (`sources.media.resolve_boxes`)
    # rather than here: decoding them during discovery ran on one core and on every re-run. `box_policy` "each":
    # an empty mask adds no box; "all": an empty mask drops every box of the sample (a partial set would make
    # "locate every lesion" answers wrong). With `box_required`, a sample left without boxes is missing its
    # "roi_mask"; without it, it gets `boxes: []` (e.g. a normal image whose mask is empty).
    box_masks: list[BoxMask] = field(default_factory=list)
    box_policy: Literal["each", "all"] = "each"
    box_required: bool = False

    def __post_init__(self) -> None:
        if self.modality not in MODALITIES:
            raise ValueError(f"{self.source}: modality {self.modality!r} not in {MODALITIES}")
        if self.kind not in KINDS:
            raise ValueError(f"{self.source}: kind {self.kind!r} not in {KINDS}")
        if self.dataset_split is not None and self.dataset_split not in SPLITS:
            raise ValueError(f"{self.source}: split {self.dataset_split!r} not in {SPLITS}")
        if not self.sample_id:
            raise ValueError(f"{self.source}: empty sample_id")
        if self.box_policy not in ("each", "all"):
            raise ValueError(f"{self.source}: box_policy {self.box_policy!r} not in ('each', 'all')")
        validate_labels(self.labels)


@dataclass(frozen=True)
class SourceProblem:
    """A row or file the adapter could not turn into a sample: the build quarantines it and continues."""

    source: str
    path: str
    reason: str

    def as_record(self) -> dict[str, str]:
        return {"source": self.source, "path": self.path, "reason": self.reason}


@runtime_checkable
class SourceAdapter(Protocol):
    name: str
    modality: str

    def discover(self, root: Path) -> Iterator[SourceSample | SourceProblem]:
        """Yield one `SourceSample` per usable item under `root` and a `SourceProblem` per unusable one."""
        ...


ADAPTERS: dict[str, type] = {}


def register(cls: type) -> type:
    """Class decorator: add an adapter class to `ADAPTERS` under its `name`."""
    name = getattr(cls, "name", None)
    if not name or name in ADAPTERS:
        raise ValueError(f"adapter {cls.__name__}: missing or duplicate name {name!r}")
    ADAPTERS[name] = cls
    return cls


def get_adapter(name: str) -> SourceAdapter:
    """An instance of the adapter registered as `name` (importing all adapter modules first)."""
    import breastgpt.corpus.sources  # noqa: F401  (registers every adapter module)

    cls = ADAPTERS.get(name)
    if cls is None:
        raise KeyError(f"unknown source {name!r}; known sources: {sorted(ADAPTERS)}")
    return cls()


def safe_id(*parts: object) -> str:
    """Join id parts into a file-system-safe sample id (`a__b__c`), keeping letters, digits, '.', '_' and '-'."""
    cleaned = [_SAFE_ID.sub("-", str(p)).strip("-") for p in parts if str(p) != ""]
    return "__".join(cleaned)


def hashed_id(source: str, value: str, length: int = 16) -> str:
    """A stable non-reversible stand-in for a dataset id that may itself be identifying (e.g. accession numbers)."""
    digest = hashlib.sha256(f"{source}\x00{value}".encode()).hexdigest()
    return digest[:length]


def checked_sample(source: str, where: str | Path, **fields: Any) -> SourceSample | SourceProblem:
    """Build a `SourceSample`, turning a vocabulary or contract violation into a `SourceProblem` for that row."""
    try:
        return SourceSample(source=source, **fields)
    except (LabelError, ValueError) as exc:
        return SourceProblem(source, str(where), str(exc))


@dataclass
class NormalisedMedia:
    """What `normalise_media` wrote for one sample: content-addressed files and boxes on the 0–1000 grid."""

    kind: str
    paths: list[str]  # relative to the corpus root (the `out_dir` given to normalise_media)
    sha256s: list[str]
    width: int
    height: int
    depth: int | None = None
    boxes_norm1000: list[dict[str, Any]] = field(default_factory=list)  # {'box': [x1,y1,x2,y2(,z1,z2)], 'label'}
    mask_paths: list[str] = field(default_factory=list)
    feature_path: str | None = None  # slides: expected feature file (written by breastgpt.pathology)
    meta: dict[str, Any] = field(default_factory=dict)
