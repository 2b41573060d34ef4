"""CBIS-DDSM (TCIA): DICOM tree + `mass_case_description_{train,test}_set.csv`, `calc_case_description_*.csv`.

The CSV's `image file path` is `<case folder>/<StudyInstanceUID>/<SeriesInstanceUID>/000000.dcm`, which no TCIA
download reproduces. A series is found, in this order:
1. by folder name under its case folder: the NBIA Data Retriever's descriptive names (`<date>-DDSM-NA-<last 5 of
   study UID>/1.000000-full mammogram images-<last 5 of series UID>/1-1.dcm`, older `<date>-DDSM-<5>/...`) or the
   classic `<StudyUID>/<SeriesUID>/1-1.dcm`, confirmed by the first file's SeriesInstanceUID;
2. by DICOM header, whatever the folders are called: SeriesInstanceUID, else a case's PatientID (CBIS-DDSM
   writes the case folder name there) when that patient has exactly one series. Headers are read once, without
   pixels, only when a name does not resolve, and cached by path, size and mtime;
3. through `dicom_info.csv` (the Kaggle JPEG re-export: SeriesInstanceUID → image_path).
One sample per full mammogram; its abnormalities' ROI masks become boxes. ROI masks are optional: when one is
missing (users often download only the full mammograms) the image keeps every CSV label and only its boxes
(grounding tasks) are dropped, recorded as `missing=["roi_mask"]`.
"""

from __future__ import annotations

import logging
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from breastgpt.corpus.sources.base import BoxMask, SourceProblem, SourceSample, checked_sample, register, safe_id
from breastgpt.corpus.sources.media import image_shape
from breastgpt.corpus.sources.tables import Tree, TableError, cell, find_file, lookup, read_table, walk_tree
from breastgpt.io.dicom import read_dataset
from breastgpt.io.errors import MedicalFileError

log = logging.getLogger(__name__)
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


@dataclass(frozen=True)
class Header:
    """The few header values series resolution needs (PatientID is matched, never written out)."""

    series_uid: str
    patient_id: str
    rows: int
    columns: int


_HEADERS: dict[tuple[str, int, int], Header | None] = {}


def dicom_header(path: Path) -> Header | None:
    """A DICOM file's series UID, patient id and size from its header (no pixels), cached by path, size and
    mtime; None for a file that is not readable DICOM."""
    try:
        stat = path.stat()
    except OSError:
        return None
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key not in _HEADERS:
        try:
            header = read_dataset(path, header_only=True)
            _HEADERS[key] = Header(str(header.get("SeriesInstanceUID", "")), str(header.get("PatientID", "")),
                                   int(header.get("Rows", 0) or 0), int(header.get("Columns", 0) or 0))
        except (MedicalFileError, ValueError, TypeError):
            _HEADERS[key] = None
    return _HEADERS[key]


def _dicom_files(folder: Path) -> list[Path]:
    """DICOM files of a folder, without macOS AppleDouble companions (`._1-1.dcm`) and other hidden files."""
    return sorted(p for p in folder.glob("*.dcm") if not p.name.startswith(".") and p.is_file())


class SeriesIndex:
    """Where each CSV path's series lives in this download (see the module docstring for the order)."""

    def __init__(self, root: Path, tree: Tree | None = None) -> None:
        self.root = root
        tree = tree or walk_tree(root)
        self.by_case: dict[str, list[Path]] = defaultdict(list)
        for folder, children in tree.folders.items():
            if CASE_FOLDER.match(folder.name):
                self.by_case[folder.name].extend(folder / child / grandchild for child in children
                                                 for grandchild in tree.folders.get(folder / child, []))
        self.jpeg_by_series: dict[str, list[Path]] = defaultdict(list)
        info = find_file(root, "csv/dicom_info.csv", "dicom_info.csv", tree=tree)
        if info is not None:
            for _, row in read_table(info, required=("SeriesInstanceUID", "image_path")).iterrows():
                path = _under_root(root, row["image_path"])
                if path is not None:
                    self.jpeg_by_series[row["SeriesInstanceUID"]].append(path)
        self._by_series: dict[str, list[Path]] | None = None
        self._series_of_patient: dict[str, set[str]] = defaultdict(set)

    def files(self, csv_path: str) -> list[Path]:
        parts = [p for p in csv_path.strip().replace("\\", "/").split("/") if p]
        if len(parts) < 3:
            return []
        case, series_uid = parts[0], parts[2]
        return (self._by_name(case, series_uid) or self._by_header(case, series_uid)
                or sorted(self.jpeg_by_series.get(series_uid, [])))

    def _by_name(self, case: str, series_uid: str) -> list[Path]:
        for series_dir in self.by_case.get(case, []):
            if series_dir.name == series_uid or series_dir.name.endswith("-" + series_uid[-5:]):
                files = _dicom_files(series_dir)
                header = dicom_header(files[0]) if files else None
                if files and (header is None or header.series_uid == series_uid):
                    return files
        return []

    def _by_header(self, case: str, series_uid: str) -> list[Path]:
        by_series = self._header_index()
        if series_uid in by_series:
            return by_series[series_uid]
        candidates = self._series_of_patient.get(case, set())
        return by_series[next(iter(candidates))] if len(candidates) == 1 else []

    def _header_index(self) -> dict[str, list[Path]]:
        """SeriesInstanceUID → files for every DICOM under the root (built once, on first need)."""
        if self._by_series is None:
            self._by_series = defaultdict(list)
            files = [p for p in self.root.rglob("*.dcm") if not p.name.startswith(".") and p.is_file()]
            log.info("cbis_ddsm: reading %d DICOM headers to find series by UID", len(files))
            for path in sorted(files):
                header = dicom_header(path)
                if header is not None and header.series_uid:
                    self._by_series[header.series_uid].append(path)
                    self._series_of_patient[header.patient_id].add(header.series_uid)
        return self._by_series


