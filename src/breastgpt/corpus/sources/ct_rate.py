"""CT-RATE (chest CT): `dataset/{train,valid}/<split>_<n>/<split>_<n>_<letter>/<split>_<n>_<letter>_<k>.nii.gz`
(patient n, scan letter, reconstruction k), reports in `dataset/radiology_text_reports/{train,validation}_reports.csv`
(VolumeName, ClinicalInformation_EN, Technique_EN, Findings_EN, Impressions_EN) and the 18 abnormality labels in
`dataset/multi_abnormality_labels/{train,valid}_predicted_labels.csv` (VolumeName + one 0/1 column each)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterator

from breastgpt.corpus.sources.base import SourceProblem, SourceSample, checked_sample, register
from breastgpt.corpus.sources.tables import TableError, cell, find_file, parse_bool, read_table

ABNORMALITIES = ("Medical material", "Arterial wall calcification", "Cardiomegaly", "Pericardial effusion",
                 "Coronary artery wall calcification", "Hiatal hernia", "Lymphadenopathy", "Emphysema", "Atelectasis",
                 "Lung nodule", "Lung opacity", "Pulmonary fibrotic sequela", "Pleural effusion",
                 "Mosaic attenuation pattern", "Peribronchial thickening", "Consolidation", "Bronchiectasis",
                 "Interlobular septal thickening")
NAME = re.compile(r"^(train|valid)_(\d+)_([a-z]+)_(\d+)\.nii(\.gz)?$")


def snake(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


@register
class CTRATEAdapter:
    name = "ct_rate"
    modality = "ct"

    def discover(self, root: Path) -> Iterator[SourceSample | SourceProblem]:
        base = root / "dataset" if (root / "dataset").is_dir() else root
        try:
            labels = self._table(base, ("multi_abnormality_labels/train_predicted_labels.csv",
                                        "multi_abnormality_labels/valid_predicted_labels.csv"))
            reports = self._table(base, ("radiology_text_reports/train_reports.csv",
                                         "radiology_text_reports/validation_reports.csv"))
        except TableError as exc:
            yield SourceProblem(self.name, str(root), str(exc))
            return
        for path in sorted(base.glob("*/*/*/*.nii*")):
            match = NAME.match(path.name)
            if match:
                yield self._sample(path, match, labels.get(path.name), reports.get(path.name))

    def _table(self, base: Path, names) -> dict:
        rows = {}
        for name in names:
            path = find_file(base, name)
            if path is not None:
                for _, row in read_table(path, required=("VolumeName",)).iterrows():
                    rows[row["VolumeName"]] = row
        return rows

    def _sample(self, path: Path, match, label_row, report_row) -> SourceSample | SourceProblem:
        split, patient, scan = match.group(1), match.group(2), match.group(3)
        labels = {}
        if label_row is not None:
            try:
                labels["ct_abnormalities"] = {snake(n): bool(parse_bool(cell(label_row, n))) for n in ABNORMALITIES}
            except ValueError as exc:
                return SourceProblem(self.name, str(path), str(exc))
        report = None
        if report_row is not None:
            parts = [f"Findings: {cell(report_row, 'Findings_EN')}" if cell(report_row, "Findings_EN") else "",
                     f"Impression: {cell(report_row, 'Impressions_EN')}" if cell(report_row, "Impressions_EN") else ""]
            report = "\n".join(p for p in parts if p) or None
        stem = path.name.split(".nii")[0]
        return checked_sample(self.name, str(path), sample_id=stem, patient_id=f"{split}_{patient}",
                              study_id=f"{split}_{patient}_{scan}", modality="ct", kind="volume", media=[path],
                              labels=labels, report=report, dataset_split="train" if split == "train" else "val",
                              meta={"reconstruction": match.group(4)})
