"""BMCD (digital mammography, Normal and Suspicious cases with recent and prior exams): `Description.xlsx` with
sheets 'Normal' and 'Suspicious' (one row per case folder), and DICOM images in per-case folders
`Normal_cases/<case>/*.dcm` / `Suspicious_cases/<case>/*.dcm`. Column names are matched loosely (case and
spacing) because releases differ; laterality/view come from the DICOM header (ImageLaterality, ViewPosition)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterator

from breastgpt.corpus.sources.base import SourceProblem, SourceSample, checked_sample, register, safe_id
from breastgpt.corpus.sources.tables import TableError, find_file, parse_birads, parse_density, read_sheets
from breastgpt.io.dicom import read_dataset
from breastgpt.io.errors import MedicalFileError

PATHOLOGY = {"normal": "normal", "benign": "benign", "malignant": "malignant"}


def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def _get(row, *names: str) -> str:
    wanted = {_norm(n) for n in names}
    for key, value in row.items():
        if _norm(str(key)) in wanted and str(value).strip() not in ("", "nan"):
            return str(value).strip()
    return ""


@register
class BMCDAdapter:
    name = "bmcd"
    modality = "mammography"

    def discover(self, root: Path) -> Iterator[SourceSample | SourceProblem]:
        book = find_file(root, "Description.xlsx")
        try:
            sheets = read_sheets(book or root / "Description.xlsx")
        except TableError as exc:
            yield SourceProblem(self.name, str(root), str(exc))
            return
        for sheet, frame in sheets.items():
            group = "Normal" if sheet.lower().startswith("normal") else "Suspicious"
            for i, row in frame.iterrows():
                case = _get(row, "Case", "Folder", "Case number", "ID")
                if case:
                    yield from self._samples(root, group, f"Description.xlsx[{sheet}]:{i + 2}", case, row)

    def _samples(self, root, group, where, case, row) -> Iterator[SourceSample | SourceProblem]:
        folder = next((p for p in (root / f"{group}_cases" / case, root / group / case) if p.is_dir()), None)
        if folder is None:
            yield SourceProblem(self.name, where, f"case folder {group}_cases/{case} not found")
            return
        try:
            labels = {"birads": parse_birads(_get(row, "BIRADS", "BI-RADS", "Birads")),
                      "density": parse_density(_get(row, "Density", "ACR", "Breast density"))}
            pathology = _get(row, "Pathology", "Diagnosis").lower() or ("normal" if group == "Normal" else "")
            if pathology:
                labels["pathology"] = PATHOLOGY[pathology]
                labels["malignant"] = labels["pathology"] == "malignant"
        except (KeyError, ValueError) as exc:
            yield SourceProblem(self.name, where, f"{type(exc).__name__}: {exc}")
            return
        for dcm in sorted(folder.rglob("*.dcm")):
            yield self._image(dcm, root, where, case, group, {k: v for k, v in labels.items() if v is not None})

    def _image(self, dcm, root, where, case, group, labels) -> SourceSample | SourceProblem:
        try:
            header = read_dataset(dcm, header_only=True)
        except MedicalFileError as exc:
            return SourceProblem(self.name, str(dcm), str(exc))
        image_labels = dict(labels, laterality=str(header.get("ImageLaterality", "")) or None,
                            view=str(header.get("ViewPosition", "")) or None)
        rel = dcm.relative_to(root).with_suffix("")
        return checked_sample(self.name, where, sample_id=safe_id(*rel.parts), patient_id=f"{group}/{case}",
                              study_id=safe_id(*rel.parent.parts), modality="mammography",
                              kind="image", media=[dcm],
                              labels={k: v for k, v in image_labels.items() if v is not None},
                              meta={"group": group, "exam": rel.parent.name})
