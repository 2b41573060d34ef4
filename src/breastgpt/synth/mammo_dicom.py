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
