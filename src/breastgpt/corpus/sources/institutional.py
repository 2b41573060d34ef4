"""Institutional cohorts from a CSV manifest (`manifest.csv` at the root): one row per sample with columns
patient, study, modality, kind, files (`;`-separated, relative to the manifest), and optionally sample, masks
(`;`-separated), report (text), report_file, split, stage (screening / diagnosis / treatment: the study's place
in the care pathway) and date (ISO, orders a patient's studies), and any label columns named after `labels.py` fields
(ordinal/int fields as integers, binary as yes/no/1/0, multilabel as `a;b` names set True).

`patient` and `study` may be hospital identifiers: they are never used in `sample_id` — without a `sample`
column the id is a hash of study + files. The two private breast-MRI cohorts are instances (`mri_cohort_a`,
`mri_cohort_b`); any other cohort registers the same way."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

from breastgpt.corpus.labels import FIELDS
from breastgpt.corpus.records import STAGES
from breastgpt.corpus.sources.base import (SourceProblem, SourceSample, checked_sample, hashed_id, register,
                                           safe_id)
from breastgpt.corpus.sources.tables import TableError, cell, parse_bool, read_table

STRUCTURE = ("patient", "study", "modality", "kind", "files", "sample", "masks", "report", "report_file", "split",
             "stage", "date")


def parse_label(name: str, text: str) -> Any:
    field = FIELDS[name]
    if field.kind in ("ordinal", "int") and field.values and isinstance(field.values[0], int):
        return int(float(text))
    if field.kind == "binary":
        return parse_bool(text)
    if field.kind == "float":
        return float(text)
    if field.kind == "multilabel":
        return {item.strip(): True for item in text.split(";") if item.strip()}
    if field.kind == "boxes":
        raise ValueError("boxes cannot be given in a manifest column; supply masks instead")
    return text


class InstitutionalAdapter:
    name = "institutional"
    modality = "mri"
    manifest_name = "manifest.csv"

    def discover(self, root: Path) -> Iterator[SourceSample | SourceProblem]:
        manifest = root / self.manifest_name
        try:
            table = read_table(manifest, required=("patient", "study", "modality", "kind", "files"))
        except TableError as exc:
            yield SourceProblem(self.name, str(manifest), str(exc))
            return
        unknown = [c for c in table.columns if c not in STRUCTURE and c not in FIELDS]
        if unknown:
            yield SourceProblem(self.name, str(manifest), f"unknown columns {unknown}: use labels.py field names")
            return
        for i, row in table.iterrows():
            yield self._sample(root, f"{manifest.name}:{i + 2}", row, table.columns)

    def _sample(self, root: Path, where: str, row, columns) -> SourceSample | SourceProblem:
        files = [root / f.strip() for f in row["files"].split(";") if f.strip()]
        masks = [root / f.strip() for f in cell(row, "masks").split(";") if f.strip()]
        missing = [str(p) for p in files if not p.exists()]
        if not files or missing:
            return SourceProblem(self.name, where, f"missing files: {missing or 'none listed'}")
        lacking = [p for p in masks if not p.exists()]  # optional: the sample keeps its labels, loses grounding
        masks = [] if lacking else masks
        try:
            labels = {c: parse_label(c, cell(row, c)) for c in columns
                      if c in FIELDS and c not in STRUCTURE and cell(row, c)}
        except (ValueError, KeyError) as exc:
            return SourceProblem(self.name, where, f"{type(exc).__name__}: {exc}")
        report = cell(row, "report") or None
        if cell(row, "report_file"):
            report_path = root / cell(row, "report_file")
            if not report_path.is_file():
                return SourceProblem(self.name, where, f"report file {report_path} not found")
            report = report_path.read_text(encoding="utf-8", errors="replace").strip()
        stage = cell(row, "stage")
        if stage and stage not in STAGES:
            return SourceProblem(self.name, where, f"stage {stage!r} is not one of {STAGES}")
        pathway = {k: cell(row, k) for k in ("stage", "date") if cell(row, k)}
        sample_id = safe_id(cell(row, "sample")) if cell(row, "sample") else \
            hashed_id(self.name, row["study"] + "|" + row["files"])
        return checked_sample(self.name, where, sample_id=sample_id, patient_id=row["patient"],
                              study_id=row["study"], modality=row["modality"], kind=row["kind"], media=files,
                              masks=masks, labels=labels, report=report, dataset_split=cell(row, "split") or None,
                              missing=["mask"] if lacking else [],
                              meta={"n_files": len(files), **pathway})


register(InstitutionalAdapter)


@register
class MRICohortAAdapter(InstitutionalAdapter):
    name = "mri_cohort_a"


@register
class MRICohortBAdapter(InstitutionalAdapter):
    name = "mri_cohort_b"



@register
class CTCohortAdapter(InstitutionalAdapter):
    """An institutional chest-CT cohort with segmented findings (the synthetic demo cohort uses it)."""

    name = "ct_cohort"


@register
class PathwayCohortAdapter(InstitutionalAdapter):
    """Patients followed along the care pathway: one row per study with its `stage` and `date` (the synthetic
    linked cohort uses it; `breastgpt.corpus.pathway` links the studies)."""

    name = "pathway_cohort"
    modality = "mammography"
