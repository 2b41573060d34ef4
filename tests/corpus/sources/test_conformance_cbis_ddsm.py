"""CBIS-DDSM as users really have it (issue 28 points 1-2), written from TCIA's published description:

- the four case-description CSVs' columns (the mass CSV says `breast_density`, the calc CSV `breast density`),
  their `image file path` `<case>/<StudyUID>/<SeriesUID>/000000.dcm`, and the ROI / cropped paths that end in
  a newline inside the quotes; Windows line ends; only some of the four CSVs present;
- the NBIA Data Retriever's descriptive folders `<case>/<MM-DD-YYYY>-DDSM-NA-<last 5 of study UID>/1.000000-full
  mammogram images-<last 5 of series UID>/1-1.dcm`, under `manifest-<n>/CBIS-DDSM/` with its `metadata.csv`,
  in a folder with spaces; the classic `<case>/<StudyUID>/<SeriesUID>/1-1.dcm`; and folders named anything
  (found by DICOM header: SeriesInstanceUID, or the case's PatientID);
- ROI series holding the mask alone or with the cropped image (`1-1.dcm`, `1-2.dcm` in either order);
- a download with only the full mammograms for some cases; LICENSE, README, .DS_Store and `._1-1.dcm` clutter.
DICOMs are written with pydicom here, independently of `breastgpt.synth`.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from breastgpt.corpus.sources import SourceProblem
from tests.corpus.fixtures import discovered
from breastgpt.corpus.sources import cbis_ddsm
from tests.corpus.sources.layouts import UID_ROOT, add_clutter, mammogram, mask, write_csv, write_dicom

H, W = 96, 64
MASS_HEADER = ["patient_id", "breast_density", "left or right breast", "image view", "abnormality id",
               "abnormality type", "mass shape", "mass margins", "assessment", "pathology", "subtlety",
               "image file path", "cropped image file path", "ROI mask file path"]
CALC_HEADER = ["patient_id", "breast density", "left or right breast", "image view", "abnormality id",
               "abnormality type", "calc type", "calc distribution", "assessment", "pathology", "subtlety",
               "image file path", "cropped image file path", "ROI mask file path"]


def uid(n: int) -> str:
    return f"{UID_ROOT}{n}"


# case folder, patient, side, view, study/series UID numbers, abnormalities: (box or None = ROI not downloaded,
# ROI series layout "separate" | "crop-first" | "mask-first", CSV cells)
CASES = {
    "Mass-Training_P_00001_LEFT_CC": {
        "side": "L", "study": 422112722213189649807611434612228974994, "series": 342386194811267636608694132590482924515,
        "abnormalities": [((10, 20, 30, 44), "separate",
                           ["P_00001", "3", "LEFT", "CC", "1", "mass", "IRREGULAR-ARCHITECTURAL_DISTORTION",
                            "SPICULATED", "4", "MALIGNANT", "4"])]},
    "Mass-Training_P_00004_LEFT_MLO": {
        "side": "L", "study": 186612141911284718240113217931153474911, "series": 175063493451114611113331822031451023518,
        "abnormalities": [(None, "separate",
                           ["P_00004", "2", "LEFT", "MLO", "1", "mass", "OVAL", "CIRCUMSCRIBED", "3", "BENIGN", "5"])]},
    "Calc-Test_P_00038_RIGHT_MLO": {
        "side": "R", "study": 291203150114191722139413112717236213456, "series": 138611225717126112001815271931421357982,
        "abnormalities": [((30, 10, 40, 22), "crop-first",
                           ["P_00038", "2", "RIGHT", "MLO", "1", "calcification", "PLEOMORPHIC", "CLUSTERED", "4",
                            "BENIGN", "3"]),
                          ((12, 60, 24, 80), "mask-first",
                           ["P_00038", "2", "RIGHT", "MLO", "2", "calcification", "AMORPHOUS", "SEGMENTAL", "5",
                            "MALIGNANT", "2"])]},
}


def _folders(layout: str, case: str, study: str, series: str, date: str, description: str) -> Path:
    if layout == "nbia":
        return Path(case) / f"{date}-DDSM-NA-{study[-5:]}" / f"1.000000-{description}-{series[-5:]}"
    if layout == "classic":
        return Path(case) / study / series
    return Path(f"exported case {hashlib.sha256(case.encode()).hexdigest()[:4]}") / f"{description} {series[-3:]}"


def write_cbis(root: Path, layout: str) -> Path:
    """The three cases above in `layout` ("nbia", "classic", "renamed"); returns the dataset root."""
    tree = root / "CBIS DDSM download" / "manifest-1616439774456" / "CBIS-DDSM" if layout == "nbia" else root / "CBIS-DDSM"
    csv_root = root / "CBIS DDSM download" if layout == "nbia" else root
    rows = {"mass_case_description_train_set.csv": [], "calc_case_description_test_set.csv": []}
    for i, (case, spec) in enumerate(CASES.items()):
        study, series = uid(spec["study"]), uid(spec["series"])
        full = _folders(layout, case, study, series, "07-20-2016", "full mammogram images")
        write_dicom(tree / full / "1-1.dcm", mammogram(H, W, spec["side"], seed=i), series_uid=series,
                    study_uid=study, patient_id=case, description="full mammogram images")
        (tree / full / "._1-1.dcm").write_bytes(b"\x00\x05\x16\x07" + b"\x00" * 40)  # macOS AppleDouble
        for k, (box, roi_layout, cells) in enumerate(spec["abnormalities"], start=1):
            roi_case, roi_study = f"{case}_{k}", uid(spec["study"] + k)
            mask_series = uid(spec["series"] + 10 * k)
            crop_series = mask_series if roi_layout != "separate" else uid(spec["series"] + 10 * k + 1)
            if box is not None:
                _write_roi(tree, layout, roi_case, roi_study, mask_series, crop_series, roi_layout, box, i)
            paths = [f"{case}/{study}/{series}/000000.dcm",
                     f"{roi_case}/{roi_study}/{crop_series}/000000.dcm\n",
                     f"{roi_case}/{roi_study}/{mask_series}/00000{1 if roi_layout != 'separate' else 0}.dcm\n"]
            name = "mass_case_description_train_set.csv" if "Mass" in case else "calc_case_description_test_set.csv"
            rows[name].append([*cells, *paths])
    for name, body in rows.items():
        write_csv(csv_root / name, MASS_HEADER if name.startswith("mass") else CALC_HEADER, body, crlf=True,
                  quote_all=True)
    if layout == "nbia":  # the retriever's own index, which the adapter does not need
        write_csv(tree.parent / "metadata.csv", ["Series UID", "Collection", "Subject ID", "File Location"],
                  [[uid(s["series"]), "CBIS-DDSM", c, f".\\CBIS-DDSM\\{c}"] for c, s in CASES.items()])
    add_clutter(csv_root, "CBIS-DDSM" if layout != "nbia" else "manifest-1616439774456/CBIS-DDSM")
    return csv_root


def _write_roi(tree, layout, roi_case, roi_study, mask_series, crop_series, roi_layout, box, seed) -> None:
    x1, y1, x2, y2 = box
    crop = mammogram(H, W, seed=seed, dtype=np.uint8)[y1:y2, x1:x2]
    roi_mask = mask(H, W, box)
    if roi_layout == "separate":
        folder = _folders(layout, roi_case, roi_study, mask_series, "07-21-2016", "ROI mask images")
        write_dicom(tree / folder / "1-1.dcm", roi_mask, series_uid=mask_series, study_uid=roi_study,
                    patient_id=roi_case, description="ROI mask images")
        crop_folder = _folders(layout, roi_case, roi_study, crop_series, "07-21-2016", "cropped images")
        write_dicom(tree / crop_folder / "1-1.dcm", crop, series_uid=crop_series, study_uid=roi_study,
                    patient_id=roi_case, description="cropped images")
        return
    folder = _folders(layout, roi_case, roi_study, mask_series, "07-21-2016", "ROI mask images")
    first, second = (crop, roi_mask) if roi_layout == "crop-first" else (roi_mask, crop)
    for n, pixels in ((1, first), (2, second)):
        write_dicom(tree / folder / f"1-{n}.dcm", pixels, series_uid=mask_series, study_uid=roi_study,
                    patient_id=roi_case, description="ROI mask images")


EXPECTED = {
    "Mass-Training_P_00001_LEFT_CC": {
        "laterality": "L", "view": "CC", "density": "C", "abnormality": "mass", "mass_shape": "irregular",
        "mass_margin": "spiculated", "birads": 4, "pathology": "malignant", "malignant": True,
        "boxes": [{"box": [10, 20, 30, 44], "label": "mass:malignant"}]},
    "Mass-Training_P_00004_LEFT_MLO": {
        "laterality": "L", "view": "MLO", "density": "B", "abnormality": "mass", "mass_shape": "oval",
        "mass_margin": "circumscribed", "birads": 3, "pathology": "benign", "malignant": False},
    "Calc-Test_P_00038_RIGHT_MLO": {
        "laterality": "R", "view": "MLO", "density": "B", "abnormality": "calcification", "calc_type": "amorphous",
        "calc_distribution": "segmental", "birads": 5, "pathology": "malignant", "malignant": True,
        "boxes": [{"box": [30, 10, 40, 22], "label": "calcification:benign"},
                  {"box": [12, 60, 24, 80], "label": "calcification:malignant"}]},
}


@pytest.fixture(autouse=True)
def fresh_header_cache():
    cbis_ddsm._HEADERS.clear()
    yield
    cbis_ddsm._HEADERS.clear()


@pytest.mark.parametrize("layout", ["nbia", "classic", "renamed"])
def test_every_layout_gives_the_same_samples(tmp_path, layout):
    root = write_cbis(tmp_path, layout)
    found = discovered("cbis_ddsm", root)
    assert not [p for p in found if isinstance(p, SourceProblem)], found
    samples = {s.sample_id: s for s in found}
    assert sorted(samples) == sorted(EXPECTED)
    for case, labels in EXPECTED.items():
        sample = samples[case]
        assert sample.labels == labels, case
        assert sample.missing == ([] if "boxes" in labels else ["roi_mask"])
        assert len(sample.media) == 1 and sample.media[0].name == "1-1.dcm"
        assert cbis_ddsm.dicom_header(sample.media[0]).series_uid == uid(CASES[case]["series"])
        assert sample.dataset_split == ("test" if "-Test_" in case else "train")
        assert sample.patient_id == CASES[case]["abnormalities"][0][2][0]


def test_headers_are_read_without_pixels_once(tmp_path, monkeypatch):
    root = write_cbis(tmp_path, "renamed")
    calls = []
    real = cbis_ddsm.read_dataset

    def counting(path, *, header_only=False, **kw):
        calls.append(header_only)
        return real(path, header_only=header_only, **kw)

    monkeypatch.setattr(cbis_ddsm, "read_dataset", counting)
    first = discovered("cbis_ddsm", root)
    n_dicoms = sum(1 for p in root.rglob("*.dcm") if not p.name.startswith("."))
    assert len(first) == 3 and len(calls) == n_dicoms == 9 and all(calls)
    second = discovered("cbis_ddsm", root)
    assert len(calls) == n_dicoms and [s.labels for s in second] == [s.labels for s in first]


def test_nbia_names_resolve_without_the_header_index(tmp_path, monkeypatch):
    """Descriptive names are matched by their UID suffixes (one header per series confirms): without any
    header index the same samples come out; the index is only consulted for what is absent (case 4's ROI)."""
    root = write_cbis(tmp_path, "nbia")
    monkeypatch.setattr(cbis_ddsm.SeriesIndex, "_header_index", lambda self: {})
    samples = {s.sample_id: s for s in discovered("cbis_ddsm", root)}
    assert {case: s.labels for case, s in samples.items()} == EXPECTED


def test_reexported_series_found_by_patient_id(tmp_path):
    """A full mammogram re-exported with a new SeriesInstanceUID is still its case's only series."""
    root = write_cbis(tmp_path, "renamed")
    case = "Mass-Training_P_00004_LEFT_MLO"
    (path,) = [p for p in root.rglob("1-1.dcm") if cbis_ddsm.dicom_header(p).patient_id == case]
    write_dicom(path, mammogram(H, W, "L", seed=1), series_uid="2.25.1234567", study_uid="2.25.7654321",
                patient_id=case)
    cbis_ddsm._HEADERS.clear()
    samples = {s.sample_id: s for s in discovered("cbis_ddsm", root) if not isinstance(s, SourceProblem)}
    assert samples[case].media == [path] and samples[case].labels == EXPECTED[case]


def test_swapped_roi_and_crop_paths_still_give_the_mask(tmp_path):
    """Some CSV rows give the cropped image's path as the ROI mask's and vice versa."""
    root = write_cbis(tmp_path, "nbia")
    csv = root / "mass_case_description_train_set.csv"
    import pandas as pd

    table = pd.read_csv(csv, dtype=str, keep_default_na=False)
    table[["cropped image file path", "ROI mask file path"]] = table[["ROI mask file path", "cropped image file path"]]
    table.to_csv(csv, index=False)
    samples = {s.sample_id: s for s in discovered("cbis_ddsm", root)}
    assert {case: s.labels for case, s in samples.items()} == EXPECTED


def test_missing_full_mammogram_is_a_row_problem(tmp_path):
    root = write_cbis(tmp_path, "nbia")
    case = "Mass-Training_P_00001_LEFT_CC"
    for path in root.rglob("1-1.dcm"):
        if path.parts[-4] == case:
            path.unlink()
    found = discovered("cbis_ddsm", root)
    problems = [p for p in found if isinstance(p, SourceProblem)]
    assert len(found) == 3 and len(problems) == 1
    assert problems[0].path == "mass_case_description_train_set.csv:2" and "not found" in problems[0].reason


def test_missing_roi_masks_keep_labels_and_drop_only_grounding(tmp_path, monkeypatch):
    """Point 2 end to end: the image without its ROI mask keeps its label tasks, gets no grounding task, and
    the build summary counts it; the images with masks get grounding."""
    from breastgpt.corpus.build import BuildConfig, SourceSpec, build_corpus, load_pseudonymizer

    root = write_cbis(tmp_path / "raw", "nbia")
    monkeypatch.setenv("CBIS_TEST_SECRET", "cbis-conformance-secret-0123456789")
    out = tmp_path / "corpus"
    summary = build_corpus(BuildConfig(out=out, sources=(SourceSpec("cbis_ddsm", root),), secret_env="CBIS_TEST_SECRET"))
    assert summary.accepted and summary.quarantined == 0
    assert summary.sources["cbis_ddsm"]["missing_annotations"] == {"roi_mask": 1}
    assert json.loads((out / "build_summary.json").read_text())["sources"]["cbis_ddsm"]["samples"] == 3
    pseudo = load_pseudonymizer("CBIS_TEST_SECRET")
    records = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
    by_case = {case: [r for r in records if r["study_key"] == pseudo.study_key("cbis_ddsm", case)] for case in CASES}
    grounding = ("grounding", "grounded_caption")
    without = by_case["Mass-Training_P_00004_LEFT_MLO"]
    assert without and not [r for r in without if r["task_family"] in grounding]
    templates = {r["template_id"] for r in without}
    assert {"dx-mam-pathology-choice", "dx-mam-birads-choice", "scr-mam-density-choice", "dx-mam-shape-choice",
            "dx-mam-margin-choice"} <= templates
    with_mask = {r["template_id"] for r in by_case["Mass-Training_P_00001_LEFT_CC"]}
    assert with_mask - templates == {"dx-mam-lesion-grounding", "scr-mam-lesion-grounding",
                                     "dx-mam-region-caption", "scr-mam-region-caption"}
    for case in ("Mass-Training_P_00001_LEFT_CC", "Calc-Test_P_00038_RIGHT_MLO"):
        assert [r for r in by_case[case] if r["task_family"] == "grounding"], case
    assert {r["split"] for r in by_case["Calc-Test_P_00038_RIGHT_MLO"]} == {"bench"}
    assert {r["split"] for r in without} <= {"train", "val"}


def test_mask_problems_found_by_the_item_worker(tmp_path, monkeypatch):
    """ROI masks are decoded by the item workers, not at discovery: an empty mask drops that image's boxes (all of
    them: `box_policy="all"`) and is counted as a missing ROI mask; a mask whose pixel data is cut short
    quarantines only its item, named by key."""
    import pydicom

    from breastgpt.corpus.build import BuildConfig, SourceSpec, build_corpus, load_pseudonymizer

    root = write_cbis(tmp_path / "raw", "nbia")
    (truncated,) = [p for p in root.rglob("1-1.dcm") if "P_00001_LEFT_CC_1" in str(p) and "ROI mask" in str(p)]
    truncated.write_bytes(truncated.read_bytes()[:-200])
    (empty,) = [p for p in root.rglob("1-2.dcm") if "P_00038_RIGHT_MLO_1" in str(p)]  # crop first, mask second
    ds = pydicom.dcmread(empty)
    ds.PixelData = np.zeros_like(ds.pixel_array).tobytes()
    ds.save_as(empty)
    monkeypatch.setenv("CBIS_TEST_SECRET", "cbis-conformance-secret-0123456789")
    out = tmp_path / "corpus"
    summary = build_corpus(BuildConfig(out=out, sources=(SourceSpec("cbis_ddsm", root),),
                                       secret_env="CBIS_TEST_SECRET", allow_partial=True))
    assert summary.quarantined == 1 and summary.sources["cbis_ddsm"]["samples"] == 3
    assert summary.sources["cbis_ddsm"]["missing_annotations"] == {"roi_mask": 2}
    (row,) = [json.loads(line) for line in (out / "quarantine.jsonl").read_text().splitlines()]
    assert "P_00001" not in json.dumps(row) and row["source"] == "cbis_ddsm"
    pseudo = load_pseudonymizer("CBIS_TEST_SECRET")
    records = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
    calc = [r for r in records if r["study_key"] == pseudo.study_key("cbis_ddsm", "Calc-Test_P_00038_RIGHT_MLO")]
    assert calc and not [r for r in calc if r["task_family"] in ("grounding", "grounded_caption")]
    assert not [r for r in records if r["study_key"] == pseudo.study_key("cbis_ddsm", "Mass-Training_P_00001_LEFT_CC")]
