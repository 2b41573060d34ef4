"""Synthetic mammography sources that ship rasters: CSAW-M (PNG), CDD-CESM (JPEG), DMID (TIFF + masks + reports),
KAU-BCMD (JPEG in BI-RADS folders), mini-MIAS (PGM, bottom-left coordinates)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from breastgpt.synth.cases import SynthConfig, Truth, mammo_case, pick, split_for
from breastgpt.synth.mammo_dicom import _mammo
from breastgpt.synth.render import clock_phrase, render_mammogram, size_phrase
from breastgpt.synth.writers import (to_uint8, write_jpeg, write_pgm, write_png, write_table, write_text,
                                     write_tiff)

DENSITY_LEVEL = {"A": (1, 2), "B": (3, 4), "C": (5, 6), "D": (7, 8)}  # denser breasts mask more
DENSITY_TEXT = {"A": "almost entirely fatty", "B": "scattered areas of fibroglandular density",
                "C": "heterogeneously dense", "D": "extremely dense"}


def gen_csaw_m(root: Path, config: SynthConfig) -> list[Truth]:
    rng = np.random.default_rng([config.seed, 7])
    rows = {"train": [], "test": []}
    truths = []
    for i in range(config.patients):
        case = mammo_case(rng, allow_normal=True)
        side = pick(rng, ["L", "R"])
        split = split_for(i, config.patients)
        level = int(rng.choice(DENSITY_LEVEL[case.density]))
        image, _ = _mammo(rng, config, side, case)
        name = f"{split}_{i:05d}.png"
        path = write_png(root / "images" / "preprocessed" / split / name, to_uint8(image))
        experts = {f"Expert_{k}": int(np.clip(level + rng.integers(-1, 2), 1, 8)) for k in range(1, 6)}
        rows[split].append({"Filename": name, "Label": level, **experts, "If_cancer": int(case.pathology == "malignant"),
                            "If_interval_cancer": 0, "If_large_invasive_cancer": 0, "If_composite": 0,
                            "Dicom_image_laterality": side, "Dicom_window_center": 2048, "Dicom_window_width": 4096,
                            "Dicom_photometric_interpretation": "MONOCHROME2",
                            "Libra_percent_density": 10.0 * level, "Libra_dense_area": 1000 * level,
                            "Libra_breast_area": 10000})
        truths.append(Truth(Path(name).stem, {"masking_level": level, "laterality": side}, split,
                            image.shape[1], image.shape[0], [path]))
    for split, table in rows.items():
        write_table(root / "labels" / f"CSAW-M_{split}.csv", table, sep=";",
                    columns=list(table[0]) if table else ["Filename", "Label"])
    return truths


def gen_cdd_cesm(root: Path, config: SynthConfig) -> list[Truth]:
    rng = np.random.default_rng([config.seed, 8])
    rows, truths = [], []
    for i in range(config.patients):
        case = mammo_case(rng)
        side = pick(rng, ["L", "R"])
        for view in ("CC", "MLO"):
            image, _ = _mammo(rng, config, side, case)
            name = f"P{i + 1}_{side}_DM_{view}"
            path = write_jpeg(root / "Low energy images of CDD-CESM" / f"{name}.jpg", to_uint8(image))
            write_jpeg(root / "Subtracted images of CDD-CESM" / f"P{i + 1}_{side}_CM_{view}.jpg",
                       to_uint8(image // 3))
            findings = {"none": "No abnormality", "mass": f"{case.mass_shape} mass with {case.mass_margin} margins",
                        "calcification": f"{case.calc_distribution} {case.calc_type} calcifications"}[case.abnormality]
            pathology = case.pathology.capitalize()
            for kind, image_name in (("DM", name), ("CESM", f"P{i + 1}_{side}_CM_{view}")):
                rows.append({"Image_name": image_name, "Patient_ID": i + 1, "Side": side, "Type": kind, "Age": 50,
                             "Breast density (ACR)": "ABCD"[("ABCD".index(case.density))], "BIRADS": case.birads,
                             "Findings": findings, "View": view, "Tags": "",
                             "Pathology Classification/ Follow up": pathology})
            labels = {"laterality": side, "view": view, "birads": case.birads, "density": case.density,
                      "pathology": case.pathology, "malignant": case.pathology == "malignant"}
            truths.append(Truth(name, labels, None, image.shape[1], image.shape[0], [path]))
    write_table(root / "Radiology-manual-annotations.xlsx", rows, sheet="all")
    return truths


def gen_dmid(root: Path, config: SynthConfig) -> list[Truth]:
    rng = np.random.default_rng([config.seed, 9])
    rows, truths = [], []
    for i in range(config.patients):
        case = mammo_case(rng, abnormalities=("mass", "calcification"))
        side = pick(rng, ["L", "R"])
        name = f"IMG{i + 1:03d}"
        image, findings = _mammo(rng, config, side, case)
        path = write_tiff(root / "TIFF Images" / f"{name}.tif", to_uint8(image))
        klass = {"none": "NORM", "calcification": "CALC"}.get(case.abnormality) or \
            {"circumscribed": "CIRC", "spiculated": "SPIC"}.get(case.mass_margin, "MISC")
        tissue = {"A": "F", "B": "F", "C": "G", "D": "D"}[case.density]
        row = {"Image": name, "Tissue": tissue, "Abnormality": klass,
               "Severity": {"benign": "B", "malignant": "M"}.get(case.pathology, ""), "x": "", "y": "", "radius": ""}
        labels = {"abnormality": case.abnormality, "pathology": case.pathology, "density": case.density,
                  "tissue": {"F": "fatty", "G": "fatty_glandular", "D": "dense_glandular"}[tissue],
                  "malignant": case.pathology == "malignant"}
        if case.abnormality == "mass":
            labels["mass_margin"] = {"CIRC": "circumscribed", "SPIC": "spiculated", "MISC": "indistinct"}[klass]
        if findings:
            write_tiff(root / "ROI Masks" / f"{name}_mask.tif", findings[0].mask.astype(np.uint8) * 255)
            labels["boxes"] = [{"box": findings[0].box, "label": case.abnormality}]
        else:
            labels["boxes"] = []
        write_text(root / "Reports" / f"{name}.txt",
                   f"Breast composition: {DENSITY_TEXT[case.density]}.\nFindings: "
                   f"{'no focal abnormality' if not findings else case.abnormality} in the {'left' if side == 'L' else 'right'} breast"
                   f"{'' if not findings else ' ' + size_phrase(findings[0].mask, 0.1) + ', ' + clock_phrase(rng)}.\n")
        rows.append(row)
        truths.append(Truth(name, labels, None, image.shape[1], image.shape[0], [path]))
    write_table(root / "Metadata.xlsx", rows, sheet="Metadata")
    return truths


def gen_kau_bcmd(root: Path, config: SynthConfig) -> list[Truth]:
    rng = np.random.default_rng([config.seed, 10])
    truths, counters = [], {1: 0, 3: 0, 4: 0, 5: 0}
    for _ in range(config.patients):
        birads = pick(rng, [1, 3, 4, 5])
        counters[birads] += 1
        pathology = {1: "normal", 3: "benign"}.get(birads, "malignant")
        case = mammo_case(rng)
        case.birads, case.pathology = birads, pathology
        if pathology == "normal":
            case.abnormality = "none"
        elif case.abnormality == "none":
            case.abnormality, case.mass_shape, case.mass_margin = "mass", "oval", "circumscribed"
        # KAU-BCMD repeats image names across BI-RADS folders: names restart at 1 in each folder
        patient = str(counters[birads])
        for side, view in (("R", "CC"), ("L", "MLO")):
            image, _ = _mammo(rng, config, side, case)
            rel = Path(f"Birad{birads}") / patient / f"{side}{view}.jpg"
            path = write_jpeg(root / rel, to_uint8(image))
            truths.append(Truth(f"Birad{birads}__{patient}__{side}{view}",
                                {"birads": birads, "laterality": side, "view": view}, None,
                                image.shape[1], image.shape[0], [path]))
    return truths


MIAS_CLASS = {"circumscribed": "CIRC", "spiculated": "SPIC", "indistinct": "MISC"}


def gen_mias(root: Path, config: SynthConfig) -> list[Truth]:
    rng = np.random.default_rng([config.seed, 11])
    lines, truths = ["MIAS database (synthetic)", ""], []
    size = 1024 if config.full_size else 256
    for i in range(config.patients):
        for side in ("R", "L"):  # odd numbers right, even left
            number = 2 * i + (1 if side == "R" else 2)
            ref = f"mdb{number:03d}"
            case = mammo_case(rng, abnormalities=("mass", "calcification"))
            image, findings = render_mammogram(rng, size, size, side, case.density, case.abnormality,
                                               case.mass_shape or "oval", case.mass_margin or "circumscribed")
            path = write_pgm(root / f"{ref}.pgm", to_uint8(image))
            tissue = {"A": "F", "B": "F", "C": "G", "D": "D"}[case.density]
            labels = {"tissue": {"F": "fatty", "G": "fatty_glandular", "D": "dense_glandular"}[tissue],
                      "abnormality": case.abnormality, "laterality": side, "pathology": case.pathology,
                      "malignant": case.pathology == "malignant"}
            if not findings:
                lines.append(f"{ref} {tissue} NORM")
                labels["boxes"] = []
            else:
                klass = "CALC" if case.abnormality == "calcification" else MIAS_CLASS[case.mass_margin]
                x1, y1, x2, y2 = findings[0].box
                cx, cy, r = (x1 + x2) // 2, (y1 + y2) // 2, max(x2 - x1, y2 - y1) // 2 + 1
                lines.append(f"{ref} {tissue} {klass} {'M' if case.pathology == 'malignant' else 'B'} "
                             f"{cx} {size - cy} {r}")  # bottom-left origin, as MIAS writes it
                box = [max(0, cx - r), max(0, cy - r), min(size, cx + r), min(size, cy + r)]
                labels["boxes"] = [{"box": box, "label": case.abnormality}]
                if case.abnormality == "mass":
                    labels["mass_margin"] = case.mass_margin
            truths.append(Truth(ref, labels, None, size, size, [path]))
    write_text(root / "Info.txt", "\n".join(lines) + "\n")
    return truths
