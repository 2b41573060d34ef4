"""RSNA Screening Mammography Breast Cancer Detection (Kaggle): `train.csv` (site_id, patient_id, image_id,
laterality, view, age, cancer, biopsy, invasive, BIRADS 0/1/2 or empty, implant, density A-D or empty,
machine_id, difficult_negative_case) and `train_images/<patient_id>/<image_id>.dcm`."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

from breastgpt.corpus.sources.base import SourceProblem, SourceSample, checked_sample, register, safe_id
from breastgpt.corpus.sources.tables import TableError, cell, parse_birads, parse_bool, parse_density, read_table

VIEW = {"CC": "CC", "MLO": "MLO", "ML": "ML", "LM": "LM"}


@register
class RSNAScreeningAdapter:
    name = "rsna_screening"
    modality = "mammography"

    def discover(self, root: Path) -> Iterator[SourceSample | SourceProblem]:
        try:
            table = read_table(root / "train.csv", required=("patient_id", "image_id", "laterality", "view", "cancer"))
        except TableError as exc:
            yield SourceProblem(self.name, str(root), str(exc))
            return
        for i, row in table.iterrows():
            yield self._sample(root, i, row)

    def _sample(self, root: Path, i: int, row) -> SourceSample | SourceProblem:
        where = f"train.csv:{i + 2}"
        path = root / "train_images" / row["patient_id"] / f"{row['image_id']}.dcm"
        if not path.is_file():
            return SourceProblem(self.name, where, f"image file {path} not found")
        try:
            cancer, biopsy = parse_bool(row["cancer"]), parse_bool(cell(row, "biopsy"))
            labels = {"laterality": row["laterality"], "view": VIEW.get(row["view"], "other"),
                      "birads": parse_birads(cell(row, "BIRADS")), "density": parse_density(cell(row, "density")),
                      "malignant": cancer}
            if cancer:
                labels["pathology"] = "malignant"
            elif biopsy:
                labels["pathology"] = "benign"
        except ValueError as exc:
            return SourceProblem(self.name, where, str(exc))
        return checked_sample(self.name, where, sample_id=safe_id(row["patient_id"], row["image_id"]),
                              patient_id=row["patient_id"], study_id=row["patient_id"], modality="mammography",
                              kind="image", media=[path], labels={k: v for k, v in labels.items() if v is not None},
                              dataset_split="train",
                              meta={"site_id": cell(row, "site_id"), "machine_id": cell(row, "machine_id"),
                                    "implant": cell(row, "implant")})
