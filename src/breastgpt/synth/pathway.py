"""A linked synthetic cohort: each patient followed screening → diagnosis → treatment planning, written as an
institutional manifest (`manifest.csv`, the layout of `breastgpt.corpus.sources.institutional`) with `stage` and
`date` columns.

The ground truth is consistent along the pathway: the malignant mass seen on the screening mammogram is the
lesion imaged on diagnostic ultrasound and biopsied, and the slide's receptor status (drawn into its stain) is
the one the treatment question asks about. Every patient has all three stages.
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import numpy as np

from breastgpt.synth.cases import MammoCase, SynthConfig, Truth, mammo_size, pick, split_for
from breastgpt.synth.render import render_mammogram
from breastgpt.synth.render_slide import render_slide
from breastgpt.synth.render_us import render_ultrasound
from breastgpt.synth.volumes import SUBTYPE_BY_RECEPTORS
from breastgpt.synth.writers import write_png, to_uint8, write_pyramid_tiff, write_table

STREAM = 31
STAGES = ("screening", "diagnosis", "treatment")
STAGE_DAYS = {"screening": 0, "diagnosis": 12, "treatment": 30}  # days after the screening visit


def screening_case(rng: np.random.Generator) -> MammoCase:
    """A screen-detected cancer: an irregular spiculated or indistinct mass, recalled as BI-RADS 4 or 5."""
    return MammoCase("malignant", pick(rng, [4, 5]), pick(rng, ["A", "B", "C", "D"]), "mass",
                     mass_shape="irregular", mass_margin=pick(rng, ["spiculated", "indistinct"]))


def diagnosis_labels(rng: np.random.Generator) -> dict:
    """The same lesion on targeted ultrasound: malignant sonographic features, BI-RADS 4 or 5."""
    return {"pathology": "malignant", "malignant": True, "birads": pick(rng, [4, 5]), "us_shape": "irregular",
            "us_margin": "not_circumscribed", "us_echo": pick(rng, ["hypoechoic", "heterogeneous"]),
            "us_boundary": pick(rng, ["abrupt", "echogenic_halo"]), "us_calcification": bool(rng.random() < 0.4),
            "us_blood_flow": "internal"}  # a manifest cell "none" reads as empty


def treatment_labels(rng: np.random.Generator) -> dict:
    """The biopsy of that lesion: histologic type, receptors (subtype derived from them) and nodal burden."""
    er, her2, ki67 = bool(rng.random() < 0.65), bool(rng.random() < 0.3), bool(rng.random() < 0.5)
    pr = er and bool(rng.random() < 0.8)
    return {"pathology": "malignant", "malignant": True, "histologic_type": pick(rng, ["ductal", "lobular"]),
            "er": er, "pr": pr, "her2": her2, "ki67_high": ki67,
            "molecular_subtype": SUBTYPE_BY_RECEPTORS[(er or pr, her2, ki67)],
            "node_status": pick(rng, ["n0", "n1_2", "n3_plus"])}


def _cell(value: object) -> object:
    return ("yes" if value else "no") if isinstance(value, bool) else value


def _row(i: int, stage: str, visit: date, modality: str, kind: str, files: str, labels: dict, split: str) -> dict:
    return {"sample": f"pw-{i + 1:04d}-{stage}", "patient": f"PWMRN{400000 + i}", "study": f"PWACC{200000 + 3 * i + STAGES.index(stage)}", "modality": modality, "kind": kind, "files": files, "split": split, "stage": stage,
            "date": (visit + timedelta(days=STAGE_DAYS[stage])).isoformat(),
            **{k: _cell(v) for k, v in labels.items()}}


def _patient(root: Path, i: int, rng: np.random.Generator, config: SynthConfig) -> tuple[list[dict], list[Truth]]:
    split = split_for(i, config.patients)
    visit = date(2024, 1, 8) + timedelta(days=int(rng.integers(0, 700)))
    folder = Path(f"patient_{i + 1:04d}")
    side = pick(rng, ["L", "R"])
    case = screening_case(rng)
    h, w = mammo_size(config)
    mammo, _ = render_mammogram(rng, h, w, side, case.density, "mass", case.mass_shape, case.mass_margin, "grouped")
    mammo_labels = {"pathology": "malignant", "malignant": True, "birads": case.birads, "density": case.density,
                    "abnormality": "mass", "mass_shape": case.mass_shape, "mass_margin": case.mass_margin,
                    "laterality": side}
    us = diagnosis_labels(rng)
    uh, uw = (600, 800) if config.full_size else (240, 320)
    us_image, _, _ = render_ultrasound(rng, uh, uw, lesion=True, shadowing=True,
                                    **{k: v for k, v in us.items() if k.startswith("us_")})
    tx = treatment_labels(rng)
    size = 8192 if config.full_size else 768
    slide, _ = render_slide(rng, size, size, histologic_type=tx["histologic_type"], her2=tx["her2"], er=tx["er"],
                            node_status=tx["node_status"])
    paths = {"screening": write_png(root / folder / "screening_mammogram.png", to_uint8(mammo)),
             "diagnosis": write_png(root / folder / "diagnostic_ultrasound.png", us_image),
             "treatment": write_pyramid_tiff(root / folder / "biopsy_slide.tiff", slide, mpp=0.5, aperio=False)}
    studies = [("screening", "mammography", "image", mammo_labels, mammo.shape),
               ("diagnosis", "ultrasound", "image", us, us_image.shape),
               ("treatment", "pathology", "slide", tx, slide.shape)]
    rows, truths = [], []
    for stage, modality, kind, labels, shape in studies:
        rows.append(_row(i, stage, visit, modality, kind, str(folder / paths[stage].name), labels, split))
        truths.append(Truth(f"pw-{i + 1:04d}-{stage}", dict(labels), split, shape[1], shape[0],
                            [paths[stage]]))
    return rows, truths


def gen_pathway_cohort(root: Path, config: SynthConfig) -> list[Truth]:
    """`config.patients` linked patients, three studies each (mammogram PNG, ultrasound PNG, pyramidal TIFF slide)."""
    rng = np.random.default_rng([config.seed, STREAM])
    rows, truths = [], []
    for i in range(config.patients):
        patient_rows, patient_truths = _patient(root, i, rng, config)
        rows += patient_rows
        truths += patient_truths
    columns = list(dict.fromkeys(k for row in rows for k in row))
    write_table(root / "manifest.csv", rows, columns=columns)
    return truths


__all__ = ["STAGE_DAYS", "gen_pathway_cohort"]
