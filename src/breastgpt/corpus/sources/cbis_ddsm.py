"""CBIS-DDSM (TCIA): DICOM tree + `mass_case_description_{train,test}_set.csv`, `calc_case_description_*.csv`.

The CSV's `image file path` is `<case folder>/<StudyInstanceUID>/<SeriesInstanceUID>/000000.dcm`, which no TCIA
download reproduces: the NBIA retriever names folders `<date>-DDSM-<last 5 of study UID>/<n>.000000-<series
description>-<last 5 of series UID>/1-1.dcm` (descriptive) or `<StudyUID>/<SeriesUID>/1-1.dcm` (classic). We
resolve by case folder + series UID (full or 5-digit suffix, confirmed from the header when ambiguous), and fall
back to `dicom_info.csv` (the Kaggle JPEG re-export: SeriesInstanceUID → image_path).
One sample per full mammogram; its abnormalities' ROI masks become boxes.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from breastgpt.corpus.sources.base import SourceProblem, SourceSample, checked_sample, register, safe_id
from breastgpt.corpus.sources.media import box_from_mask_file, image_shape
from breastgpt.corpus.sources.tables import TableError, cell, find_file, lookup, read_table
from breastgpt.io.dicom import read_dataset
from breastgpt.io.errors import MedicalFileError

CSV_NAMES = ("mass_case_description_train_set.csv", "mass_case_description_test_set.csv",
             "calc_case_description_train_set.csv", "calc_case_description_test_set.csv")
CASE_FOLDER = re.compile(r"^(Mass|Calc)-(Training|Test)_P_\d+_(LEFT|RIGHT)_(CC|MLO)(_\d+)?$")
PATHOLOGY = {"MALIGNANT": "malignant", "BENIGN": "benign", "BENIGN_WITHOUT_CALLBACK": "benign"}
SHAPE = {"ROUND": "round", "OVAL": "oval", "IRREGULAR": "irregular", "LOBULATED": "lobulated"}
SHAPE_ABNORMALITY = {"ARCHITECTURAL_DISTORTION": "architectural_distortion", "ASYMMETRIC_BREAST_TISSUE": "asymmetry",
                     "FOCAL_ASYMMETRIC_DENSITY": "asymmetry", "LYMPH_NODE": "other"}
MARGIN = {"CIRCUMSCRIBED": "circumscribed", "OBSCURED": "obscured", "MICROLOBULATED": "microlobulated",
          "ILL_DEFINED": "indistinct", "SPICULATED": "spiculated"}
CALC_TYPE = {"AMORPHOUS": "amorphous", "PLEOMORPHIC": "fine_pleomorphic", "FINE_LINEAR_BRANCHING":
             "fine_linear_branching", "PUNCTATE": "punctate", "ROUND_AND_REGULAR": "round_regular",
             "VASCULAR": "vascular", "COARSE": "coarse", "LUCENT_CENTER": "other", "LUCENT_CENTERED": "other",
             "DYSTROPHIC": "other", "EGGSHELL": "other", "LARGE_RODLIKE": "other", "MILK_OF_CALCIUM": "other",
             "SKIN": "other"}
DISTRIBUTION = {"CLUSTERED": "grouped", "LINEAR": "linear", "SEGMENTAL": "segmental", "REGIONAL": "regional",
                "DIFFUSELY_SCATTERED": "diffuse"}
SEVERITY = {"normal": 0, "benign": 1, "malignant": 2}


@dataclass
class _Image:
    csv_path: str
    rows: list = field(default_factory=list)  # (csv file, row index, row)


class SeriesIndex:
    """Where each CSV path's series lives in this download (TCIA descriptive/classic, or Kaggle JPEG)."""

    def __init__(self, root: Path) -> None:
        self.by_case: dict[str, list[Path]] = defaultdict(list)
        for folder in root.rglob("*"):
            if folder.is_dir() and CASE_FOLDER.match(folder.name):
                self.by_case[folder.name].extend(p for p in folder.glob("*/*") if p.is_dir())
        self.jpeg_by_series: dict[str, list[Path]] = defaultdict(list)
        info = find_file(root, "csv/dicom_info.csv", "dicom_info.csv")
        if info is not None:
            for _, row in read_table(info, required=("SeriesInstanceUID", "image_path")).iterrows():
                path = _under_root(root, row["image_path"])
                if path is not None:
                    self.jpeg_by_series[row["SeriesInstanceUID"]].append(path)

    def files(self, csv_path: str) -> list[Path]:
        parts = [p for p in csv_path.strip().replace("\\", "/").split("/") if p]
        if len(parts) < 3:
            return []
        case, series_uid = parts[0], parts[2]
        for series_dir in self.by_case.get(case, []):
            if series_dir.name == series_uid or series_dir.name.endswith("-" + series_uid[-5:]):
                files = sorted(series_dir.glob("*.dcm"))
                if files and (series_dir.name == series_uid or _series_uid(files[0]) in (series_uid, None)):
                    return files
        return sorted(self.jpeg_by_series.get(series_uid, []))


def _under_root(root: Path, image_path: str) -> Path | None:
    parts = Path(image_path.replace("\\", "/")).parts
    for start in range(len(parts)):
        candidate = root.joinpath(*parts[start:])
        if candidate.is_file():
            return candidate
    return None


def _series_uid(path: Path) -> str | None:
    try:
        return str(read_dataset(path, header_only=True).get("SeriesInstanceUID", "")) or None
    except MedicalFileError:
        return None


