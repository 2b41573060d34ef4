"""BCNB (Early Breast Cancer Core-Needle Biopsy WSI): `WSIs/<n>.jpg` (+ `<n>.json` tumour annotations),
`patient-clinical-data.xlsx` (Patient ID, Age(years), Tumour Size(cm), Tumour Type, ER, PR, HER2, HER2 Expression,
Histological grading, Surgical, Ki67 (%), Molecular subtype, Number of lymph node metastases, ALN status
N0 / N+(1-2) / N+(>2)) and `dataset-splitting/{train,val,test}_id.txt`."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

from breastgpt.corpus.sources.base import SourceProblem, SourceSample, checked_sample, register
from breastgpt.corpus.sources.tables import TableError, cell, find_file, lookup, parse_bool, read_table

ALN = {"N0": "n0", "N+(1-2)": "n1_2", "N+(>2)": "n3_plus"}
SUBTYPE = {"Luminal A": "luminal_a", "Luminal B": "luminal_b", "HER2(+)": "her2_enriched",
           "HER2 (+)": "her2_enriched", "Triple negative": "basal"}
TUMOUR_TYPE = {"Invasive ductal carcinoma": "ductal", "Invasive ductal carcinomas": "ductal",
               "Invasive lobular carcinoma": "lobular", "Invasive lobular carcinomas": "lobular",
               "Other type": "other", "Other types": "other"}


def bcnb_labels(row) -> dict[str, Any]:
    labels: dict[str, Any] = {"node_status": lookup(ALN, cell(row, "ALN status"), "ALN status"),
                              "pathology": "malignant", "malignant": True}
    for field in ("ER", "PR", "HER2"):
        value = parse_bool(cell(row, field))
        if value is not None:
            labels[field.lower()] = value
    ki67 = cell(row, "Ki67")
    if ki67:
        value = float(ki67.rstrip("%"))
        labels["ki67_high"] = (value * 100 if value <= 1 else value) >= 20
    subtype = cell(row, "Molecular subtype")
    if subtype:
        labels["molecular_subtype"] = lookup(SUBTYPE, subtype, "molecular subtype")
    tumour = cell(row, "Tumour Type")
    if tumour:
        labels["histologic_type"] = lookup(TUMOUR_TYPE, tumour, "tumour type")
    return labels


@register
class BCNBAdapter:
    name = "bcnb"
    modality = "pathology"

    def discover(self, root: Path) -> Iterator[SourceSample | SourceProblem]:
        try:
            table = read_table(find_file(root, "patient-clinical-data.xlsx") or root / "patient-clinical-data.xlsx",
                               required=("Patient ID", "ALN status"))
        except TableError as exc:
            yield SourceProblem(self.name, str(root), str(exc))
            return
        splits = {}
        for split in ("train", "val", "test"):
            ids = find_file(root, f"dataset-splitting/{split}_id.txt")
            if ids is not None:
                splits.update({line.strip(): split for line in ids.read_text().splitlines() if line.strip()})
        for i, row in table.iterrows():
            yield self._sample(root, i, row, splits)

    def _sample(self, root: Path, i: int, row, splits) -> SourceSample | SourceProblem:
        where = f"patient-clinical-data.xlsx:{i + 2}"
        pid = cell(row, "Patient ID").split(".")[0]
        slide = root / "WSIs" / f"{pid}.jpg"
        if not slide.is_file():
            return SourceProblem(self.name, where, f"slide WSIs/{pid}.jpg not found")
        try:
            labels = bcnb_labels(row)
        except ValueError as exc:
            return SourceProblem(self.name, where, str(exc))
        annotation = slide.with_suffix(".json")
        return checked_sample(self.name, where, sample_id=f"bcnb-{pid}", patient_id=pid, study_id=pid,
                              modality="pathology", kind="slide", media=[slide], labels=labels,
                              dataset_split=splits.get(pid),
                              meta={"annotation": str(annotation) if annotation.is_file() else None})
