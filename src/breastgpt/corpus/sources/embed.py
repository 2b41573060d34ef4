"""EMBED (Emory, AWS Open Data): `tables/EMBED_OpenData_metadata.csv` (one row per DICOM: empi_anon, acc_anon,
anon_dicom_path, ImageLateralityFinal, ViewPosition, FinalImageType, ROI_coords, Rows, Columns) joined on
acc_anon (+ side) with `tables/EMBED_OpenData_clinical.csv` (one row per finding: side L/R/B, asses letter
A/N/B/P/S/M/K, tissueden 1-4, path_severity 0-6).

ROI_coords is a tuple-of-tuples string `((ymin, xmin, ymax, xmax), ...)` — row first — which we turn into
[x1, y1, x2, y2]; boxes outside the image's Rows × Columns are reported, never silently dropped.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path
from typing import Iterator

from breastgpt.corpus.sources.base import SourceProblem, SourceSample, checked_sample, hashed_id, register, safe_id
from breastgpt.corpus.sources.tables import TableError, cell, find_file, lookup, parse_density, read_table

ASSES = {"A": 0, "N": 1, "B": 2, "P": 3, "S": 4, "M": 5, "K": 6}
# path_severity: 0 invasive cancer, 1 non-invasive cancer, 2 high-risk, 3 borderline, 4 benign, 5 negative, 6 non-breast cancer
PATH_SEVERITY = {"0": "malignant", "1": "malignant", "2": "benign", "3": "benign", "4": "benign", "5": "normal"}
VIEW = {"CC": "CC", "MLO": "MLO", "ML": "ML", "LM": "LM", "XCCL": "XCCL"}


def parse_roi_coords(text: str) -> list[list[int]]:
    """'((y1, x1, y2, x2), (y1, x1, y2, x2))' -> [[x1, y1, x2, y2], ...] (literal parsing only)."""
    text = text.strip()
    if not text or text in ("()", "[]"):
        return []
    value = ast.literal_eval(text)
    if value and isinstance(value[0], (int, float)):
        value = (value,)
    boxes = []
    for roi in value:
        if len(roi) != 4:
            raise ValueError(f"ROI_coords entry {roi!r} does not have 4 numbers")
        y1, x1, y2, x2 = (int(round(float(v))) for v in roi)
        boxes.append([min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2)])
    return boxes


def resolve_dicom(root: Path, anon_path: str) -> Path | None:
    """anon_dicom_path is an absolute path on Emory's servers; keep its tail from 'cohort_*' (or any tail)."""
    parts = Path(anon_path.replace("\\", "/")).parts
    for start in range(len(parts)):
        for base in (root, root / "images"):
            candidate = base.joinpath(*parts[start:])
            if candidate.is_file():
                return candidate
    return None


@register
class EMBEDAdapter:
    name = "embed"
    modality = "mammography"

    def discover(self, root: Path) -> Iterator[SourceSample | SourceProblem]:
        try:
            meta = read_table(find_file(root, "tables/EMBED_OpenData_metadata.csv") or root / "EMBED_OpenData_metadata.csv",
                              required=("empi_anon", "acc_anon", "anon_dicom_path", "ImageLateralityFinal"))
            clinical_path = find_file(root, "tables/EMBED_OpenData_clinical.csv", "EMBED_OpenData_clinical_reduced.csv")
            clinical = read_table(clinical_path, required=("acc_anon", "side", "asses")) if clinical_path else None
        except TableError as exc:
            yield SourceProblem(self.name, str(root), str(exc))
            return
        by_exam = defaultdict(list)
        if clinical is not None:
            for _, row in clinical.iterrows():
                by_exam[row["acc_anon"]].append(row)
        for i, row in meta.iterrows():
            yield self._sample(root, i, row, by_exam.get(row["acc_anon"], []))

    def _sample(self, root: Path, i: int, row, findings) -> SourceSample | SourceProblem:
        where = f"EMBED_OpenData_metadata.csv:{i + 2}"
        path = resolve_dicom(root, row["anon_dicom_path"])
        if path is None:
            return SourceProblem(self.name, where, f"DICOM {row['anon_dicom_path']!r} not found under {root}")
        side = cell(row, "ImageLateralityFinal")
        try:
            labels = {"laterality": side, "view": VIEW.get(cell(row, "ViewPosition"), "other")}
            labels.update(_clinical_labels([f for f in findings if cell(f, "side") in (side, "B", "")]))
            boxes = parse_roi_coords(cell(row, "ROI_coords"))
            _check_inside(boxes, cell(row, "Rows"), cell(row, "Columns"))
            if boxes:
                labels["boxes"] = [{"box": b, "label": "roi"} for b in boxes]
        except (ValueError, SyntaxError) as exc:
            return SourceProblem(self.name, where, f"{type(exc).__name__}: {exc}")
        image_key = hashed_id(self.name, row["anon_dicom_path"])  # the path embeds patient/exam ids: hash it
        return checked_sample(self.name, where, sample_id=safe_id(image_key), patient_id=row["empi_anon"],
                              study_id=row["acc_anon"], modality="mammography", kind="image", media=[path],
                              labels=labels, meta={"image_type": cell(row, "FinalImageType")})


def _clinical_labels(findings) -> dict:
    labels: dict = {}
    birads = [lookup(ASSES, cell(f, "asses"), "asses") for f in findings if cell(f, "asses")]
    if birads:
        labels["birads"] = max(birads)
    densities = [parse_density(cell(f, "tissueden")) for f in findings if cell(f, "tissueden") in ("1", "2", "3", "4", "1.0", "2.0", "3.0", "4.0")]
    if densities:
        labels["density"] = densities[0]
    severities = [cell(f, "path_severity").split(".")[0] for f in findings if cell(f, "path_severity")]
    known = [PATH_SEVERITY[s] for s in severities if s in PATH_SEVERITY]
    if known:
        labels["pathology"] = max(known, key=["normal", "benign", "malignant"].index)
        labels["malignant"] = labels["pathology"] == "malignant"
    return labels


def _check_inside(boxes, rows: str, columns: str) -> None:
    if not rows or not columns:
        return
    h, w = int(float(rows)), int(float(columns))
    for x1, y1, x2, y2 in boxes:
        if x2 > w or y2 > h or x1 < 0 or y1 < 0:
            raise ValueError(f"ROI box {[x1, y1, x2, y2]} lies outside the {w}x{h} image — check the ROI_coords order")
