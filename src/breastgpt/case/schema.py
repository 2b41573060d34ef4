"""The case folder: `case.json` naming one patient's studies, each with its stage, date, modality and media.

    {"format": "breastgpt-case", "version": 1, "patient": "<pseudonym>",
     "studies": [{"stage": "screening", "modality": "mammography", "date": "2024-01-08",
                  "media": [{"kind": "image", "path": "studies/1/image1.png"}],
                  "clinical_text": "...", "prior_report": "..."}]}

`kind` is `image` (DICOM or raster), `volume` (NIfTI / NRRD / DICOM series folder), `slide` (a whole-slide file,
tiled and encoded at run time) or `slide_features` (a tile-feature file). Paths are relative to the folder and
must stay inside it. `date` (ISO) and the two texts are optional. The patient field holds a pseudonym; it is
never shown in a report. Unknown keys are errors.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from breastgpt.artifacts import atomic_write_json
from breastgpt.corpus.records import STAGES
from breastgpt.corpus.sources.base import MODALITIES

FORMAT, VERSION = "breastgpt-case", 1
MEDIA_KINDS = ("image", "volume", "slide", "slide_features")
CASE_FILE = "case.json"


class CaseError(ValueError):
    """A case folder that cannot be used: the message names the file, what is wrong and what to do."""


@dataclass(frozen=True)
class CaseMedia:
    kind: str
    path: str  # relative to the case folder


@dataclass(frozen=True)
class CaseStudy:
    stage: str
    modality: str
    media: tuple[CaseMedia, ...]
    date: str = ""
    clinical_text: str = ""
    prior_report: str = ""


@dataclass(frozen=True)
class Case:
    folder: Path
    patient: str
    studies: tuple[CaseStudy, ...] = field(default_factory=tuple)

    def ordered(self) -> list[CaseStudy]:
        """Studies in pathway order: stage, then date (undated last within a stage), then as listed."""
        indexed = list(enumerate(self.studies))
        indexed.sort(key=lambda p: (STAGES.index(p[1].stage), p[1].date or "9999", p[0]))
        return [s for _, s in indexed]

    def day_of(self, study: CaseStudy) -> int | None:
        """Days since the case's first dated study (dates themselves never reach a report)."""
        dates = [date.fromisoformat(s.date) for s in self.studies if s.date]
        if not study.date or not dates:
            return None
        return (date.fromisoformat(study.date) - min(dates)).days


def _fail(path: Path, what: str, fix: str) -> CaseError:
    return CaseError(f"{path}: {what}; {fix}")


def _check_keys(obj: Any, allowed: set[str], required: set[str], path: Path, where: str) -> None:
    if not isinstance(obj, dict):
        raise _fail(path, f"{where} is a {type(obj).__name__}, not an object", "see docs/pathway.md for the schema")
    unknown, missing = set(obj) - allowed, required - set(obj)
    if unknown or missing:
        raise _fail(path, f"{where}: unknown keys {sorted(unknown)}, missing keys {sorted(missing)}",
                    f"allowed keys are {sorted(allowed)}")


def _media(obj: Any, folder: Path, path: Path, where: str) -> CaseMedia:
    _check_keys(obj, {"kind", "path"}, {"kind", "path"}, path, where)
    if obj["kind"] not in MEDIA_KINDS:
        raise _fail(path, f"{where}: kind {obj['kind']!r}", f"use one of {MEDIA_KINDS}")
    target = (folder / obj["path"]).resolve()
    if not target.is_relative_to(folder.resolve()):
        raise _fail(path, f"{where}: the path leaves the case folder", "copy the file into the case folder")
    if not target.exists():
        raise _fail(path, f"{where}: file {obj['path']!r} does not exist", "fix the path or add the file")
    return CaseMedia(obj["kind"], obj["path"])


def _study(obj: Any, folder: Path, path: Path, where: str) -> CaseStudy:
    _check_keys(obj, {"stage", "modality", "date", "media", "clinical_text", "prior_report"},
                {"stage", "modality", "media"}, path, where)
    if obj["stage"] not in STAGES or obj["modality"] not in MODALITIES:
        raise _fail(path, f"{where}: stage {obj['stage']!r} / modality {obj['modality']!r}",
                    f"stages are {STAGES}, modalities {MODALITIES}")
    if obj.get("date"):
        try:
            date.fromisoformat(obj["date"])
        except (TypeError, ValueError):
            raise _fail(path, f"{where}: date {obj['date']!r} is not an ISO date", "write it as YYYY-MM-DD") from None
    if not isinstance(obj["media"], list) or not obj["media"]:
        raise _fail(path, f"{where}: media must be a non-empty list", "name at least one file of the study")
    media = tuple(_media(m, folder, path, f"{where}.media[{i}]") for i, m in enumerate(obj["media"]))
    return CaseStudy(obj["stage"], obj["modality"], media, obj.get("date") or "", obj.get("clinical_text") or "",
                     obj.get("prior_report") or "")


def load_case(folder: str | Path) -> Case:
    """Read and check `folder/case.json` (every media file must exist inside the folder)."""
    folder = Path(folder)
    path = folder / CASE_FILE
    if not path.is_file():
        raise _fail(path, "not found", "a case folder holds case.json (see docs/pathway.md)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise _fail(path, f"not valid JSON ({error})", "fix the file") from None
    _check_keys(data, {"format", "version", "patient", "studies"}, {"format", "version", "studies"}, path, "case")
    if data["format"] != FORMAT or data["version"] != VERSION:
        raise _fail(path, f"format {data['format']!r} version {data['version']!r}", f"expected {FORMAT!r} {VERSION}")
    if not isinstance(data["studies"], list) or not data["studies"]:
        raise _fail(path, "no studies", "list the patient's studies")
    studies = tuple(_study(s, folder, path, f"studies[{i}]") for i, s in enumerate(data["studies"]))
    return Case(folder, str(data.get("patient", "")), studies)


def case_dict(case: Case) -> dict[str, Any]:
    studies = []
    for s in case.studies:
        row = {k: v for k, v in asdict(s).items() if v not in ("", ())}
        row["media"] = [asdict(m) for m in s.media]
        studies.append(row)
    return {"format": FORMAT, "version": VERSION, "patient": case.patient, "studies": studies}


def write_case(case: Case) -> Path:
    """Write `case.folder/case.json` atomically (the media must already be in the folder)."""
    return atomic_write_json(Path(case.folder) / CASE_FILE, case_dict(case), sort_keys=False)


__all__ = ["CASE_FILE", "Case", "CaseError", "CaseMedia", "CaseStudy", "MEDIA_KINDS", "STAGES", "case_dict",
           "load_case", "write_case"]
