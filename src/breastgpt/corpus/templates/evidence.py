"""Answerable from pixels: where each template's answer is in the normalised media, and which preprocessing
settings would remove it.

Every template's answer must be visible in the media the model is shown after `breastgpt.preprocessing` — not
in a burned-in label and not destroyed by a normalisation step. Each answer rests on *evidence* (what in the
pixels shows it) and may need *conditions* on the preprocessing:

- `native_orientation`: the breast's side is only visible while mammograms keep their stored orientation
  (`mammo_flip_to = "none"`); flipping every breast to one side leaves the burned-in "LCC"/"RMLO" label as the
  only cue, and that label is masked.
- `no_burned_in_labels`: mammogram labels spell the side and the view; they must be masked
  (`mammo_mask_outside_breast`) so the view is read from the anatomy (pectoral muscle), not the text.
- `ct_window:<tissue>`: the CT window must span the tissue's Hounsfield range (`CT_TISSUE_HU`): lung findings
  are black in a soft-tissue window, calcium is white in a lung window.

`corpus build` renders only the templates whose conditions hold under its settings; `corpus audit` flags any
record of a template whose conditions do not hold under the corpus's `preprocessing.json`. The per-template
table in docs/corpus.md is `contract_rows()`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from breastgpt.corpus.templates.schema import Template
from breastgpt.preprocessing import Preprocessing

# Hounsfield range a CT window must span for the tissue's findings to have contrast.
CT_TISSUE_HU: dict[str, tuple[float, float]] = {
    "lung": (-900.0, -500.0),  # aerated lung to ground glass
    "soft_tissue": (-100.0, 100.0),  # fat, fluid, muscle, nodes
    "calcium": (100.0, 200.0),  # the step from enhancing soft tissue to calcification
}
# CT-RATE's 18 abnormalities by the tissue they are seen in.
CT_FINDING_TISSUE: dict[str, str] = {
    **dict.fromkeys(("lung_nodule", "emphysema", "atelectasis", "consolidation", "lung_opacity", "bronchiectasis",
                     "pulmonary_fibrotic_sequela", "mosaic_attenuation_pattern", "peribronchial_thickening",
                     "interlobular_septal_thickening"), "lung"),
    **dict.fromkeys(("pleural_effusion", "pericardial_effusion", "lymphadenopathy", "cardiomegaly",
                     "hiatal_hernia"), "soft_tissue"),
    **dict.fromkeys(("coronary_artery_wall_calcification", "arterial_wall_calcification", "medical_material"),
                    "calcium"),
}
ALL_CT_TISSUES = tuple(f"ct_window:{t}" for t in CT_TISSUE_HU)
TISSUE_TEXT = {"lung": "the lungs", "soft_tissue": "the mediastinum and pleura", "calcium": "the vessel walls"}

# What in the normalised media shows each label field, per modality, and the conditions it needs.
FIELD_EVIDENCE: dict[tuple[str, str], tuple[str, tuple[str, ...]]] = {
    ("mammography", "laterality"): ("the chest wall's side of the image", ("native_orientation",
                                                                          "no_burned_in_labels")),
    ("mammography", "view"): ("the pectoral muscle's presence and shape", ("no_burned_in_labels",)),
    ("mammography", "density"): ("the fibroglandular fraction of the breast", ()),
    ("mammography", "tissue"): ("the breast parenchyma", ()),
    ("mammography", "masking_level"): ("the parenchyma's masking of lesions", ()),
    ("mammography", "report"): ("the findings the report describes (side words are not visible after "
                                "orientation normalisation)", ()),
    ("ultrasound", "report"): ("the lesion the report describes", ()),
    ("mri", "laterality"): ("the lesion's side of the volume (volumes keep their stored orientation)", ()),
    ("mri", "report"): ("the lesions the report describes", ()),
    ("pathology", "report"): ("the tissue the report describes", ()),
}
LESION_EVIDENCE = {"mammography": "the lesion in the breast", "ultrasound": "the lesion in the imaging region",
                   "mri": "the enhancing lesion", "pathology": "the tumour's tissue"}
IMAGE_INFERRED = {"er", "pr", "her2", "ki67_high", "molecular_subtype", "tumour_stage", "node_status"}


@dataclass(frozen=True)
class Contract:
    """One template's evidence and the conditions its answer needs from the preprocessing."""

    template_id: str
    evidence: str
    conditions: tuple[str, ...]


