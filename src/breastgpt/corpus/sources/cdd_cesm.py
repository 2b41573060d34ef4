"""CDD-CESM (TCIA): `Radiology-manual-annotations.xlsx` (Image_name e.g. 'P12_L_DM_MLO', Patient_ID, Side, Type
DM/CESM, Age, Breast density (ACR), BIRADS, Findings, View, Tags, 'Pathology Classification/ Follow up'), and
JPEGs in 'Low energy images of CDD-CESM/' (DM) and 'Subtracted images of CDD-CESM/' (CESM). Only the
low-energy (DM) images are mammograms in our sense; the Findings text is the radiologist's description."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

from breastgpt.corpus.sources.base import SourceProblem, SourceSample, checked_sample, register, safe_id
from breastgpt.corpus.sources.tables import TableError, cell, find_file, lookup, parse_birads, parse_density, read_table

PATHOLOGY = {"Normal": "normal", "Benign": "benign", "Malignant": "malignant"}
LOW_ENERGY_DIRS = ("Low energy images of CDD-CESM", "Low energy images")


@register
class CDDCESMAdapter:
    name = "cdd_cesm"
    modality = "mammography"

    def discover(self, root: Path) -> Iterator[SourceSample | SourceProblem]:
        book = find_file(root, "Radiology-manual-annotations.xlsx", "Radiology_manual_annotations.xlsx")
        try:
            table = read_table(book or root / "Radiology-manual-annotations.xlsx", required=("Image_name", "Type"))
        except TableError as exc:
            yield SourceProblem(self.name, str(root), str(exc))
            return
        images = {}
        folders = [p for p in sorted(root.rglob("*")) if p.is_dir() and p.name.strip() in LOW_ENERGY_DIRS]
        for folder in folders:
            images.update({p.stem.strip(): p for p in folder.iterdir()
                           if p.suffix.lower() in (".jpg", ".jpeg") and not p.name.startswith(".")})
        for i, row in table.iterrows():
            if cell(row, "Type").upper() == "DM":
                yield self._sample(i, row, images)

    def _sample(self, i, row, images) -> SourceSample | SourceProblem:
        where = f"Radiology-manual-annotations.xlsx:{i + 2}"
        name = cell(row, "Image_name").strip()
        path = images.get(name)
        if path is None:
            return SourceProblem(self.name, where, f"low-energy image {name}.jpg not found")
        try:
            labels = {"laterality": cell(row, "Side"), "view": cell(row, "View") or name.split("_")[-1],
                      "birads": parse_birads(cell(row, "BIRADS")),
                      "density": parse_density(cell(row, "Breast density (ACR)", "Breast density")),
                      "pathology": lookup(PATHOLOGY, cell(row, "Pathology Classification/ Follow up",
                                                          "Pathology Classification/Follow up"), "pathology")}
            labels["malignant"] = labels["pathology"] == "malignant"
        except ValueError as exc:
            return SourceProblem(self.name, where, str(exc))
        findings = cell(row, "Findings")
        return checked_sample(self.name, where, sample_id=safe_id(name), patient_id=cell(row, "Patient_ID"),
                              study_id=cell(row, "Patient_ID"), modality="mammography", kind="image", media=[path],
                              labels={k: v for k, v in labels.items() if v is not None},
                              report=findings or None, meta={"tags": cell(row, "Tags")})
