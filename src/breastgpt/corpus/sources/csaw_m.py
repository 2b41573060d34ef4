"""CSAW-M (masking levels): `labels/CSAW-M_train.csv` and `labels/CSAW-M_test.csv`, `;`-separated
(Filename;Label;Expert_1..Expert_5;If_cancer;...;Dicom_image_laterality;...;Libra_percent_density;...), and
PNGs under `images/preprocessed/{train,test}/<Filename>`. `Label` is the masking level 1-8; where a release
has only the expert columns (test set), the median of the experts is used."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Iterator

from breastgpt.corpus.sources.base import SourceProblem, SourceSample, checked_sample, register, safe_id
from breastgpt.corpus.sources.tables import TableError, cell, read_table


@register
class CSAWMAdapter:
    name = "csaw_m"
    modality = "mammography"

    def discover(self, root: Path) -> Iterator[SourceSample | SourceProblem]:
        for split in ("train", "test"):
            csv = root / "labels" / f"CSAW-M_{split}.csv"
            if not csv.is_file():
                yield SourceProblem(self.name, str(csv), "label file not found")
                continue
            try:
                table = read_table(csv, sep=";", required=("Filename",))
            except TableError as exc:
                yield SourceProblem(self.name, str(csv), str(exc))
                continue
            for i, row in table.iterrows():
                yield self._sample(root, split, f"{csv.name}:{i + 2}", row)

    def _sample(self, root: Path, split: str, where: str, row) -> SourceSample | SourceProblem:
        name = row["Filename"]
        path = next((p for p in (root / "images" / "preprocessed" / split / name, root / "images" / split / name)
                     if p.is_file()), None)
        if path is None:
            return SourceProblem(self.name, where, f"image {name} not found under images/preprocessed/{split}")
        try:
            level = _level(row)
        except ValueError as exc:
            return SourceProblem(self.name, where, str(exc))
        labels = {"masking_level": level}
        side = cell(row, "Dicom_image_laterality")
        if side in ("L", "R"):
            labels["laterality"] = side
        stem = Path(name).stem
        return checked_sample(self.name, where, sample_id=safe_id(stem), patient_id=stem, study_id=stem,
                              modality="mammography", kind="image", media=[path], labels=labels,
                              dataset_split=split, meta={"if_cancer": cell(row, "If_cancer")})


def _level(row) -> int:
    if cell(row, "Label"):
        return int(float(cell(row, "Label")))
    experts = [int(float(cell(row, f"Expert_{k}"))) for k in range(1, 6) if cell(row, f"Expert_{k}")]
    if not experts:
        raise ValueError("no Label and no Expert_1..5 values")
    return int(statistics.median_low(experts))
