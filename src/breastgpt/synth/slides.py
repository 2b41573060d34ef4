"""Synthetic pathology sources: TCGA-BRCA (SVS-like Aperio pyramids in GDC folders + cBioPortal TSV + Biotab),
BCNB (large JPEG 'WSIs' + clinical xlsx + split lists) and HISTAI-breast (pyramidal TIFF + metadata.csv)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from breastgpt.synth.cases import SynthConfig, Truth, pick, split_for
from breastgpt.synth.render_slide import render_slide
from breastgpt.synth.writers import uid, write_jpeg, write_pyramid_tiff, write_table, write_text

SUBTYPES = {"luminal_a": ("BRCA_LumA", True, False), "luminal_b": ("BRCA_LumB", True, False),
            "her2_enriched": ("BRCA_Her2", False, True), "basal": ("BRCA_Basal", False, False)}
TUMOR_TYPE = {"ductal": "Infiltrating Ductal Carcinoma", "lobular": "Infiltrating Lobular Carcinoma"}


def _slide_size(config: SynthConfig) -> int:
    return 8192 if config.full_size else 768


def gen_tcga_brca(root: Path, config: SynthConfig) -> list[Truth]:
    rng = np.random.default_rng([config.seed, 16])
    rows, biotab, truths = [], [], []
    size = _slide_size(config)
    for i in range(config.patients):
        patient = f"TCGA-{'AB'}-{1000 + i:04d}"
        subtype = pick(rng, list(SUBTYPES))
        code, er, her2 = SUBTYPES[subtype]
        histology, stage = pick(rng, ["ductal", "lobular"]), pick(rng, ["I", "II", "III", "IV"])
        rgb, _ = render_slide(rng, size, size, histologic_type=histology, her2=her2, er=er)
        barcode = f"{patient}-01Z-00-DX1"
        name = f"{barcode}.{uid(f'tcga:{i}').split('.')[-1][:8].upper()}-0000-0000-0000-000000000000.svs"
        path = write_pyramid_tiff(root / "slides" / uid(f"gdc:{i}").split(".")[-1] / name, rgb, mpp=0.5, aperio=True)
        rows.append({"Study ID": "brca_tcga_pan_can_atlas_2018", "Patient ID": patient, "Sample ID": f"{patient}-01",
                     "Neoplasm Disease Stage American Joint Committee on Cancer Code": f"STAGE {stage}A" if stage != "IV" else "STAGE IV",
                     "Subtype": code, "Tumor Type": TUMOR_TYPE[histology]})
        biotab.append({"bcr_patient_barcode": patient, "er_status_by_ihc": "Positive" if er else "Negative",
                       "pr_status_by_ihc": "Positive" if er else "Negative",
                       "her2_status_by_ihc": "Positive" if her2 else "Negative"})
        labels = {"molecular_subtype": subtype, "tumour_stage": stage, "histologic_type": histology,
                  "pathology": "malignant", "malignant": True, "er": er, "pr": er, "her2": her2}
        truths.append(Truth(barcode, labels, None, size, size, [path]))
    write_table(root / "clinical" / "brca_tcga_pan_can_atlas_2018_clinical_data.tsv", rows, sep="\t")
    header = [{"bcr_patient_barcode": "bcr_patient_barcode", "er_status_by_ihc": "breast_carcinoma_estrogen_receptor_status",
               "pr_status_by_ihc": "breast_carcinoma_progesterone_receptor_status",
               "her2_status_by_ihc": "lab_proc_her2_neu_immunohistochemistry_receptor_status"},
              {"bcr_patient_barcode": "CDE_ID:2003301", "er_status_by_ihc": "CDE_ID:2957359",
               "pr_status_by_ihc": "CDE_ID:2957357", "her2_status_by_ihc": "CDE_ID:2957563"}]
    write_table(root / "clinical" / "nationwidechildrens.org_clinical_patient_brca.txt", header + biotab, sep="\t")
    return truths


BCNB_ALN = {"n0": "N0", "n1_2": "N+(1-2)", "n3_plus": "N+(>2)"}
BCNB_SUBTYPE = {"luminal_a": "Luminal A", "luminal_b": "Luminal B", "her2_enriched": "HER2(+)", "basal": "Triple negative"}


def gen_bcnb(root: Path, config: SynthConfig) -> list[Truth]:
    rng = np.random.default_rng([config.seed, 17])
    rows, splits, truths = [], {"train": [], "val": [], "test": []}, []
    size = _slide_size(config)
    for i in range(config.patients):
        pid = str(i + 1)
        subtype = pick(rng, list(BCNB_SUBTYPE))
        _, er, her2 = SUBTYPES[subtype]
        node = pick(rng, list(BCNB_ALN))
        ki67 = int(rng.integers(5, 60))
        rgb, _ = render_slide(rng, size, size, her2=her2, er=er, node_status=node)
        path = write_jpeg(root / "WSIs" / f"{pid}.jpg", rgb)
        write_text(root / "WSIs" / f"{pid}.json", '{"positive": []}')
        rows.append({"Patient ID": int(pid), "Age(years)": 50, "Tumour Size(cm)": 2.1, "Tumour Type": "Invasive ductal carcinoma",
                     "ER": "Positive" if er else "Negative", "PR": "Positive" if er else "Negative",
                     "HER2": "Positive" if her2 else "Negative", "HER2 Expression": "3+" if her2 else "0",
                     "Histological grading": 2, "Surgical": "Modified radical mastectomy", "Ki67": ki67,
                     "Molecular subtype": BCNB_SUBTYPE[subtype], "Number of lymph node metastases": 0,
                     "ALN status": BCNB_ALN[node]})
        split = split_for(i, config.patients)
        split = "val" if split == "test" and i % 2 else split
        splits[split].append(pid)
        labels = {"node_status": node, "pathology": "malignant", "malignant": True, "er": er, "pr": er, "her2": her2,
                  "ki67_high": ki67 >= 20, "molecular_subtype": subtype, "histologic_type": "ductal"}
        truths.append(Truth(f"bcnb-{pid}", labels, split, size, size, [path]))
    write_table(root / "patient-clinical-data.xlsx", rows)
    for split, ids in splits.items():
        write_text(root / "dataset-splitting" / f"{split}_id.txt", "".join(f"{x}\n" for x in ids))
    return truths


def gen_histai_breast(root: Path, config: SynthConfig) -> list[Truth]:
    rng = np.random.default_rng([config.seed, 18])
    rows, truths = [], []
    size = _slide_size(config)
    for i in range(config.patients):
        case = f"case_{i + 1:05d}"
        histology = pick(rng, ["ductal", "lobular"])
        rgb, _ = render_slide(rng, size, size, histologic_type=histology)
        path = write_pyramid_tiff(root / case / "slide_01.tiff", rgb, mpp=0.5, aperio=False)
        text = (f"Invasive {histology} carcinoma of the breast, greatest dimension "
                f"{int(rng.integers(6, 45))} mm, {int(rng.integers(1, 4))} block(s) examined.")
        rows.append({"case_id": case, "diagnosis": text})
        truths.append(Truth(f"{case}__slide_01", {}, None, size, size, [path]))
    write_table(root / "metadata.csv", rows)
    return truths
