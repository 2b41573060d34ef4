"""DMID (Digital mammography dataset for breast cancer diagnosis research): `Metadata.xlsx` or `Metadata.csv`
with one row per image in MIAS style (image name, background tissue F/G/D, abnormality class
CALC/CIRC/SPIC/MISC/ARCH/ASYM/NORM, severity B/M, x, y, radius — top-left origin), images as TIFF
(`TIFF Images/`) or DICOM (`DICOM Images/`), ROI masks (`ROI Masks/`, file names sharing the image stem) and
free-text radiology reports (`Reports/<image>.txt`). Column names are matched loosely (case, spaces)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterator

from breastgpt.corpus.sources.base import BoxMask, SourceProblem, SourceSample, checked_sample, register, safe_id
from breastgpt.corpus.sources.mias import CLASS, TISSUE
from breastgpt.corpus.sources.tables import TableError, find_file, read_table

IMAGE_DIRS = ("TIFF Images", "DICOM Images", "Images")
DENSITY_WORDS = {"A": re.compile(r"\bfatty\b|\bACR[- ]?A\b", re.I), "B": re.compile(r"scattered|ACR[- ]?B\b", re.I),
                 "C": re.compile(r"heterogeneously|ACR[- ]?C\b", re.I), "D": re.compile(r"extremely|ACR[- ]?D\b", re.I)}


def _col(row, *names) -> str:
    wanted = {re.sub(r"[^a-z]", "", n.lower()) for n in names}
    for key, value in row.items():
        if re.sub(r"[^a-z]", "", str(key).lower()) in wanted:
            return str(value).strip()
    return ""


@register
class DMIDAdapter:
    name = "dmid"
    modality = "mammography"

    def discover(self, root: Path) -> Iterator[SourceSample | SourceProblem]:
        table_path = find_file(root, "Metadata.xlsx", "Metadata.csv", "metadata.csv")
        try:
            table = read_table(table_path or root / "Metadata.csv")
        except TableError as exc:
            yield SourceProblem(self.name, str(root), str(exc))
            return
        images = {p.stem: p for d in IMAGE_DIRS for p in (root / d).glob("*") if p.is_file() and not p.name.startswith(".")}
        masks = {}
        for p in sorted((root / "ROI Masks").glob("*")):
            masks.setdefault(re.sub(r"(_mask|_roi)(_\d+)?$", "", p.stem, flags=re.I), []).append(p)
        for i, row in table.iterrows():
            yield self._sample(root, i, row, images, masks)

    def _sample(self, root, i, row, images, masks) -> SourceSample | SourceProblem:
        where = f"Metadata:{i + 2}"
        name = Path(_col(row, "Image", "Image name", "Filename", "File name")).stem
        path = images.get(name)
        if path is None:
            return SourceProblem(self.name, where, f"image {name!r} not found in {IMAGE_DIRS}")
        klass = _col(row, "Abnormality", "Class", "Abnormality class").upper()
        if klass not in CLASS:
            return SourceProblem(self.name, where, f"abnormality class {klass!r} not in {sorted(CLASS)}")
        abnormality, margin = CLASS[klass]
        severity = _col(row, "Severity", "Pathology").upper()[:1]
        labels = {"abnormality": abnormality,
                  "pathology": {"B": "benign", "M": "malignant"}.get(severity, "normal" if klass == "NORM" else None)}
        tissue = _col(row, "Tissue", "Background tissue").upper()[:1]
        if tissue in TISSUE:
            labels["tissue"] = TISSUE[tissue]
        if margin:
            labels["mass_margin"] = margin
        if klass == "NORM":
            labels["boxes"] = []  # replaced by the masks' boxes, if any, when the item worker decodes them
        report_path = root / "Reports" / f"{name}.txt"
        report = report_path.read_text(encoding="utf-8", errors="replace").strip() if report_path.is_file() else None
        if report:
            density = [k for k, rx in DENSITY_WORDS.items() if rx.search(report)]
            if len(density) == 1:
                labels["density"] = density[0]
        if labels["pathology"]:
            labels["malignant"] = labels["pathology"] == "malignant"
        return checked_sample(self.name, where, sample_id=safe_id(name), patient_id=name, study_id=name,
                              modality="mammography", kind="image", media=[path], masks=masks.get(name, []),
                              box_masks=[BoxMask(m, abnormality) for m in masks.get(name, [])],
                              box_required=klass != "NORM",
                              labels={k: v for k, v in labels.items() if v is not None}, report=report)