def template_contract(t: Template) -> Contract:
    if t.modality == "ct":
        return _ct_contract(t)
    evidence, conditions = [], []
    for name in t.fields:
        text, needs = _field_evidence(t.modality, name)
        if text not in evidence:
            evidence.append(text)
        conditions += [c for c in needs if c not in conditions]
    text = "; ".join(evidence)
    if "boxes" in t.fields:
        text += " (boxes follow the normalisation's crop, flip and scale)"
    return Contract(t.id, text, tuple(conditions))


def _field_evidence(modality: str, name: str) -> tuple[str, tuple[str, ...]]:
    if (modality, name) in FIELD_EVIDENCE:
        return FIELD_EVIDENCE[(modality, name)]
    if name in IMAGE_INFERRED:
        return f"{LESION_EVIDENCE[modality]} (image-inferred: the answer is predicted, not seen)", ()
    return LESION_EVIDENCE[modality], ()


def _ct_contract(t: Template) -> Contract:
    key = t.args.get("key")
    if key is None:  # which-present, finding lists, grounding, reports: any finding, so every tissue
        return Contract(t.id, "the whole chest: lung, mediastinum and calcifications", ALL_CT_TISSUES)
    tissue = CT_FINDING_TISSUE[key]
    return Contract(t.id, f"{key.replace('_', ' ')} in {TISSUE_TEXT[tissue]}", (f"ct_window:{tissue}",))


def condition_holds(condition: str, settings: Preprocessing) -> bool:
    from breastgpt.io.windowing import WINDOW_PRESETS

    if condition == "native_orientation":
        return settings.mammo_flip_to == "none"
    if condition == "no_burned_in_labels":
        return settings.mammo_mask_outside_breast
    if condition.startswith("ct_window:"):
        low, high = CT_TISSUE_HU[condition.split(":", 1)[1]]
        preset = WINDOW_PRESETS[settings.ct_preset]
        if preset.center is None or preset.width is None:
            return True  # a percentile window follows the volume's own range
        return preset.center - preset.width / 2 <= low and preset.center + preset.width / 2 >= high
    raise KeyError(f"unknown answerability condition {condition!r}")


def unmet_conditions(t: Template, settings: Preprocessing) -> list[str]:
    """The conditions of `t` that `settings` break ([] when its answer is visible in the normalised media)."""
    return [c for c in template_contract(t).conditions if not condition_holds(c, settings)]


def contract_rows(templates: Any, settings: Preprocessing = Preprocessing()) -> list[dict[str, Any]]:
    """Per template: evidence, conditions, and whether the default (or given) preprocessing keeps the answer."""
    rows = []
    for t in templates:
        contract = template_contract(t)
        rows.append({"template": t.id, "evidence": contract.evidence, "conditions": list(contract.conditions),
                     "answerable": not unmet_conditions(t, settings)})
    return rows


def contract_markdown(templates: Any) -> str:
    """The docs/corpus.md table (under the default preprocessing)."""
    lines = ["| template | answer visible as | needs | rendered by default |", "|---|---|---|---|"]
    for row in contract_rows(templates):
        needs = ", ".join(f"`{c}`" for c in row["conditions"]) or "—"
        lines.append(f"| `{row['template']}` | {row['evidence']} | {needs} | {'yes' if row['answerable'] else 'no'} |")
    return "\n".join(lines)


__all__ = ["CT_FINDING_TISSUE", "CT_TISSUE_HU", "Contract", "condition_holds", "contract_markdown",
           "contract_rows", "template_contract", "unmet_conditions"]
