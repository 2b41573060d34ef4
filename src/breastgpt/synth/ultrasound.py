"""Synthetic ultrasound sources: BUSI (class folders, `name (n).png` + `_mask.png`, occasional `_mask_1.png`) and
BUS-CoT (per-image folders with raw PNG, mask and structured-report JSON)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from scipy import ndimage

from breastgpt.synth.cases import SynthConfig, Truth, pick, split_for
from breastgpt.synth.render import clock_phrase, mask_to_box, size_phrase
from breastgpt.synth.render_us import render_ultrasound
from breastgpt.synth.writers import write_png, write_text


def us_case(rng) -> dict:
    pathology = pick(rng, ["normal", "benign", "malignant"])
    if pathology == "benign":
        return {"pathology": "benign", "us_shape": pick(rng, ["oval", "round"]), "us_margin": "circumscribed",
                "us_echo": pick(rng, ["anechoic", "hypoechoic", "isoechoic"]), "us_boundary": "abrupt",
                "us_calcification": False, "us_blood_flow": pick(rng, ["none", "rim"]), "birads": pick(rng, [2, 3])}
    if pathology == "malignant":
        return {"pathology": "malignant", "us_shape": "irregular", "us_margin": "not_circumscribed",
                "us_echo": pick(rng, ["hypoechoic", "heterogeneous", "complex"]),
                "us_boundary": pick(rng, ["abrupt", "echogenic_halo"]), "us_calcification": bool(rng.random() < 0.5),
                "us_blood_flow": pick(rng, ["internal", "none"]), "birads": pick(rng, [4, 5])}
    return {"pathology": "normal"}


def _render(rng, case, config):
    h, w = (600, 800) if config.full_size else (240, 320)
    fields = {k: v for k, v in case.items() if k.startswith("us_")}
    return render_ultrasound(rng, h, w, lesion=case["pathology"] != "normal",
                             shadowing=case["pathology"] == "malignant", **fields)


def gen_busi(root: Path, config: SynthConfig) -> list[Truth]:
    rng = np.random.default_rng([config.seed, 12])
    counts = {"benign": 0, "malignant": 0, "normal": 0}
    truths = []
    for _ in range(config.patients):
        case = us_case(rng)
        label = case["pathology"]
        counts[label] += 1
        stem = f"{label} ({counts[label]})"
        rgb, mask, (rx1, ry1, rx2, ry2) = _render(rng, case, config)
        image = write_png(root / "Dataset_BUSI_with_GT" / label / f"{stem}.png", rgb)
        masks, boxes = [mask], [mask_to_box(mask)] if mask.any() else []
        if mask.any() and rng.random() < 0.3:  # a second lesion mask, as some BUSI images have
            second = np.roll(ndimage.binary_erosion(mask, iterations=2), shift=-mask.shape[1] // 4, axis=1)
            inside = np.zeros_like(second)
            inside[ry1:ry2, rx1:rx2] = True
            second &= inside  # never outside the imaging region (the roll can carry it into the margin)
            if second.any():
                masks.append(second)
                boxes.append(mask_to_box(second))
        for k, m in enumerate(masks):
            suffix = "_mask" if k == 0 else f"_mask_{k}"
            write_png(root / "Dataset_BUSI_with_GT" / label / f"{stem}{suffix}.png", (m * 255).astype(np.uint8))
        labels = {"pathology": label, "malignant": label == "malignant",
                  "boxes": [{"box": b, "label": "lesion"} for b in boxes]}
        truths.append(Truth(f"{label}-{counts[label]}", labels, None, rgb.shape[1], rgb.shape[0], [image]))
    return truths


ECHO_TEXT = {"anechoic": "anechoic", "hypoechoic": "hypoechoic", "isoechoic": "isoechoic",
             "hyperechoic": "hyperechoic", "complex": "complex cystic and solid", "heterogeneous": "heterogeneous"}


def gen_bus_cot(root: Path, config: SynthConfig) -> list[Truth]:
    rng = np.random.default_rng([config.seed, 13])
    truths = []
    for i in range(config.patients):
        case = us_case(rng)
        while case["pathology"] == "normal":  # BUS-CoT images all contain a lesion
            case = us_case(rng)
        split = split_for(i, config.patients)
        folder = root / split / f"BUS{i + 1:05d}"
        rgb, mask, _ = _render(rng, case, config)
        image = write_png(folder / "image.png", rgb)
        write_png(folder / "mask.png", (mask * 255).astype(np.uint8))
        report = {"patient_id": f"P{i + 1:05d}",
                  "features": {"shape": case["us_shape"], "edge": case["us_margin"].replace("_", " "),
                               "boundary": case["us_boundary"].replace("_", " "), "echo_pattern": ECHO_TEXT[case["us_echo"]],
                               "calcification": "present" if case["us_calcification"] else "absent",
                               "blood_flow": case["us_blood_flow"]},
                  "bi-rads": str(case["birads"]), "pathology": case["pathology"],
                  "cot": f"Observation: a {case['us_shape']} {ECHO_TEXT[case['us_echo']]} lesion "
                         f"{size_phrase(mask, 0.2)}, {clock_phrase(rng)}. "
                         f"Features suggest BI-RADS {case['birads']}. Diagnosis: {case['pathology']}."}
        write_text(folder / "report.json", json.dumps(report, indent=1))
        labels = {k: v for k, v in case.items()}
        labels["malignant"] = case["pathology"] == "malignant"
        labels["boxes"] = [{"box": mask_to_box(mask), "label": "lesion"}]
        truths.append(Truth(f"{split}__BUS{i + 1:05d}", labels, split, rgb.shape[1], rgb.shape[0], [image]))
    return truths
