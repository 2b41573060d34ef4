"""The normalised label vocabulary shared by source adapters (which produce labels) and task templates (which
consume them).

Every adapter maps its dataset's own columns and codes onto these fields; a template names the fields it needs.
Values outside a field's vocabulary are errors at adapter time, so a template never sees an unexpected code.
A field that a sample does not have is simply absent from its `labels` dict (never None-filled).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class LabelField:
    name: str
    kind: str  # "categorical" | "ordinal" | "binary" | "int" | "float" | "text" | "boxes" | "multilabel"
    values: tuple[Any, ...] = ()  # allowed values, in order for ordinal fields
    description: str = ""


FIELDS: dict[str, LabelField] = {
    f.name: f
    for f in (
        # Breast-level / study-level (mammography, ultrasound, MRI)
        LabelField("laterality", "categorical", ("L", "R"), "side of the image or lesion"),
        LabelField("view", "categorical", ("CC", "MLO", "ML", "LM", "XCCL", "other"), "mammographic view"),
        LabelField("birads", "ordinal", (0, 1, 2, 3, 4, 5, 6), "BI-RADS assessment category (4a/4b/4c folded to 4)"),
        LabelField("density", "ordinal", ("A", "B", "C", "D"), "ACR breast density (1-4 mapped to A-D)"),
        LabelField("pathology", "categorical", ("normal", "benign", "malignant"), "biopsy/ground-truth class"),
        LabelField("abnormality", "categorical",
                   ("none", "mass", "calcification", "asymmetry", "architectural_distortion", "other"),
                   "dominant finding type"),
        LabelField("mass_shape", "categorical", ("round", "oval", "irregular", "lobulated"), "mass shape"),
        LabelField("mass_margin", "categorical",
                   ("circumscribed", "obscured", "microlobulated", "indistinct", "spiculated"), "mass margin"),
        LabelField("calc_type", "categorical",
                   ("amorphous", "coarse_heterogeneous", "fine_pleomorphic", "fine_linear_branching", "punctate",
                    "round_regular", "vascular", "coarse", "other"), "calcification morphology"),
        LabelField("calc_distribution", "categorical",
                   ("diffuse", "regional", "grouped", "linear", "segmental"), "calcification distribution"),
        LabelField("masking_level", "ordinal", (1, 2, 3, 4, 5, 6, 7, 8), "CSAW-M masking level"),
        LabelField("tissue", "categorical", ("fatty", "fatty_glandular", "dense_glandular"), "MIAS background tissue"),
        LabelField("boxes", "boxes", (), "list of {'box': [x1,y1,x2,y2] in source-image pixels (z1,z2 for volumes), "
                                         "'label': str} before normalisation"),
        # Ultrasound (BUS-CoT / BUSI)
        LabelField("us_shape", "categorical", ("oval", "round", "irregular")),
        LabelField("us_margin", "categorical", ("circumscribed", "not_circumscribed")),
        LabelField("us_echo", "categorical",
                   ("anechoic", "hypoechoic", "isoechoic", "hyperechoic", "complex", "heterogeneous")),
        LabelField("us_boundary", "categorical", ("abrupt", "echogenic_halo")),
        LabelField("us_calcification", "binary", (False, True)),
        LabelField("us_blood_flow", "categorical", ("none", "internal", "rim")),
        # MRI
        LabelField("lesion_type", "categorical", ("mass", "non_mass_enhancement", "focus", "none")),
        LabelField("enhancement_curve", "categorical", ("persistent", "plateau", "washout")),
        # Chest CT (CT-RATE's 18 abnormality labels, snake_case names)
        LabelField("ct_abnormalities", "multilabel", (), "dict name -> bool over CT-RATE's 18 labels"),
        # Pathology / clinical
        LabelField("histologic_type", "categorical",
                   ("ductal", "lobular", "mixed", "mucinous", "medullary", "metaplastic", "other")),
        LabelField("er", "binary", (False, True), "estrogen receptor positive"),
        LabelField("pr", "binary", (False, True), "progesterone receptor positive"),
        LabelField("her2", "binary", (False, True), "HER2 positive"),
        LabelField("ki67_high", "binary", (False, True), "Ki-67 ≥ 20 %"),
        LabelField("molecular_subtype", "categorical", ("luminal_a", "luminal_b", "her2_enriched", "basal", "normal_like")),
        LabelField("node_status", "categorical", ("n0", "n1_2", "n3_plus"), "axillary lymph-node burden (BCNB ALN)"),
        LabelField("tumour_stage", "ordinal", ("I", "II", "III", "IV"), "AJCC stage group"),
        # Text
        LabelField("report", "text", (), "human-written report text (answer provenance 'report')"),
        LabelField("malignant", "binary", (False, True), "derived: pathology == malignant (or BI-RADS >= 4 if only that)"),
    )
}


class LabelError(ValueError):
    """A label value outside the vocabulary: raised by adapters so bad codes never reach templates."""


def validate_labels(labels: dict[str, Any]) -> dict[str, Any]:
    """Check every field name and categorical/ordinal/binary value against the vocabulary; return labels."""
    for name, value in labels.items():
        field = FIELDS.get(name)
        if field is None:
            raise LabelError(f"unknown label field {name!r}; known: {sorted(FIELDS)}")
        if field.values and value not in field.values:
            raise LabelError(f"label {name}={value!r} not in {field.values}")
    return labels
