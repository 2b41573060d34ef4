"""TCGA-BRCA diagnostic slides (GDC: `<file uuid>/TCGA-XX-XXXX-01Z-00-DX1.<uuid>.svs`) with clinical tables:
the cBioPortal PanCancer Atlas export `brca_tcga_pan_can_atlas_2018_clinical_data.tsv` (Patient ID, Subtype
BRCA_LumA/LumB/Her2/Basal/Normal, 'Neoplasm Disease Stage American Joint Committee on Cancer Code', Tumor Type)
and, when present, the GDC Biotab `nationwidechildrens.org_clinical_patient_brca.txt` for ER/PR/HER2 by IHC
(two CDE header rows under the column names)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterator

from breastgpt.corpus.sources.base import SourceProblem, SourceSample, checked_sample, register, safe_id
from breastgpt.corpus.sources.tables import TableError, cell, find_file, parse_bool, read_table

SUBTYPE = {"BRCA_LumA": "luminal_a", "BRCA_LumB": "luminal_b", "BRCA_Her2": "her2_enriched",
           "BRCA_Basal": "basal", "BRCA_Normal": "normal_like"}
HISTOLOGY = {"infiltrating ductal carcinoma": "ductal", "infiltrating lobular carcinoma": "lobular",
             "mixed histology (nos)": "mixed", "mucinous carcinoma": "mucinous", "medullary carcinoma": "medullary",
             "metaplastic carcinoma": "metaplastic", "other": "other", "infiltrating carcinoma (nos)": "other",
             "breast invasive carcinoma": "other"}
STAGE = re.compile(r"^STAGE (IV|III|II|I)[ABC]?$")
SLIDE = re.compile(r"^(TCGA-[A-Z0-9]{2}-[A-Z0-9]{4})-\d{2}[A-Z]-\d{2}-[A-Z]{2}\d")
CLINICAL_TSV = "brca_tcga_pan_can_atlas_2018_clinical_data.tsv"
BIOTAB = "nationwidechildrens.org_clinical_patient_brca.txt"


def clinical_labels(row) -> dict[str, Any]:
    """Vocabulary labels from one cBioPortal PanCancer Atlas row."""
    labels: dict[str, Any] = {}
    subtype = cell(row, "Subtype")
    if subtype in SUBTYPE:
        labels["molecular_subtype"] = SUBTYPE[subtype]
    stage = STAGE.match(cell(row, "Neoplasm Disease Stage American Joint Committee on Cancer Code").upper())
    if stage:
        labels["tumour_stage"] = stage.group(1)
    histology = cell(row, "Tumor Type").lower()
    if histology in HISTOLOGY:
        labels["histologic_type"] = HISTOLOGY[histology]
    labels["pathology"], labels["malignant"] = "malignant", True
    return labels


def read_clinical(root: Path) -> dict[str, dict[str, Any]]:
    """Patient barcode → labels, merged from the cBioPortal TSV and (if present) the GDC Biotab receptor table."""
    out: dict[str, dict[str, Any]] = {}
    tsv = find_file(root, CLINICAL_TSV)
    if tsv is not None:
        for _, row in read_table(tsv, sep="\t", required=("Patient ID", "Subtype")).iterrows():
            out[row["Patient ID"]] = clinical_labels(row)
    biotab = find_file(root, BIOTAB)
    if biotab is not None:
        table = read_table(biotab, sep="\t", required=("bcr_patient_barcode",))
        for _, row in table.iloc[2:].iterrows():  # rows 1-2 are CDE names and ids, not patients
            receptors = {}
            for field, column in (("er", "er_status_by_ihc"), ("pr", "pr_status_by_ihc"), ("her2", "her2_status_by_ihc")):
                value = parse_bool(cell(row, column))
                if value is not None:
                    receptors[field] = value
            out.setdefault(row["bcr_patient_barcode"], {}).update(receptors)
    if tsv is None and biotab is None:
        raise TableError(f"{root}: neither {CLINICAL_TSV} nor {BIOTAB} found")
    return out


@register
class TCGABRCAAdapter:
    name = "tcga_brca"
    modality = "pathology"

    def discover(self, root: Path) -> Iterator[SourceSample | SourceProblem]:
        try:
            clinical = read_clinical(root)
        except (TableError, ValueError) as exc:
            yield SourceProblem(self.name, str(root), str(exc))
            return
        for slide in sorted(root.rglob("*.svs")):
            match = SLIDE.match(slide.name)
            if match is None:
                yield SourceProblem(self.name, str(slide), "file name is not a TCGA slide barcode")
                continue
            patient = match.group(1)
            if patient not in clinical:
                yield SourceProblem(self.name, str(slide), f"no clinical row for {patient}")
                continue
            barcode = slide.name.split(".")[0]
            yield checked_sample(self.name, str(slide), sample_id=safe_id(barcode), patient_id=patient,
                                 study_id=patient, modality="pathology", kind="slide", media=[slide],
                                 labels=clinical[patient], meta={"slide_type": barcode.split("-")[-1][:2]})
