"""Case folders from a source's samples: one folder per patient with studies in several stages.

`cases_from_source` reads a dataset through its corpus adapter (an institutional manifest with `stage` and
`date` columns, or the synthetic linked cohort), groups the samples by patient and writes one case folder per
patient that has at least `min_stages` stages. Folders are named by the keyed patient pseudonym; media are copied
under neutral names (`studies/<n>/<kind><i><suffix>`), since dataset file names can carry identifiers.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Callable

from breastgpt.artifacts import atomic_path
from breastgpt.case.schema import Case, CaseMedia, CaseStudy, write_case
from breastgpt.corpus.pathway import DEFAULT_STAGE


def _suffix(path: Path) -> str:
    name = path.name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else path.suffix.lower()


def _copy(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    if source.is_dir():
        shutil.copytree(source, target, dirs_exist_ok=True)
    else:
        with atomic_path(target) as tmp:
            shutil.copyfile(source, tmp)


def _write_patient(folder: Path, pseudonym: str, samples: list[Any]) -> Case:
    studies = []
    ordered = sorted(samples, key=lambda s: (str(s.meta.get("date", "")), s.sample_id))
    for n, sample in enumerate(ordered, 1):
        kind = sample.kind
        media = []
        for i, path in enumerate(sample.media, 1):
            rel = f"studies/{n}/{kind}{i}{_suffix(Path(path))}"
            _copy(Path(path), folder / rel)
            media.append(CaseMedia(kind, rel))
        studies.append(CaseStudy(sample.meta.get("stage") or DEFAULT_STAGE[sample.modality], sample.modality,
                                 tuple(media), str(sample.meta.get("date", "")), prior_report=sample.report or ""))
    case = Case(folder, pseudonym, tuple(studies))
    write_case(case)
    return case


def cases_from_source(source: str, root: Path, out: Path, patient_key: Callable[[str, str], str],
                      min_stages: int = 3, progress: Callable[[], None] | None = None) -> list[Path]:
    """Write `out/<pseudonym>/case.json` (+ media) for each patient with `min_stages` stages; returns the folders."""
    from breastgpt.corpus.sources.base import SourceProblem, get_adapter

    by_patient: dict[str, list[Any]] = {}
    for sample in get_adapter(source).discover(Path(root)):
        if not isinstance(sample, SourceProblem):
            by_patient.setdefault(sample.patient_id, []).append(sample)
    folders = []
    for patient_id, samples in sorted(by_patient.items(), key=lambda p: patient_key(source, p[0])):
        stages = {s.meta.get("stage") or DEFAULT_STAGE[s.modality] for s in samples}
        if len(stages) < min_stages:
            continue
        pseudonym = patient_key(source, patient_id)
        folders.append(_write_patient(Path(out) / pseudonym, pseudonym, samples).folder)
        if progress:
            progress()
    return folders


__all__ = ["cases_from_source"]
