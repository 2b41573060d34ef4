"""Every adapter on a download as its users have it (issue 28 point 1), CBIS-DDSM in its own module.

Each fixture is written from the dataset's published description (file and folder names of its download tool,
table columns and separators, value spellings), with the clutter real copies carry (LICENSE/README, .DS_Store,
AppleDouble `._*` files, Windows line ends, spaces in folder names) and, where users commonly lack a part, that
part removed: the expected result says what is kept and what is lost. Files are written with pydicom, Pillow,
nibabel and pandas here, never through `breastgpt.synth`. Layouts the project could not check against a
published description (DMID, BMCD, BUS-CoT, HISTAI-breast: docs/sources.md marks them "assumed") follow the
adapter's documented layout and are named as such.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from breastgpt.corpus.sources import ADAPTERS, SourceProblem
from tests.corpus.fixtures import discovered
from tests.corpus.sources.layouts import add_clutter, mammogram, mask, write_csv, write_dicom, write_image, write_xlsx

TESTED_HERE = {"vindr_mammo", "inbreast", "embed", "rsna_screening", "csaw_m", "cdd_cesm", "dmid", "kau_bcmd",
               "mias", "bmcd", "busi", "bus_cot", "ct_rate", "tcga_brca", "bcnb", "histai_breast", "institutional",
               "mri_cohort_a", "mri_cohort_b", "ct_cohort", "pathway_cohort"}


def _discover(name: str, root: Path) -> tuple[dict, list[SourceProblem]]:
    found = discovered(name, root)
    problems = [f for f in found if isinstance(f, SourceProblem)]
    return {s.sample_id: s for s in found if not isinstance(s, SourceProblem)}, problems


def test_every_adapter_has_a_conformance_fixture():
    assert TESTED_HERE | {"cbis_ddsm"} == set(ADAPTERS)


# ------------------------------------------------------------------------------------------------ VinDr-Mammo

VINDR_BREAST = ["study_id", "series_id", "image_id", "laterality", "view_position", "height", "width",
                "breast_birads", "breast_density", "split"]
VINDR_FINDING = [*VINDR_BREAST[:9], "finding_categories", "finding_birads", "xmin", "ymin", "xmax", "ymax", "split"]


def _vindr(tmp_path: Path) -> tuple[Path, Path]:
    """A PhysioNet wget mirror: physionet.org/files/vindr-mammo/1.0.0/{images,*.csv,LICENSE.txt,SHA256SUMS.txt}."""
    top = tmp_path / "physionet.org"
    base = top / "files" / "vindr-mammo" / "1.0.0"
    studies = [("b8ee27e6bb2e0dd7a6a0ee0de3a9ef1a", "4e3a578fe535ea4f5258d3f7f4419db8", "L", "CC", "BI-RADS 4",
                "DENSITY C", "training"),
               ("b8ee27e6bb2e0dd7a6a0ee0de3a9ef1a", "dac39351b0f3a8c670b7f8dc88029364", "R", "MLO", "BI-RADS 1",
                "DENSITY C", "training"),
               ("0025a7d9d3b8e8a1d4b7b7e7f9b2a2f0", "1d6e2f4b3a9b8c7d6e5f4a3b2c1d0e9f", "L", "MLO", "BI-RADS 2",
                "DENSITY B", "test")]
    rows, findings = [], []
    for i, (study, image, side, view, birads, density, split) in enumerate(studies):
        write_dicom(base / "images" / study / f"{image}.dicom", mammogram(80, 60, side, seed=i),
                    series_uid=f"2.25.{i + 10}", study_uid=f"2.25.{i + 20}", patient_id=study)
        rows.append([study, f"series{i}", image, side, view, "80", "60", birads, density, split])
    findings.append([*rows[0][:9], "['Mass', 'Suspicious Calcification']", "BI-RADS 4", "10.25", "20.5", "30.75",
                     "44.0", "training"])
    findings.append([*rows[1][:9], "['No Finding']", "", "", "", "", "", "training"])
    findings.append([*rows[2][:9], "['No Finding']", "", "", "", "", "", "test"])
    write_csv(base / "breast-level_annotations.csv", VINDR_BREAST, rows)
    write_csv(base / "finding_annotations.csv", VINDR_FINDING, findings)
    write_csv(base / "metadata.csv", ["SOP Instance UID", "Series Instance UID"], [["2.25.1", "2.25.10"]])
    (base / "SHA256SUMS.txt").write_text("0" * 64 + "  breast-level_annotations.csv\n")
    add_clutter(base, "images")
    return top, base


def test_vindr_mammo_physionet_mirror(tmp_path):
    top, _ = _vindr(tmp_path)
    samples, problems = _discover("vindr_mammo", top)
    assert problems == [] and len(samples) == 3
    first = samples["4e3a578fe535ea4f5258d3f7f4419db8"]
    assert first.labels == {"laterality": "L", "view": "CC", "birads": 4, "density": "C", "abnormality": "mass",
                            "boxes": [{"box": [10, 20, 31, 44], "label": "mass; suspicious calcification"}]}
    assert samples["dac39351b0f3a8c670b7f8dc88029364"].labels["boxes"] == []
    assert [s.dataset_split for s in samples.values()].count("test") == 1 and all(not s.missing for s in samples.values())


def test_vindr_mammo_without_finding_table_keeps_breast_labels(tmp_path):
    top, base = _vindr(tmp_path)
    (base / "finding_annotations.csv").unlink()
    samples, problems = _discover("vindr_mammo", top)
    assert problems == [] and len(samples) == 3
    first = samples["4e3a578fe535ea4f5258d3f7f4419db8"]
    assert first.labels == {"laterality": "L", "view": "CC", "birads": 4, "density": "C"}
    assert all(s.missing == ["finding_annotations"] for s in samples.values())


# ------------------------------------------------------------------------------------------------ INbreast

INBREAST_XML = """<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple Computer//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0">
<dict>
\t<key>Images</key>
\t<array>
\t\t<dict>
\t\t\t<key>ImageIndex</key>
\t\t\t<integer>0</integer>
\t\t\t<key>NumberOfROIs</key>
\t\t\t<integer>1</integer>
\t\t\t<key>ROIs</key>
\t\t\t<array>
\t\t\t\t<dict>
\t\t\t\t\t<key>Area</key>
\t\t\t\t\t<real>120.5</real>
\t\t\t\t\t<key>Name</key>
\t\t\t\t\t<string>Mass</string>
\t\t\t\t\t<key>NumberOfPoints</key>
\t\t\t\t\t<integer>3</integer>
\t\t\t\t\t<key>Point_mm</key>
\t\t\t\t\t<array>
\t\t\t\t\t\t<string>(1.2, 2.4)</string>
\t\t\t\t\t</array>
\t\t\t\t\t<key>Point_px</key>
\t\t\t\t\t<array>
\t\t\t\t\t\t<string>(12.5, 20.25)</string>
\t\t\t\t\t\t<string>(30.75, 22.0)</string>
\t\t\t\t\t\t<string>(20.0, 41.5)</string>
\t\t\t\t\t</array>
\t\t\t\t</dict>
\t\t\t</array>
\t\t</dict>
\t</array>
</dict>
</plist>
"""


def _inbreast(tmp_path: Path) -> Path:
    root = tmp_path / "INbreast Release 1.0"
    names = [("22678622", "61b13c59bcba149e", "R", "CC", "4", "4a"), ("22678646", "61b13c59bcba149e", "R", "MLO",
                                                                      "4", "4a"),
             ("20586908", "6c613a14b80a8591", "L", "CC", "", "1")]
    rows = []
    for i, (file_id, patient, side, view, acr, birads) in enumerate(names):
        write_dicom(root / "AllDICOMs" / f"{file_id}_{patient}_MG_{side}_{view}_ANON.dcm",
                    mammogram(64, 48, side, seed=i), series_uid=f"2.25.{i + 1}", study_uid="2.25.9", patient_id="")
        rows.append(["removed", "removed", side, view, "200101", file_id, acr, birads])
    (root / "AllXML").mkdir()
    (root / "AllXML" / "22678622.xml").write_text(INBREAST_XML.replace("\n", "\r\n"))
    write_csv(root / "INbreast.csv", ["Patient ID", "Patient age", "Laterality", "View", "Acquisition date",
                                      "File Name", "ACR", "Bi-Rads"], rows, sep=";", crlf=True)
    (root / "MedicalReports").mkdir()
    add_clutter(root, "AllDICOMs", "AllXML")
    return root


def test_inbreast_release_folder(tmp_path):
    root = _inbreast(tmp_path)
    samples, problems = _discover("inbreast", tmp_path)  # pointed at the folder above the release
    assert problems == [] and sorted(samples) == ["20586908", "22678622", "22678646"]
    assert samples["22678622"].labels == {"laterality": "R", "view": "CC", "birads": 4, "density": "D",
                                          "abnormality": "mass", "boxes": [{"box": [12, 20, 31, 42], "label": "mass"}]}
    assert samples["20586908"].labels == {"laterality": "L", "view": "CC", "birads": 1}
    assert samples["22678622"].patient_id == samples["22678646"].patient_id == "61b13c59bcba149e"
    shutil.rmtree(root / "AllXML")
    samples, _ = _discover("inbreast", root)
    assert "boxes" not in samples["22678622"].labels and samples["22678622"].labels["birads"] == 4
    assert all(s.missing == ["roi_contour"] for s in samples.values())


# ------------------------------------------------------------------------------------------------ EMBED


def test_embed_open_data(tmp_path):
    root = tmp_path / "EMBED"
    rows, clinical = [], []
    for i, (empi, acc, side, view, roi) in enumerate([("10000879", "6333399509185024", "L", "CC", "((20, 10, 44, 30),)"),
                                                      ("10000879", "6333399509185024", "R", "MLO", ""),
                                                      ("10002312", "8921737104419327", "L", "MLO", "()")]):
        server = f"/mnt/NAS2/mammo/anon_dicom/cohort_1/{empi}/{acc}/1.2.845.113684.{i}.dcm"
        write_dicom(root / "images" / "cohort_1" / empi / acc / f"1.2.845.113684.{i}.dcm", mammogram(64, 48, side, i),
                    series_uid=f"2.25.{i + 1}", study_uid=f"2.25.{i + 5}", patient_id=empi)
        rows.append([empi, acc, server, side, view, "2D", roi, "64", "48", ""])
    clinical += [["10000879", "6333399509185024", "L", "S", "3", "0"], ["10000879", "6333399509185024", "R", "N", "3", ""],
                 ["10002312", "8921737104419327", "B", "B", "2", ""]]
    write_csv(root / "tables" / "EMBED_OpenData_metadata.csv",
              ["empi_anon", "acc_anon", "anon_dicom_path", "ImageLateralityFinal", "ViewPosition", "FinalImageType",
               "ROI_coords", "Rows", "Columns", "spot_mag"], rows)
    write_csv(root / "tables" / "EMBED_OpenData_clinical.csv",
              ["empi_anon", "acc_anon", "side", "asses", "tissueden", "path_severity"], clinical)
    add_clutter(root, "images")
    samples, problems = _discover("embed", root)
    assert problems == [] and len(samples) == 3
    by_side = {(s.labels["laterality"], s.labels["view"]): s for s in samples.values()}
    assert by_side[("L", "CC")].labels == {"laterality": "L", "view": "CC", "birads": 4, "density": "C",
                                           "pathology": "malignant", "malignant": True,
                                           "boxes": [{"box": [10, 20, 30, 44], "label": "roi"}]}
    assert by_side[("R", "MLO")].labels == {"laterality": "R", "view": "MLO", "birads": 1, "density": "C"}
    assert by_side[("L", "MLO")].labels == {"laterality": "L", "view": "MLO", "birads": 2, "density": "B"}
    assert not any(s.sample_id in ("10000879", "6333399509185024") for s in samples.values())


# ------------------------------------------------------------------------------------------------ RSNA


def test_rsna_kaggle_download(tmp_path):
    root = tmp_path / "rsna-breast-cancer-detection"
    header = ["site_id", "patient_id", "image_id", "laterality", "view", "age", "cancer", "biopsy", "invasive",
              "BIRADS", "implant", "density", "machine_id", "difficult_negative_case"]
    rows = [["2", "10006", "462822612", "L", "CC", "61.0", "0", "0", "0", "", "0", "", "29", "False"],
            ["2", "10006", "1459541791", "L", "MLO", "61.0", "1", "1", "1", "0", "0", "B", "29", "False"],
            ["1", "10011", "220375232", "R", "AT", "55.0", "0", "1", "0", "1", "0", "C", "21", "True"],
            ["1", "10011", "999999999", "R", "CC", "55.0", "0", "0", "0", "2", "0", "C", "21", "False"]]
    for i, row in enumerate(rows[:3]):
        write_dicom(root / "train_images" / row[1] / f"{row[2]}.dcm", mammogram(64, 48, row[3], seed=i),
                    series_uid=f"2.25.{i + 1}", study_uid="2.25.9", patient_id=row[1])
    write_csv(root / "train.csv", header, rows, crlf=True)
    write_csv(root / "test.csv", ["site_id", "patient_id", "image_id", "laterality", "view", "age", "implant",
                                  "machine_id", "prediction_id"], [["2", "10008", "736471439", "L", "MLO", "81", "0",
                                                                    "21", "10008_L"]])
    write_csv(root / "sample_submission.csv", ["prediction_id", "cancer"], [["10008_L", "0"]])
    add_clutter(root, "train_images")
    samples, problems = _discover("rsna_screening", root)
    assert len(samples) == 3 and len(problems) == 1 and problems[0].path == "train.csv:5"  # image not downloaded
    assert samples["10006__1459541791"].labels == {"laterality": "L", "view": "MLO", "birads": 0, "density": "B",
                                                   "malignant": True, "pathology": "malignant"}
    assert samples["10006__462822612"].labels == {"laterality": "L", "view": "CC", "malignant": False}
    assert samples["10011__220375232"].labels == {"laterality": "R", "view": "other", "birads": 1, "density": "C",
                                                  "malignant": False, "pathology": "benign"}


# ------------------------------------------------------------------------------------------------ CSAW-M

CSAW_HEADER = ["Filename", "Label", "Expert_1", "Expert_2", "Expert_3", "Expert_4", "Expert_5", "If_cancer",
               "If_interval_cancer", "If_large_invasive_cancer", "If_composite", "Dicom_image_laterality",
               "Dicom_window_center", "Dicom_window_width", "Dicom_photometric_interpretation",
               "Libra_percent_density", "Libra_dense_area", "Libra_breast_area"]


def test_csaw_m_release(tmp_path):
    root = tmp_path / "CSAW-M"
    train = [["_101_2061435803_L_1.png", "3", "3", "2", "3", "4", "3", "0", "0", "0", "0", "L", "2047", "4096",
              "MONOCHROME2", "12.5", "15.2", "121.6"],
             ["_102_3402251092_R_2.png", "7", "7", "8", "6", "7", "7", "1", "1", "0", "0", "R", "2047", "4096",
              "MONOCHROME2", "40.1", "50.2", "125.2"]]
    test = [["_201_1293745128_L_1.png", "", "5", "6", "4", "5", "6", "0", "0", "0", "0", "L", "2047", "4096",
             "MONOCHROME2", "22.0", "20.0", "90.9"]]
    for split, rows in (("train", train), ("test", test)):
        write_csv(root / "labels" / f"CSAW-M_{split}.csv", CSAW_HEADER, rows, sep=";", crlf=True)
        for i, row in enumerate(rows):
            write_image(root / "images" / "preprocessed" / split / row[0], mammogram(64, 48, row[11], i, np.uint8))
    add_clutter(root, "images/preprocessed/train")
    samples, problems = _discover("csaw_m", root)
    assert problems == [] and len(samples) == 3
    assert samples["_101_2061435803_L_1"].labels == {"masking_level": 3, "laterality": "L"}
    assert samples["_201_1293745128_L_1"].labels == {"masking_level": 5, "laterality": "L"}  # median of experts
    assert {s.dataset_split for s in samples.values()} == {"train", "test"}


# ------------------------------------------------------------------------------------------------ CDD-CESM

CDD_HEADER = ["Image_name", "Patient_ID", "Side", "Type", "Age", "Breast density (ACR)", "BIRADS", "Findings",
              "View", "Tags", "Machine", "Pathology Classification/ Follow up"]


def test_cdd_cesm_tcia_package(tmp_path):
    root = tmp_path / "CDD-CESM"
    images = root / "PKG - CDD-CESM" / "CDD-CESM" / "Low energy images of CDD-CESM"
    subtracted = root / "PKG - CDD-CESM" / "CDD-CESM" / "Subtracted images of CDD-CESM"
    rows = [["P1_L_DM_MLO", "1", "L", "DM", "46", "C", "4", "Irregular spiculated mass, upper outer quadrant",
             "MLO", "mass", "GE", "Malignant"],
            ["P1_L_CM_MLO", "1", "L", "CESM", "46", "C", "4", "Enhancing mass", "MLO", "mass", "GE", "Malignant"],
            ["P2_R_DM_CC ", "2", "R", "DM", "51", "B", "1", "", "CC", "", "Hologic", "Normal"],
            ["P3_R_DM_CC", "3", "R", "DM", "38", "B", "2", "Benign calcifications", "CC", "calc", "GE", "Benign"]]
    write_image(images / "P1_L_DM_MLO.jpg", mammogram(64, 48, "L", 0, np.uint8), "JPEG")
    write_image(images / "P2_R_DM_CC.jpg", mammogram(64, 48, "R", 1, np.uint8), "JPEG")
    write_image(subtracted / "P1_L_CM_MLO.jpg", mammogram(64, 48, "L", 2, np.uint8), "JPEG")
    write_xlsx(root / "Radiology-manual-annotations.xlsx", CDD_HEADER, rows)
    add_clutter(root, "PKG - CDD-CESM/CDD-CESM/Low energy images of CDD-CESM")
    samples, problems = _discover("cdd_cesm", root)
    assert sorted(samples) == ["P1_L_DM_MLO", "P2_R_DM_CC"]
    assert len(problems) == 1 and problems[0].path == "Radiology-manual-annotations.xlsx:5"  # P3 image absent
    assert samples["P1_L_DM_MLO"].labels == {"laterality": "L", "view": "MLO", "birads": 4, "density": "C",
                                             "pathology": "malignant", "malignant": True}
    assert samples["P1_L_DM_MLO"].report == "Irregular spiculated mass, upper outer quadrant"


# ------------------------------------------------------------------------------------------------ DMID (assumed)


def test_dmid_documented_layout(tmp_path):
    root = tmp_path / "DMID"
    write_xlsx(root / "Metadata.xlsx", ["Image name", "Background tissue", "Abnormality class", "Severity", "x", "y",
                                        "Radius"],
               [["IMG001", "G", "CIRC", "B", "20", "30", "8"], ["IMG002", "D", "NORM", "", "", "", ""],
                ["IMG003", "F", "SPIC", "M", "10", "10", "5"]])
    for i, name in enumerate(("IMG001", "IMG002", "IMG003")):
        write_image(root / "TIFF Images" / f"{name}.tif", mammogram(64, 48, "L", i, np.uint8), "TIFF")
    write_image(root / "ROI Masks" / "IMG001_mask.png", mask(64, 48, (12, 22, 28, 38)))
    (root / "Reports").mkdir()
    (root / "Reports" / "IMG001.txt").write_text("Heterogeneously dense breast. Oval circumscribed mass.\r\n")
    add_clutter(root, "TIFF Images")
    samples, problems = _discover("dmid", root)
    assert problems == [] and len(samples) == 3
    assert samples["IMG001"].labels == {"abnormality": "mass", "pathology": "benign", "tissue": "fatty_glandular",
                                        "mass_margin": "circumscribed", "density": "C", "malignant": False,
                                        "boxes": [{"box": [12, 22, 28, 38], "label": "mass"}]}
    assert samples["IMG002"].labels["boxes"] == [] and not samples["IMG002"].missing
    assert samples["IMG003"].missing == ["roi_mask"] and samples["IMG003"].labels["pathology"] == "malignant"


# ------------------------------------------------------------------------------------------------ KAU-BCMD


def test_kau_bcmd_folders(tmp_path):
    root = tmp_path / "KAU-BCMD Dataset"
    for folder, patient, name in (("Birad1", "1", "RCC.jpg"), ("Birad1", "1", "LMLO.JPG"), ("Birad3", "12", "RCC.jpg"),
                                  ("Birad5", "40", "L_MLO.jpg")):
        write_image(root / folder / patient / name, mammogram(40, 30, "L", 0, np.uint8), "JPEG")
    (root / "Birad3" / "12" / "Thumbs.db").write_bytes(b"\x00" * 32)
    add_clutter(root, "Birad1")
    samples, problems = _discover("kau_bcmd", root)
    assert problems == [] and sorted(samples) == ["Birad1__1__LMLO", "Birad1__1__RCC", "Birad3__12__RCC",
                                                  "Birad5__40__L_MLO"]
    assert samples["Birad5__40__L_MLO"].labels == {"birads": 5, "laterality": "L", "view": "MLO"}
    assert samples["Birad1__1__LMLO"].patient_id == samples["Birad1__1__RCC"].patient_id


# ------------------------------------------------------------------------------------------------ mini-MIAS


def test_mini_mias_tarball(tmp_path):
    root = _mkdir(tmp_path / "all-mias")
    for ref in ("mdb001", "mdb002", "mdb005"):
        write_image(root / f"{ref}.pgm", mammogram(1024, 1024, "L", 0, np.uint8), "PPM")  # Pillow writes P5 PGM
    info = ("MIAS MiniMammographic Database\r\n\r\nref  tissue class severity x y radius\r\n"
            "mdb001 G CIRC B 535 425 197\r\nmdb002 G CIRC B 522 280 69\r\nmdb005 F CIRC B 477 133 30\r\n"
            "mdb005 F CIRC B 500 168 26\r\nmdb006 F NORM\r\n")
    (root / "Info.txt").write_text(info)
    (root / "Licence.txt").write_text("see the MIAS licence\r\n")
    add_clutter(root)
    samples, problems = _discover("mias", root)
    assert sorted(samples) == ["mdb001", "mdb002", "mdb005"]
    assert len(problems) == 1 and problems[0].path == "Info.txt:8"  # mdb006.pgm not in this copy
    assert samples["mdb005"].labels["boxes"] == [{"box": [447, 861, 507, 921], "label": "mass"},
                                                 {"box": [474, 830, 526, 882], "label": "mass"}]
    assert samples["mdb005"].labels["laterality"] == "R" and samples["mdb002"].labels["laterality"] == "L"


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


# ------------------------------------------------------------------------------------------------ BMCD (assumed)


def test_bmcd_documented_layout(tmp_path):
    import pandas as pd

    root = tmp_path / "BMCD"
    book = _mkdir(root) / "Description.xlsx"
    with pd.ExcelWriter(book) as writer:
        pd.DataFrame([["1", "1", "B"]], columns=["Case ", "BIRADS", "Density"]).to_excel(writer, sheet_name="Normal", index=False)
        pd.DataFrame([["7", "4", "C", "Malignant"], ["8", "3", "B", "Benign"]],
                     columns=["Case", "BI-RADS", "Density", "Pathology"]).to_excel(writer, sheet_name="Suspicious", index=False)
    for group, case, exam, side, view in (("Normal", "1", "recent", "L", "CC"), ("Suspicious", "7", "recent", "R", "MLO"),
                                          ("Suspicious", "7", "prior", "R", "MLO")):
        write_dicom(root / f"{group}_cases" / case / exam / f"{side}_{view}.dcm", mammogram(40, 30, side, 0),
                    series_uid="2.25.1", study_uid="2.25.2", patient_id=case, laterality=side, view=view)
    add_clutter(root, "Normal_cases")
    samples, problems = _discover("bmcd", root)
    assert len(samples) == 3 and len(problems) == 1 and "Suspicious_cases/8" in problems[0].reason
    recent = samples["Suspicious_cases__7__recent__R_MLO"]
    assert recent.labels == {"birads": 4, "density": "C", "pathology": "malignant", "malignant": True,
                             "laterality": "R", "view": "MLO"}
    assert recent.patient_id == samples["Suspicious_cases__7__prior__R_MLO"].patient_id


# ------------------------------------------------------------------------------------------------ BUSI


def test_busi_kaggle_zip_with_macos_folder(tmp_path):
    root = tmp_path / "archive"
    base = root / "Dataset_BUSI_with_GT"
    write_image(base / "benign" / "benign (1).png", mammogram(40, 50, "L", 0, np.uint8))
    write_image(base / "benign" / "benign (1)_mask.png", mask(40, 50, (5, 6, 15, 16)))
    write_image(base / "benign" / "benign (2).png", mammogram(40, 50, "L", 1, np.uint8))  # mask not downloaded
    write_image(base / "malignant" / "malignant (1).png", mammogram(40, 50, "L", 2, np.uint8))
    write_image(base / "malignant" / "malignant (1)_mask.png", mask(40, 50, (1, 2, 9, 9)))
    write_image(base / "malignant" / "malignant (1)_mask_1.png", mask(40, 50, (20, 20, 30, 30)))
    write_image(base / "normal" / "normal (1).png", mammogram(40, 50, "L", 3, np.uint8))
    write_image(base / "normal" / "normal (1)_mask.png", np.zeros((40, 50), np.uint8))
    (base / "benign" / "._benign (1).png").write_bytes(b"\x00\x05\x16\x07" + b"\x00" * 40)
    _mkdir(root / "__MACOSX" / "Dataset_BUSI_with_GT" / "benign")
    (root / "__MACOSX" / "Dataset_BUSI_with_GT" / "benign" / "._benign (1).png").write_bytes(b"\x00\x05\x16\x07")
    samples, problems = _discover("busi", root)
    assert problems == [] and sorted(samples) == ["benign-1", "benign-2", "malignant-1", "normal-1"]
    assert samples["benign-1"].labels["boxes"] == [{"box": [5, 6, 15, 16], "label": "lesion"}]
    assert samples["benign-2"].labels == {"pathology": "benign", "malignant": False}
    assert samples["benign-2"].missing == ["roi_mask"]
    assert len(samples["malignant-1"].labels["boxes"]) == 2 and samples["normal-1"].labels["boxes"] == []
    shutil.rmtree(base / "benign")  # a copy with only some class folders
    samples, problems = _discover("busi", root)
    assert problems == [] and sorted(samples) == ["malignant-1", "normal-1"]


# ------------------------------------------------------------------------------------------------ BUS-CoT (assumed)


def test_bus_cot_documented_layout(tmp_path):
    root = tmp_path / "BUS-CoT"
    report = {"patient_id": "case 0001", "features": {"shape": "irregular", "margin": "angular",
                                                      "echo_pattern": "hypoechoic", "calcification": "present",
                                                      "blood_flow": "internal"},
              "birads": "4c", "pathology": "malignant", "cot": "Irregular hypoechoic mass with angular margins."}
    folder = root / "test" / "img 0001"
    write_image(folder / "img_0001.png", mammogram(40, 50, "L", 0, np.uint8))
    write_image(folder / "img_0001_mask.png", mask(40, 50, (10, 10, 20, 25)))
    (folder / "img_0001.json").write_text(json.dumps(report).replace("\n", "\r\n"))
    second = root / "train" / "img 0002"
    write_image(second / "img_0002.png", mammogram(40, 50, "L", 1, np.uint8))
    (second / "img_0002.json").write_text(json.dumps({"shape": "oval", "margin": "circumscribed", "birads": "3",
                                                      "pathology": "benign"}))
    add_clutter(root, "test/img 0001")
    samples, problems = _discover("bus_cot", root)
    assert problems == [] and sorted(samples) == ["test__img-0001", "train__img-0002"]
    first = samples["test__img-0001"]
    assert first.labels == {"us_shape": "irregular", "us_margin": "not_circumscribed", "us_echo": "hypoechoic",
                            "us_blood_flow": "internal", "birads": 4, "pathology": "malignant", "us_calcification": True,
                            "malignant": True, "boxes": [{"box": [10, 10, 20, 25], "label": "lesion"}]}
    assert first.dataset_split == "test" and first.report.startswith("Irregular")
    assert samples["train__img-0002"].missing == ["roi_mask"] and "boxes" not in samples["train__img-0002"].labels


# ------------------------------------------------------------------------------------------------ CT-RATE


def test_ct_rate_huggingface_download(tmp_path):
    import nibabel as nib

    from breastgpt.corpus.sources.ct_rate import ABNORMALITIES

    root = tmp_path / "CT-RATE"
    base = root / "dataset"
    names = ["train_1_a_1.nii.gz", "train_1_a_2.nii.gz", "train_2_a_1.nii.gz"]
    for name in names:
        patient, scan = name.split("_")[1], name.split("_")[2]
        folder = _mkdir(base / "train" / f"train_{patient}" / f"train_{patient}_{scan}")
        nib.save(nib.Nifti1Image(np.full((8, 8, 4), -1000, np.int16), np.eye(4)), folder / name)
    labels = [[n, *(["1" if a in ("Lung nodule", "Emphysema") else "0" for a in ABNORMALITIES])] for n in names[:2]]
    write_csv(base / "multi_abnormality_labels" / "train_predicted_labels.csv", ["VolumeName", *ABNORMALITIES], labels)
    write_csv(base / "radiology_text_reports" / "train_reports.csv",
              ["VolumeName", "ClinicalInformation_EN", "Technique_EN", "Findings_EN", "Impressions_EN"],
              [[names[0], "Cough.", "Non-contrast.", "A 5 mm nodule, right upper lobe.\nCentrilobular emphysema.",
                "Nodule; emphysema."]])
    _mkdir(root / ".cache" / "huggingface" / "download")
    (root / ".cache" / "huggingface" / "download" / "train_1_a_1.nii.gz.metadata").write_text("etag\n")
    add_clutter(root)
    samples, problems = _discover("ct_rate", root)
    assert problems == [] and sorted(samples) == ["train_1_a_1", "train_1_a_2", "train_2_a_1"]
    first = samples["train_1_a_1"]
    assert first.labels["ct_abnormalities"]["lung_nodule"] and first.labels["ct_abnormalities"]["emphysema"]
    assert sum(first.labels["ct_abnormalities"].values()) == 2 and len(first.labels["ct_abnormalities"]) == 18
    assert first.report == "Findings: A 5 mm nodule, right upper lobe.\nCentrilobular emphysema.\nImpression: Nodule; emphysema."
    assert first.patient_id == samples["train_1_a_2"].patient_id != samples["train_2_a_1"].patient_id
    assert samples["train_2_a_1"].labels == {}  # no label row: report-free, label-free volume


# ------------------------------------------------------------------------------------------------ TCGA-BRCA


def test_tcga_brca_gdc_client_download(tmp_path, realdata):
    root = tmp_path / "gdc_download_20261205"
    slides = {"TCGA-3C-AAAU-01Z-00-DX1.F3B4818D-2AA9-4E1F-9B91-2D1D1E2A6A20.svs": "CMU-1-Small-Region.svs",
              "TCGA-3C-AALI-01A-01-TS1.A1B2C3D4-0000-4E1F-9B91-2D1D1E2A6A21.svs": "CMU-1-Small-Region.svs",
              "TCGA-ZZ-ZZZZ-01Z-00-DX1.00000000-0000-0000-0000-000000000000.svs": "CMU-1-Small-Region.svs"}
    for i, (name, real) in enumerate(slides.items()):
        folder = _mkdir(root / f"0a1b2c3d-0000-4000-8000-00000000000{i}")
        shutil.copy(realdata / "wsi" / real, folder / name)
        _mkdir(folder / "logs")
        (folder / "logs" / f"{name}.parcel").write_text("parcel log\n")
    (root / "MANIFEST.txt").write_text("id\tfilename\tmd5\tsize\tstate\r\n")
    (root / "annotations.txt").write_text("id\tentity_type\r\n")
    shutil.copy(realdata / "clinical" / "brca_tcga_pan_can_atlas_2018_clinical_data.tsv", root)
    add_clutter(root)
    samples, problems = _discover("tcga_brca", root)
    assert sorted(samples) == ["TCGA-3C-AAAU-01Z-00-DX1", "TCGA-3C-AALI-01A-01-TS1"]
    assert len(problems) == 1 and "no clinical row" in problems[0].reason
    assert samples["TCGA-3C-AAAU-01Z-00-DX1"].labels == {"molecular_subtype": "luminal_a", "histologic_type": "lobular",
                                                         "pathology": "malignant", "malignant": True}
    assert samples["TCGA-3C-AALI-01A-01-TS1"].meta == {"slide_type": "TS"}


# ------------------------------------------------------------------------------------------------ BCNB

BCNB_HEADER = ["Patient ID", "Age(years)", "Tumour Size(cm)", "Tumour Type", "ER", "PR", "HER2", "HER2 Expression",
               "Histological grading", "Surgical", "Ki67", "Molecular subtype", "Number of lymph node metastases",
               "ALN status"]


def test_bcnb_release(tmp_path):
    root = tmp_path / "BCNB"
    rows = [[1, 44, 2.1, "Invasive ductal carcinoma", "Positive", "Positive", "Negative", "1+", 2, "Modified Radical",
             0.3, "Luminal B", 2, "N+(1-2)"],
            [2, 57, 3.0, "Invasive lobular carcinoma", "Negative", "Negative", "Negative", "0", 3, "Breast-conserving",
             0.1, "Triple negative", 0, "N0"],
            [3, 61, 1.5, "Other type", "Positive", "Negative", "Positive", "3+", 2, "Modified Radical", 0.25,
             "HER2(+)", 5, "N+(>2)"]]
    write_xlsx(root / "patient-clinical-data.xlsx", BCNB_HEADER, rows)
    for n in (1, 2):
        write_image(root / "WSIs" / f"{n}.jpg", mammogram(64, 64, "L", n, np.uint8), "JPEG")
        (root / "WSIs" / f"{n}.json").write_text(json.dumps({"positive": [{"name": "Annotation 0", "vertices": [[1, 2]]}]}))
    for split, ids in (("train", "1\r\n"), ("val", "2\r\n"), ("test", "3\r\n")):
        _mkdir(root / "dataset-splitting")
        (root / "dataset-splitting" / f"{split}_id.txt").write_text(ids)
    add_clutter(root, "WSIs")
    samples, problems = _discover("bcnb", root)
    assert sorted(samples) == ["bcnb-1", "bcnb-2"] and len(problems) == 1  # slide 3 not downloaded
    assert samples["bcnb-1"].labels == {"node_status": "n1_2", "pathology": "malignant", "malignant": True, "er": True,
                                        "pr": True, "her2": False, "ki67_high": True, "molecular_subtype": "luminal_b",
                                        "histologic_type": "ductal"}
    assert samples["bcnb-2"].labels["molecular_subtype"] == "basal" and samples["bcnb-2"].dataset_split == "val"


# ------------------------------------------------------------------------------------------------ HISTAI (assumed)


def test_histai_breast_documented_layout(tmp_path, realdata):
    root = tmp_path / "HISTAI-breast"
    for case in ("case_0001", "case_0002"):
        shutil.copy(realdata / "wsi" / "CMU-1-Small-Region.svs", _mkdir(root / case) / "slide_01.tiff")
    write_csv(root / "metadata.csv", ["case_mapping", "diagnosis", "conclusion"],
              [["case_0001", "Invasive carcinoma of no special type, grade 2.", "ER positive."]], crlf=True)
    (root / "case_0002" / "case_0002.json").write_text(json.dumps({"diagnosis": "Fibroadenoma."}))
    add_clutter(root, "case_0001")
    samples, problems = _discover("histai_breast", root)
    assert problems == [] and sorted(samples) == ["case_0001__slide_01", "case_0002__slide_01"]
    assert samples["case_0001__slide_01"].report == "Invasive carcinoma of no special type, grade 2.\nER positive."
    assert samples["case_0002__slide_01"].report == "Fibroadenoma." and samples["case_0002__slide_01"].labels == {}


# ------------------------------------------------------------------------------------------------ institutional


@pytest.mark.parametrize("name", ["institutional", "mri_cohort_a", "mri_cohort_b", "ct_cohort", "pathway_cohort"])
def test_institutional_manifest_from_a_spreadsheet(tmp_path, name):
    import nibabel as nib

    root = tmp_path / "My Cohort 2026"
    for patient in ("patient 01", "patient 02"):
        folder = _mkdir(root / patient)
        nib.save(nib.Nifti1Image(np.zeros((8, 8, 4), np.int16), np.eye(4)), folder / "T1.nii.gz")
    nib.save(nib.Nifti1Image(np.ones((8, 8, 4), np.uint8), np.eye(4)), root / "patient 01" / "lesion mask.nii.gz")
    write_csv(root / "manifest.csv", ["sample", "patient", "study", "modality", "kind", "files", "masks", "split",
                                      "birads", "malignant", "laterality"],
              [["s01", "MRN0001", "ACC0001", "mri", "volume", "patient 01/T1.nii.gz", "patient 01/lesion mask.nii.gz",
                "test", "5", "yes", "L"],
               ["s02", "MRN0002", "ACC0002", "mri", "volume", "patient 02/T1.nii.gz", "patient 02/lesion mask.nii.gz",
                "train", "2", "no", "R"]], crlf=True, quote_all=True)
    add_clutter(root, "patient 01")
    samples, problems = _discover(name, root)
    assert problems == [] and sorted(samples) == ["s01", "s02"]
    assert samples["s01"].labels == {"birads": 5, "malignant": True, "laterality": "L"}
    assert samples["s01"].masks == [root / "patient 01" / "lesion mask.nii.gz"] and samples["s01"].missing == []
    assert samples["s02"].masks == [] and samples["s02"].missing == ["mask"]  # mask not delivered: labels kept
    assert samples["s01"].dataset_split == "test" and samples["s01"].source == name


def test_pathway_manifest_carries_stage_and_date_and_refuses_an_unknown_stage(tmp_path):
    root = tmp_path / "Linked cohort"
    for name in ("screen.png", "us.png"):
        write_image(_mkdir(root / "patient 01") / name, np.full((16, 16), 90, np.uint8))
    columns = ["sample", "patient", "study", "modality", "kind", "files", "stage", "date", "birads"]
    write_csv(root / "manifest.csv", columns,
              [["a", "MRN1", "ACC1", "mammography", "image", "patient 01/screen.png", "screening", "2024-01-05", "4"],
               ["b", "MRN1", "ACC2", "ultrasound", "image", "patient 01/us.png", "diagnosis", "2024-01-19", "4"],
               ["c", "MRN1", "ACC3", "ultrasound", "image", "patient 01/us.png", "surgery", "2024-02-01", "4"]],
              crlf=True)
    samples, problems = _discover("pathway_cohort", root)
    assert sorted(samples) == ["a", "b"]
    assert samples["a"].meta["stage"] == "screening" and samples["b"].meta["date"] == "2024-01-19"
    assert len(problems) == 1 and "stage 'surgery'" in problems[0].reason


# ------------------------------------------------------------------------------------------------ end to end


def test_conformance_downloads_build_and_verify(tmp_path, monkeypatch):
    """The DICOM fixtures through the real normaliser and templates: every case becomes records, nothing is
    quarantined, the build is accepted and `corpus verify` passes."""
    from typer.testing import CliRunner

    from breastgpt.corpus.build import BuildConfig, SourceSpec, build_corpus
    from breastgpt.corpus.cli import app
    from tests.corpus.sources.test_conformance_cbis_ddsm import write_cbis

    vindr, _ = _vindr(tmp_path / "vindr")
    inbreast = _inbreast(tmp_path / "inbreast")
    cbis = write_cbis(tmp_path / "cbis", "nbia")
    monkeypatch.setenv("CONFORMANCE_SECRET", "conformance-secret-0123456789abcdef")
    sources = (SourceSpec("vindr_mammo", vindr), SourceSpec("inbreast", inbreast), SourceSpec("cbis_ddsm", cbis))
    summary = build_corpus(BuildConfig(out=tmp_path / "corpus", sources=sources, secret_env="CONFORMANCE_SECRET"))
    assert summary.accepted and summary.incomplete == [] and summary.quarantined == 0
    assert {name: (row["samples"], row["lost"]) for name, row in summary.sources.items()} == {
        "vindr_mammo": (3, 0), "inbreast": (3, 0), "cbis_ddsm": (3, 0)}
    assert all(row["records"] >= 3 * 10 for row in summary.sources.values())
    verify = CliRunner().invoke(app, ["verify", str(tmp_path / "corpus")])
    assert verify.exit_code == 0, verify.output
