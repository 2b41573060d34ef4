"""VinDr-Mammo (PhysioNet): `images/<study_id>/<image_id>.dicom`, `breast-level_annotations.csv` (one row per
image: laterality, view_position, height, width, breast_birads 'BI-RADS n', breast_density 'DENSITY X', split
'training'/'test') and `finding_annotations.csv` (one row per finding: finding_categories as a Python-list
string, finding_birads, xmin/ymin/xmax/ymax in image pixels; 'No Finding' rows have empty boxes)."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path
from typing import Iterator

from breastgpt.corpus.sources.base import SourceProblem, SourceSample, checked_sample, register, safe_id
from breastgpt.corpus.sources.tables import TableError, cell, find_file, parse_birads, parse_density, read_table

CATEGORY = {"mass": "mass", "suspicious calcification": "calcification", "asymmetry": "asymmetry",
            "focal asymmetry": "asymmetry", "global asymmetry": "asymmetry",
            "architectural distortion": "architectural_distortion", "no finding": "none"}
SPLIT = {"training": "train", "train": "train", "test": "test"}


def categories(text: str) -> list[str]:
    """"['Mass', 'Suspicious Calcification']" -> ['Mass', 'Suspicious Calcification'] (literal parsing only)."""
    text = text.strip()
    if not text:
        return []
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return [text]
    return [str(v) for v in value] if isinstance(value, (list, tuple)) else [str(value)]


@register
class VinDrMammoAdapter:
    name = "vindr_mammo"
    modality = "mammography"

    def discover(self, root: Path) -> Iterator[SourceSample | SourceProblem]:
        table = find_file(root, "breast-level_annotations.csv") or root / "breast-level_annotations.csv"
        base = table.parent  # images/ sits beside the tables, however deep the download nests them
        try:
            breast = read_table(table, required=("study_id", "image_id", "laterality", "view_position", "breast_birads"))
            findings_path = find_file(base, "finding_annotations.csv")
            findings = read_table(findings_path, required=("image_id", "finding_categories", "xmin")) \
                if findings_path else None
        except TableError as exc:
            yield SourceProblem(self.name, str(root), str(exc))
            return
        by_image = defaultdict(list)
        if findings is not None:
            for _, row in findings.iterrows():
                by_image[row["image_id"]].append(row)
        for i, row in breast.iterrows():
            yield self._sample(base, i, row, None if findings is None else by_image.get(row["image_id"], []))

    def _sample(self, root: Path, i: int, row, finding_rows) -> SourceSample | SourceProblem:
        """`finding_rows` None: the download lacks finding_annotations.csv (no abnormality, no boxes)."""
        where = f"breast-level_annotations.csv:{i + 2}"
        path = root / "images" / row["study_id"] / f"{row['image_id']}.dicom"
        if not path.is_file():
            return SourceProblem(self.name, where, f"image file {path} not found")
        try:
            labels = {"laterality": row["laterality"], "view": row["view_position"],
                      "birads": parse_birads(row["breast_birads"])}
            density = parse_density(cell(row, "breast_density"))
            if density:
                labels["density"] = density
            if finding_rows is not None:
                labels.update(_finding_labels(finding_rows))
        except ValueError as exc:
            return SourceProblem(self.name, where, str(exc))
        return checked_sample(self.name, where, sample_id=safe_id(row["image_id"]), patient_id=row["study_id"],
                              study_id=row["study_id"], modality="mammography", kind="image", media=[path],
                              labels={k: v for k, v in labels.items() if v is not None},
                              dataset_split=SPLIT.get(cell(row, "split").lower()),
                              missing=["finding_annotations"] if finding_rows is None else [],
                              meta={"height": cell(row, "height"), "width": cell(row, "width")})


def _finding_labels(rows) -> dict:
    boxes, kinds = [], []
    for row in rows:
        names = categories(row["finding_categories"])
        kinds += [CATEGORY.get(n.lower(), "other") for n in names]
        if cell(row, "xmin"):
            box = [round(float(row[k])) for k in ("xmin", "ymin", "xmax", "ymax")]
            boxes.append({"box": box, "label": "; ".join(n.lower() for n in names)})
    kinds = [k for k in kinds if k != "none"]
    labels: dict = {"abnormality": kinds[0] if kinds else "none"}
    if boxes or rows:
        labels["boxes"] = boxes
    return labels
