"""Synthetic mammography sources that ship DICOM: CBIS-DDSM, VinDr-Mammo, INbreast, EMBED, RSNA, BMCD."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from breastgpt.synth.cases import SynthConfig, Truth, mammo_case, mammo_size, pick, split_for
from breastgpt.synth.render import render_mammogram
from breastgpt.synth.writers import uid, write_dicom, write_table

CBIS_SHAPE = {"round": "ROUND", "oval": "OVAL", "irregular": "IRREGULAR", "lobulated": "LOBULATED"}
CBIS_MARGIN = {"circumscribed": "CIRCUMSCRIBED", "spiculated": "SPICULATED", "indistinct": "ILL_DEFINED"}
CBIS_CALC = {"punctate": "PUNCTATE", "round_regular": "ROUND_AND_REGULAR", "coarse": "COARSE",
             "fine_pleomorphic": "PLEOMORPHIC", "fine_linear_branching": "FINE_LINEAR_BRANCHING",
             "amorphous": "AMORPHOUS"}
CBIS_DIST = {"grouped": "CLUSTERED", "regional": "REGIONAL", "linear": "LINEAR", "segmental": "SEGMENTAL"}
CBIS_MASS_COLS = ["patient_id", "breast_density", "left or right breast", "image view", "abnormality id",
                  "abnormality type", "mass shape", "mass margins", "assessment", "pathology", "subtlety",
                  "image file path", "cropped image file path", "ROI mask file path"]
CBIS_CALC_COLS = ["patient_id", "breast density", "left or right breast", "image view", "abnormality id",
                  "abnormality type", "calc type", "calc distribution", "assessment", "pathology", "subtlety",
                  "image file path", "cropped image file path", "ROI mask file path"]


def _mammo(rng, config, side, case):
    h, w = mammo_size(config)
    return render_mammogram(rng, h, w, side, case.density, case.abnormality, case.mass_shape or "oval",
                            case.mass_margin or "circumscribed", case.calc_distribution or "grouped")


def _vocab_labels(case, side, view) -> dict:
    labels = {"laterality": side, "view": view, "density": case.density, "birads": case.birads,
              "pathology": case.pathology, "abnormality": case.abnormality,
              "malignant": case.pathology == "malignant"}
    for name in ("mass_shape", "mass_margin", "calc_type", "calc_distribution"):
        if getattr(case, name):
            labels[name] = getattr(case, name)
    return labels


def gen_cbis_ddsm(root: Path, config: SynthConfig) -> list[Truth]:
    rng = np.random.default_rng([config.seed, 1])
    rows = {("mass", "train"): [], ("mass", "test"): [], ("calc", "train"): [], ("calc", "test"): []}
    truths = []
    for i in range(config.patients):
        case = mammo_case(rng, allow_normal=False)
        side, view = pick(rng, ["L", "R"]), pick(rng, ["CC", "MLO"])
        split = split_for(i, config.patients)
        kind = "mass" if case.abnormality == "mass" else "calc"
        folder = f"{'Mass' if kind == 'mass' else 'Calc'}-{'Training' if split == 'train' else 'Test'}_P_{i + 1:05d}_" \
                 f"{'LEFT' if side == 'L' else 'RIGHT'}_{view}"
        image, findings = _mammo(rng, config, side, case)
        full_csv, full_file = _tcia_series(root, folder, "full mammogram images", [image], rng)
        box = findings[0].box
        mask = findings[0].mask.astype(np.uint8) * 255
        crop = image[box[1]:box[3], box[0]:box[2]]
        order = [crop, mask] if rng.random() < 0.5 else [mask, crop]  # TCIA stores them in either order
        roi_csv, _ = _tcia_series(root, folder + "_1", "ROI mask images", order, rng)
        rows[(kind, split)].append(_cbis_row(kind, i, case, side, view, full_csv, roi_csv))
        labels = _vocab_labels(case, side, view)
        labels["boxes"] = [{"box": box, "label": f"{case.abnormality}:{case.pathology}"}]
        truths.append(Truth(folder, labels, split, image.shape[1], image.shape[0], [full_file]))
    for (kind, split), table in rows.items():
        cols = CBIS_MASS_COLS if kind == "mass" else CBIS_CALC_COLS
        write_table(root / f"{kind}_case_description_{split}_set.csv", table, columns=cols)
    return truths


def _tcia_series(root: Path, folder: str, description: str, images: list[np.ndarray], rng) -> tuple[str, Path]:
    """Write one series the way the NBIA retriever lays it out; return (CSV-style path, first file)."""
    study, series = uid(f"cbis-study:{folder}"), uid(f"cbis-series:{folder}")
    series_dir = root / "CBIS-DDSM" / folder / f"07-20-2016-DDSM-{study[-5:]}" / f"1.000000-{description}-{series[-5:]}"
    first = None
    for n, pixels in enumerate(images, start=1):
        path = write_dicom(series_dir / f"1-{n}.dcm", pixels, key=f"{folder}:{n}", study_uid=study, series_uid=series,
                           series_description=description, patient_id=folder,
                           photometric="MONOCHROME2")
        first = first or path
    names = "000000.dcm" if len(images) == 1 else "000001.dcm"
    return f"{folder}/{study}/{series}/{names}", first


def _cbis_row(kind, i, case, side, view, full_csv, roi_csv) -> dict:
    row = {"patient_id": f"P_{i + 1:05d}", "left or right breast": "LEFT" if side == "L" else "RIGHT",
           "image view": view, "abnormality id": 1, "assessment": case.birads,
           "pathology": "MALIGNANT" if case.pathology == "malignant" else "BENIGN", "subtlety": 3,
           "image file path": full_csv, "cropped image file path": roi_csv.replace("000001", "000000"),
           "ROI mask file path": roi_csv}
    density = "ABCD".index(case.density) + 1
    if kind == "mass":
        row.update({"breast_density": density, "abnormality type": "mass",
                    "mass shape": CBIS_SHAPE[case.mass_shape], "mass margins": CBIS_MARGIN[case.mass_margin]})
    else:
        row.update({"breast density": density, "abnormality type": "calcification",
                    "calc type": CBIS_CALC[case.calc_type], "calc distribution": CBIS_DIST[case.calc_distribution]})
    return row


def _boxes(case, findings) -> list[dict]:
    return [{"box": f.box, "label": label_for(case)} for f in findings]


def label_for(case) -> str:
    return {"mass": "mass", "calcification": "suspicious calcification"}.get(case.abnormality, case.abnormality)


def gen_vindr_mammo(root: Path, config: SynthConfig) -> list[Truth]:
    rng = np.random.default_rng([config.seed, 2])
    breast_rows, finding_rows, truths = [], [], []
    for i in range(config.patients):
        case = mammo_case(rng)
        study = uid(f"vindr-study:{config.seed}:{i}").replace(".", "")[-32:]
        side, view = pick(rng, ["L", "R"]), pick(rng, ["CC", "MLO"])
        split = split_for(i, config.patients)
        image_id = uid(f"vindr-image:{config.seed}:{i}").replace(".", "")[-32:]
        image, findings = _mammo(rng, config, side, case)
        path = write_dicom(root / "images" / study / f"{image_id}.dicom", image, key=image_id, laterality=side,
                           view=view, window=(2048, 4096), photometric=pick(rng, ["MONOCHROME1", "MONOCHROME2"]))
        common = {"study_id": study, "series_id": uid(f"vs:{image_id}"), "image_id": image_id, "laterality": side,
                  "view_position": view, "height": image.shape[0], "width": image.shape[1],
                  "breast_birads": f"BI-RADS {case.birads}", "breast_density": f"DENSITY {case.density}",
                  "split": "training" if split == "train" else "test"}
        breast_rows.append(common)
        labels = {"laterality": side, "view": view, "birads": case.birads, "density": case.density,
                  "abnormality": case.abnormality, "boxes": []}
        if findings:
            x1, y1, x2, y2 = findings[0].box
            name = {"mass": "Mass", "calcification": "Suspicious Calcification"}[case.abnormality]
            finding_rows.append(dict(common, finding_categories=str([name]), finding_birads=f"BI-RADS {case.birads}",
                                     xmin=float(x1), ymin=float(y1), xmax=float(x2), ymax=float(y2)))
            labels["boxes"] = [{"box": [x1, y1, x2, y2], "label": name.lower()}]
        else:
            finding_rows.append(dict(common, finding_categories="['No Finding']", finding_birads="",
                                     xmin="", ymin="", xmax="", ymax=""))
        truths.append(Truth(image_id, labels, split, image.shape[1], image.shape[0], [path]))
    write_table(root / "breast-level_annotations.csv", breast_rows)
    write_table(root / "finding_annotations.csv", finding_rows)
    return truths


def _plist_roi(name: str, mask: np.ndarray) -> str:
    from scipy import ndimage

    edge = mask & ~ndimage.binary_erosion(mask)
    ys, xs = np.nonzero(edge)
    points = "".join(f"<string>({x}.000000, {y}.000000)</string>" for x, y in zip(xs, ys))
    return (f"<dict><key>Name</key><string>{name}</string><key>NumberOfPoints</key><integer>{len(xs)}</integer>"
            f"<key>Point_px</key><array>{points}</array></dict>")


def gen_inbreast(root: Path, config: SynthConfig) -> list[Truth]:
    from breastgpt.synth.writers import write_text

    rng = np.random.default_rng([config.seed, 3])
    rows, truths = [], []
    for i in range(config.patients):
        case = mammo_case(rng)
        side, view = pick(rng, ["L", "R"]), pick(rng, ["CC", "MLO"])
        file_id = str(20586000 + i)
        patient_hash = uid(f"inb:{config.seed}:{i}").replace(".", "")[-16:]
        image, findings = _mammo(rng, config, side, case)
        path = write_dicom(root / "AllDICOMs" / f"{file_id}_{patient_hash}_MG_{side}_{view}_ANON.dcm", image,
                           key=file_id, laterality=side, view=view, window=(2048, 4096))
        birads = {4: pick(rng, ["4a", "4b", "4c"])}.get(case.birads, str(case.birads))
        rows.append({"Patient ID": "removed", "Patient age": "removed", "Laterality": side, "View": view,
                     "Acquisition date": "201001", "File Name": file_id, "ACR": "ABCD".index(case.density) + 1,
                     "Bi-Rads": birads})
        labels = {"laterality": side, "view": view, "birads": case.birads, "density": case.density}
        if findings:
            name = "Mass" if case.abnormality == "mass" else "Cluster"
            rois = _plist_roi(name, findings[0].mask)
            labels["boxes"] = [{"box": findings[0].box, "label": name.lower()}]
            labels["abnormality"] = case.abnormality
        else:
            rois, labels["boxes"], labels["abnormality"] = "", [], "none"
        write_text(root / "AllXML" / f"{file_id}.xml",
                   '<?xml version="1.0" encoding="UTF-8"?>\n<plist version="1.0"><dict><key>Images</key><array><dict>'
                   f"<key>ImageIndex</key><integer>0</integer><key>ROIs</key><array>{rois}</array></dict></array>"
                   "</dict></plist>\n")
        truths.append(Truth(file_id, labels, None, image.shape[1], image.shape[0], [path]))
    write_table(root / "INbreast.csv", rows, sep=";")
    return truths


def gen_rsna_screening(root: Path, config: SynthConfig) -> list[Truth]:
    rng = np.random.default_rng([config.seed, 4])
    rows, truths = [], []
    for i in range(config.patients):
        case = mammo_case(rng)
        patient, image_id = str(10006 + i * 7), str(462822612 + i * 1013)
        side, view = pick(rng, ["L", "R"]), pick(rng, ["CC", "MLO"])
        image, _ = _mammo(rng, config, side, case)
        path = write_dicom(root / "train_images" / patient / f"{image_id}.dcm", image, key=image_id,
                           laterality=side, view=view, window=(2048, 4096), photometric=pick(rng, ["MONOCHROME1", "MONOCHROME2"]))
        cancer, biopsy = int(case.pathology == "malignant"), int(case.pathology != "normal")
        birads = case.birads if case.birads <= 2 else ""
        rows.append({"site_id": 2, "patient_id": patient, "image_id": image_id, "laterality": side, "view": view,
                     "age": 61.0, "cancer": cancer, "biopsy": biopsy, "invasive": cancer, "BIRADS": birads,
                     "implant": 0, "density": case.density, "machine_id": 49, "difficult_negative_case": False})
        labels = {"laterality": side, "view": view, "density": case.density, "malignant": bool(cancer)}
        if birads != "":
            labels["birads"] = birads
        if case.pathology != "normal":
            labels["pathology"] = case.pathology
        truths.append(Truth(f"{patient}__{image_id}", labels, "train", image.shape[1], image.shape[0], [path]))
    write_table(root / "train.csv", rows)
    return truths


EMBED_ASSES = {0: "A", 1: "N", 2: "B", 3: "P", 4: "S", 5: "M", 6: "K"}


def gen_embed(root: Path, config: SynthConfig) -> list[Truth]:
    from breastgpt.corpus.sources.base import hashed_id

    rng = np.random.default_rng([config.seed, 5])
    meta_rows, clinical_rows, truths = [], [], []
    for i in range(config.patients):
        case = mammo_case(rng)
        empi, acc = str(10000000 + i * 37), str(60000000 + i * 53)
        side, view = pick(rng, ["L", "R"]), pick(rng, ["CC", "MLO"])
        image, findings = _mammo(rng, config, side, case)
        rel = f"cohort_1/{empi}/{acc}/{uid(f'embed:{i}')}.dcm"
        path = write_dicom(root / "images" / rel, image, key=rel, laterality=side, view=view, window=(2048, 4096))
        rois = "()" if not findings else str(((findings[0].box[1], findings[0].box[0], findings[0].box[3],
                                               findings[0].box[2]),))
        anon = f"/mnt/NAS2/mammo/anon_dicom/{rel}"
        meta_rows.append({"empi_anon": empi, "acc_anon": acc, "anon_dicom_path": anon, "ImageLateralityFinal": side,
                          "ViewPosition": view, "FinalImageType": "2D", "ROI_coords": rois,
                          "num_roi": len(findings), "Rows": image.shape[0], "Columns": image.shape[1]})
        severity = {"malignant": 0, "benign": 4, "normal": ""}[case.pathology]
        clinical_rows.append({"empi_anon": empi, "acc_anon": acc, "side": side, "asses": EMBED_ASSES[case.birads],
                              "tissueden": "ABCD".index(case.density) + 1, "path_severity": severity, "numfind": 1})
        labels = {"laterality": side, "view": view, "birads": case.birads, "density": case.density}
        if case.pathology != "normal":
            labels.update(pathology=case.pathology, malignant=case.pathology == "malignant")
        if findings:
            labels["boxes"] = [{"box": findings[0].box, "label": "roi"}]
        truths.append(Truth(hashed_id("embed", anon), labels, None, image.shape[1], image.shape[0], [path]))
    write_table(root / "tables" / "EMBED_OpenData_metadata.csv", meta_rows)
    write_table(root / "tables" / "EMBED_OpenData_clinical.csv", clinical_rows)
    return truths


def gen_bmcd(root: Path, config: SynthConfig) -> list[Truth]:
    from breastgpt.synth.writers import write_workbook

    rng = np.random.default_rng([config.seed, 6])
    sheets: dict[str, list] = {"Normal": [], "Suspicious": []}
    truths = []
    for i in range(config.patients):
        case = mammo_case(rng)
        group = "Normal" if case.pathology == "normal" else "Suspicious"
        folder = f"{i + 1}"
        sheets[group].append({"Case": folder, "Age": 55, "Density": "ABCD".index(case.density) + 1,
                              "BIRADS": case.birads, "Pathology": case.pathology.capitalize()})
        for exam in ("recent", "prior"):
            side, view = pick(rng, ["L", "R"]), pick(rng, ["CC", "MLO"])
            image, _ = _mammo(rng, config, side, case)
            name = f"{side}_{view}"
            path = write_dicom(root / f"{group}_cases" / folder / exam / f"{name}.dcm", image,
                               key=f"bmcd:{i}:{exam}", laterality=side, view=view, window=(2048, 4096))
            labels = {"birads": case.birads, "density": case.density, "pathology": case.pathology,
                      "malignant": case.pathology == "malignant", "laterality": side, "view": view}
            truths.append(Truth(f"{group}_cases__{folder}__{exam}__{name}", labels, None, image.shape[1],
                                image.shape[0], [path]))
    write_workbook(root / "Description.xlsx", sheets, ["Case", "Age", "Density", "BIRADS", "Pathology"])
    return truths