@register
class CBISDDSMAdapter:
    name = "cbis_ddsm"
    modality = "mammography"

    def discover(self, root: Path) -> Iterator[SourceSample | SourceProblem]:
        images, problems = self._group_rows(root)
        yield from problems
        if not images:
            return
        index = SeriesIndex(root)
        for case, image in sorted(images.items()):
            yield self._sample(case, image, index)

    def _group_rows(self, root: Path) -> tuple[dict[str, _Image], list[SourceProblem]]:
        images: dict[str, _Image] = {}
        problems = []
        found = [p for p in (find_file(root, n) for n in CSV_NAMES) if p is not None]
        if not found:
            return {}, [SourceProblem(self.name, str(root), "no *_case_description_*.csv found under the root")]
        for csv in found:
            try:
                table = read_table(csv, required=("patient_id", "image file path", "pathology"))
            except TableError as exc:
                problems.append(SourceProblem(self.name, str(csv), str(exc)))
                continue
            for i, row in table.iterrows():
                path = cell(row, "image file path")
                case = path.replace("\\", "/").split("/")[0]
                images.setdefault(case, _Image(path)).rows.append((csv, i, row))
        return images, problems

    def _sample(self, case: str, image: _Image, index: SeriesIndex) -> SourceSample | SourceProblem:
        where = f"{Path(image.rows[0][0]).name}:{image.rows[0][1] + 2}"  # a table row: names no case
        media = index.files(image.csv_path)
        if not media:
            return SourceProblem(self.name, where, f"image series for {image.csv_path!r} not found in the download")
        try:
            labels = self._labels(image.rows, case)
            labels["boxes"] = self._boxes(image.rows, index, media[0])
        except (ValueError, MedicalFileError) as exc:
            return SourceProblem(self.name, where, str(exc))
        first = image.rows[0][2]
        split = "test" if "-Test_" in case else "train"
        return checked_sample(self.name, where, sample_id=safe_id(case), patient_id=cell(first, "patient_id"),
                              study_id=safe_id(case), modality="mammography", kind="image", media=media[:1],
                              labels=labels, dataset_split=split,
                              meta={"view": labels.get("view"), "n_abnormalities": len(image.rows),
                                    "subtlety": cell(first, "subtlety")})

    def _labels(self, rows, case: str) -> dict:
        first = rows[0][2]
        labels: dict = {"laterality": lookup({"LEFT": "L", "RIGHT": "R"}, cell(first, "left or right breast"), "side"),
                        "view": lookup({"CC": "CC", "MLO": "MLO"}, cell(first, "image view"), "view")}
        density = cell(first, "breast_density", "breast density")
        if density:
            labels["density"] = lookup({"1": "A", "2": "B", "3": "C", "4": "D"}, density, "breast density")
        findings = [_finding(row) for _, _, row in rows]
        worst = max(findings, key=lambda f: (SEVERITY[f["pathology"]], f.get("birads", -1)))
        labels.update({k: v for k, v in worst.items() if k not in ("box_label",)})
        labels["birads"] = max(f["birads"] for f in findings)
        labels["malignant"] = labels["pathology"] == "malignant"
        return labels

    def _boxes(self, rows, index: SeriesIndex, full_image: Path) -> list[dict]:
        boxes = []
        for _, _, row in rows:
            mask = _mask_file(index.files(cell(row, "ROI mask file path")), full_image)
            box = box_from_mask_file(mask) if mask is not None else None
            if box is None:
                raise ValueError(f"ROI mask for abnormality {cell(row, 'abnormality id')} not found or empty")
            boxes.append({"box": box, "label": _finding(row)["box_label"]})
        return boxes


def _finding(row) -> dict:
    kind = cell(row, "abnormality type").lower()
    out = {"pathology": lookup(PATHOLOGY, cell(row, "pathology"), "pathology"),
           "birads": int(lookup({str(i): i for i in range(7)}, cell(row, "assessment"), "assessment"))}
    if kind == "mass":
        shape = cell(row, "mass shape").split("-")[0]
        out["abnormality"] = SHAPE_ABNORMALITY.get(shape.upper(), "mass")
        if shape.upper() in SHAPE:
            out["mass_shape"] = SHAPE[shape.upper()]
        margin = cell(row, "mass margins").split("-")[0]
        if margin and margin.upper() != "N/A":
            out["mass_margin"] = lookup(MARGIN, margin, "mass margin")
    elif kind == "calcification":
        out["abnormality"] = "calcification"
        calc = cell(row, "calc type").split("-")[0]
        if calc and calc.upper() != "N/A":
            out["calc_type"] = lookup(CALC_TYPE, calc, "calc type")
        dist = cell(row, "calc distribution").split("-")[0]
        if dist and dist.upper() != "N/A":
            out["calc_distribution"] = lookup(DISTRIBUTION, dist, "calc distribution")
    else:
        raise ValueError(f"abnormality type {kind!r} is neither mass nor calcification")
    out["box_label"] = f"{out['abnormality']}:{out['pathology']}"
    return out


def _mask_file(files: list[Path], full_image: Path) -> Path | None:
    """A ROI series often holds both the cropped lesion and the mask, in either order and under one series
    description: the mask is the file with the full mammogram's size."""
    if len(files) <= 1:
        return files[0] if files else None
    size = _size(full_image)
    matches = [path for path in files if _size(path) == size]
    return matches[0] if len(matches) == 1 else None


def _size(path: Path) -> tuple[int, int]:
    if path.suffix.lower() == ".dcm":
        header = read_dataset(path, header_only=True)
        return int(header.get("Rows", 0)), int(header.get("Columns", 0))
    return image_shape(path)
