"""Synthetic volume sources: CT-RATE (NIfTI + reports + 18-label CSV) and the private breast-MRI cohorts as
institutional manifests (per-patient NIfTI sequences T1, dynamic T1, T2, DWI, ADC + lesion mask + report)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from breastgpt.corpus.sources.ct_rate import ABNORMALITIES, snake
from breastgpt.synth.cases import SynthConfig, Truth, pick, split_for
from breastgpt.synth.render import clock_phrase, size_phrase
from breastgpt.synth.render_volume import CT_DRAWN, render_ct, render_mri
from breastgpt.synth.writers import write_nifti, write_table

CT_TEXT = {"lung_nodule": "A solid nodule is seen in the lung parenchyma.",
           "pleural_effusion": "Pleural effusion is present.", "cardiomegaly": "The heart is enlarged.",
           "emphysema": "Emphysematous changes are seen.", "consolidation": "There is a consolidation.",
           "arterial_wall_calcification": "Calcific plaques in the aortic wall.",
           "pericardial_effusion": "Pericardial effusion is noted.", "atelectasis": "Subsegmental atelectasis."}


def gen_ct_rate(root: Path, config: SynthConfig) -> list[Truth]:
    rng = np.random.default_rng([config.seed, 14])
    shape = (96, 256, 256) if config.full_size else (32, 96, 96)
    labels_rows = {"train": [], "valid": []}
    report_rows = {"train": [], "valid": []}
    truths = []
    for i in range(config.patients):
        split = "valid" if split_for(i, config.patients) == "test" else "train"
        name = f"{split}_{i + 1}_a_1"
        findings = {snake(n): False for n in ABNORMALITIES}
        for key in CT_DRAWN:
            findings[key] = bool(rng.random() < 0.3)
        volume = render_ct(rng, shape, findings)
        path = write_nifti(root / "dataset" / split / f"{split}_{i + 1}" / f"{split}_{i + 1}_a" / f"{name}.nii.gz",
                           volume, (1.5, 0.8, 0.8))
        labels_rows[split].append({"VolumeName": f"{name}.nii.gz", **{n: int(findings[snake(n)]) for n in ABNORMALITIES}})
        text = " ".join(CT_TEXT[k] for k in CT_DRAWN if findings[k]) or "No acute pathology."
        text += f" Examination {i + 1} of the series; slice thickness {rng.choice([1.0, 1.25, 1.5])} mm."
        report_rows[split].append({"VolumeName": f"{name}.nii.gz", "ClinicalInformation_EN": "Screening.",
                                   "Technique_EN": "Non-contrast chest CT.", "Findings_EN": text,
                                   "Impressions_EN": text})
        truths.append(Truth(name, {"ct_abnormalities": findings}, "train" if split == "train" else "val",
                            shape[2], shape[1], [path], depth=shape[0]))
    for split, rows in labels_rows.items():
        if rows:
            write_table(root / "dataset" / "multi_abnormality_labels" / f"{split}_predicted_labels.csv", rows)
    for split, rows in report_rows.items():
        if rows:
            name = "train_reports.csv" if split == "train" else "validation_reports.csv"
            write_table(root / "dataset" / "radiology_text_reports" / name, rows)
    return truths


SUBTYPE_BY_RECEPTORS = {  # (ER or PR, HER2, Ki-67 high) → surrogate molecular subtype (St Gallen style)
    (True, False, False): "luminal_a", (True, False, True): "luminal_b", (True, True, False): "luminal_b",
    (True, True, True): "luminal_b", (False, True, False): "her2_enriched", (False, True, True): "her2_enriched",
    (False, False, False): "basal", (False, False, True): "basal",
}


def treatment_labels(rng: np.random.Generator, malignant: bool) -> dict:
    """Biopsy-proven labels a treatment-planning MRI cohort carries: pathology for everyone; receptors, Ki-67,
    surrogate subtype, nodal burden and stage for the cancers (subtype derived from the receptors, so they agree)."""
    if not malignant:
        return {"pathology": "benign"}
    er, her2, ki67 = bool(rng.random() < 0.7), bool(rng.random() < 0.2), bool(rng.random() < 0.5)
    pr = er and bool(rng.random() < 0.8)
    return {"pathology": "malignant", "er": er, "pr": pr, "her2": her2, "ki67_high": ki67,
            "molecular_subtype": SUBTYPE_BY_RECEPTORS[(er or pr, her2, ki67)],
            "node_status": pick(rng, ["n0", "n1_2", "n3_plus"]), "tumour_stage": pick(rng, ["I", "II", "III"])}


def gen_mri_cohort(root: Path, config: SynthConfig, *, stream: int = 15) -> list[Truth]:
    """A private-style breast MRI cohort: NIfTI sequences per patient and an institutional manifest."""
    rng = np.random.default_rng([config.seed, stream])
    shape = (48, 192, 256) if config.full_size else (24, 64, 96)
    rows, truths = [], []
    for i in range(config.patients):
        malignant = bool(rng.random() < 0.5)
        lesion_type = pick(rng, ["mass", "non_mass_enhancement", "focus"])
        curve = pick(rng, ["washout", "plateau"]) if malignant else "persistent"
        side = pick(rng, ["L", "R"])
        volumes, mask = render_mri(rng, shape, side, lesion_type, curve, malignant)
        folder = Path(f"patient_{i + 1:04d}")
        files = [write_nifti(root / folder / f"{name}.nii.gz", vol, (3.0, 0.9, 0.9)) for name, vol in volumes.items()]
        write_nifti(root / folder / "lesion_mask.nii.gz", mask, (3.0, 0.9, 0.9))
        birads = pick(rng, [4, 5]) if malignant else pick(rng, [2, 3])
        # Fibroglandular tissue and background enhancement are stated as BI-RADS MRI reports do; drawn beside the
        # image (as BI-RADS is), they make reports of lesions of one kind and size differ, as real ones do.
        fgt = pick(rng, ["almost entirely fat", "scattered fibroglandular tissue", "heterogeneous fibroglandular "
                         "tissue", "extreme fibroglandular tissue"])
        bpe = pick(rng, ["minimal", "mild", "moderate", "marked"])
        report = (f"Amount of fibroglandular tissue: {fgt}; background parenchymal enhancement {bpe}. "
                  f"{'Left' if side == 'L' else 'Right'} breast {lesion_type.replace('_', ' ')} "
                  f"{size_phrase(mask, 0.9)}, {clock_phrase(rng)}, with {curve} kinetics. BI-RADS {birads}.")
        rel_files = ";".join(str(folder / p.name) for p in files)
        rows.append({"sample": f"mri-{i + 1:04d}", "patient": f"MRN{900000 + i}", "study": f"ACC{700000 + i}",
                     "modality": "mri", "kind": "volume", "files": rel_files, "masks": str(folder / "lesion_mask.nii.gz"),
                     "report": report, "split": split_for(i, config.patients), "birads": birads, "laterality": side,
                     "lesion_type": lesion_type, "enhancement_curve": curve, "malignant": "yes" if malignant else "no"})
        labels = {"birads": birads, "laterality": side, "lesion_type": lesion_type, "enhancement_curve": curve,
                  "malignant": malignant, **treatment_labels(rng, malignant)}
        rows[-1].update({k: ("yes" if v else "no") if isinstance(v, bool) else v for k, v in labels.items()
                         if k not in rows[-1]})
        truths.append(Truth(f"mri-{i + 1:04d}", labels, split_for(i, config.patients), shape[2], shape[1],
                            files, depth=shape[0]))
    write_table(root / "manifest.csv", rows)
    return truths


def gen_ct_cohort(root: Path, config: SynthConfig) -> list[Truth]:
    """An institutional chest-CT cohort (institutional manifest): NIfTI volumes with a segmented lung nodule
    (label mask), other drawn abnormalities and a report — the annotated CT that public chest-CT sets lack."""
    from breastgpt.synth.render_volume import _ellipsoid

    rng = np.random.default_rng([config.seed, 23])
    shape = (64, 192, 192) if config.full_size else (24, 64, 64)
    rows, truths = [], []
    for i in range(config.patients):
        findings = {key: bool(rng.random() < 0.3) for key in CT_DRAWN if key != "lung_nodule"}
        volume = render_ct(rng, shape, {**findings, "lung_nodule": False}).astype(np.int16)
        side = pick(rng, [0.3, 0.7])
        centre = (shape[0] * rng.uniform(0.3, 0.7), shape[1] * 0.42, shape[2] * side)
        radius = rng.uniform(2.5, 4.0)
        mask = _ellipsoid(shape, centre, (radius, radius * 1.2, radius * 1.2))
        volume[mask] = 45
        folder = Path(f"case_{i + 1:04d}")
        path = write_nifti(root / folder / "ct.nii.gz", volume, (2.5, 1.2, 1.2))
        write_nifti(root / folder / "nodule_mask.nii.gz", mask.astype(np.uint8), (2.5, 1.2, 1.2))
        present = ["lung_nodule"] + [k for k, v in findings.items() if v]
        report = (f"Solid pulmonary nodule in the {'right' if side < 0.5 else 'left'} lung "
                  f"{size_phrase(mask, 1.2)}. " + " ".join(CT_TEXT[k] for k in present[1:])
                  + f" Follow-up study {i + 1} of the programme.")
        rows.append({"sample": f"ct-{i + 1:04d}", "patient": f"CTMRN{500000 + i}", "study": f"CTACC{300000 + i}",
                     "modality": "ct", "kind": "volume", "files": str(folder / "ct.nii.gz"),
                     "masks": str(folder / "nodule_mask.nii.gz"), "report": report.strip(),
                     "split": split_for(i, config.patients), "ct_abnormalities": ";".join(present)})
        labels = {"ct_abnormalities": {key: True for key in present}}  # a manifest lists present findings only
        truths.append(Truth(f"ct-{i + 1:04d}", labels, split_for(i, config.patients), shape[2], shape[1],
                            [path], depth=shape[0]))
    write_table(root / "manifest.csv", rows)
    return truths