def _under_root(root: Path, image_path: str) -> Path | None:
    parts = Path(image_path.replace("\\", "/")).parts
    for start in range(len(parts)):
        candidate = root.joinpath(*parts[start:])
        if candidate.is_file():
            return candidate
    return None


@register
class CBISDDSMAdapter:
    name = "cbis_ddsm"
    modality = "mammography"

    def discover(self, root: Path) -> Iterator[SourceSample | SourceProblem]:
        tree = walk_tree(root)  # one walk of the download for the tables and the series folders
        images, problems = self._group_rows(root, tree)
        yield from problems
        if not images:
            return
        index = SeriesIndex(root, tree)
        for case, image in sorted(images.items()):
            yield self._sample(case, image, index)

    def _group_rows(self, root: Path, tree: Tree) -> tuple[dict[str, _Image], list[SourceProblem]]:
        images: dict[str, _Image] = {}
        problems = []
        found = [p for p in (find_file(root, n, tree=tree) for n in CSV_NAMES) if p is not None]
        if not found:
            return {}, [SourceProblem(self.name, str(root), "no *_case_description_*.csv found under the root")]
        for csv in found:
            try:
                table = read_table(csv, required=("patient_id", "image file path", "pathology"))
            except TableError as exc:
                problems.append(SourceProblem(self.name, str(csv), str(exc)))
                continue
            for i, row in enumerate(table.to_dict("records")):  # plain dicts: a pandas row per cell was slow
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
            masks = self._masks(image.rows, index, media[0])
        except (ValueError, MedicalFileError) as exc:
            return SourceProblem(self.name, where, str(exc))
        first = image.rows[0][2]
        split = "test" if "-Test_" in case else "train"
        return checked_sample(self.name, where, sample_id=safe_id(case), patient_id=cell(first, "patient_id"),
                              study_id=safe_id(case), modality="mammography", kind="image", media=media[:1],
                              labels=labels, dataset_split=split, missing=[] if masks is not None else ["roi_mask"],
                              box_masks=masks or [], box_policy="all", box_required=True,
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

    def _masks(self, rows, index: SeriesIndex, full_image: Path) -> list[BoxMask] | None:
        """One ROI mask per abnormality, or None when any is absent; an empty one drops every box when the item
        worker decodes them (`box_policy="all"`: a partial set of boxes would make "locate every lesion" answers
        wrong). The labels stay either way."""
        masks = []
        for _, _, row in rows:
            # some rows swap the ROI-mask and cropped-image paths: look in both series for the full-size file
            candidates = [*index.files(cell(row, "ROI mask file path")), *index.files(cell(row, "cropped image file path"))]
            mask = _mask_file(sorted(set(candidates)), full_image)
            if mask is None:
                return None
            masks.append(BoxMask(mask, _finding(row)["box_label"]))
        return masks


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
    """The ROI mask among a row's ROI and cropped-image series (which may be one series, in either order, or
    have their paths swapped in the CSV): the one file with the full mammogram's size; None when there is none
    (a mask whose size differs from its mammogram cannot be placed on it)."""
    if not files:
        return None
    size = _size(full_image)
    matches = [path for path in files if _size(path) == size]
    return matches[0] if len(matches) == 1 else None


def _size(path: Path) -> tuple[int, int]:
    if path.suffix.lower() == ".dcm":
        header = dicom_header(path)
        return (header.rows, header.columns) if header is not None else (0, 0)
    return image_shape(path)
