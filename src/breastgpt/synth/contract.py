"""What each synthetic renderer draws into the pixels: the label fields that are inputs of the pixel generators.

A label listed here changes the rendered image (shape, margin, density, echo pattern, enhancement course,
stain hue, nuclear arrangement, ...), so a model can only answer a question about it from the image. Labels not
listed are drawn at random beside the image (BI-RADS 2 vs 3, tumour stage, Ki-67) or derived from other labels,
and a question about them is answerable, at best, in part. `breastgpt demo` uses this contract to choose its
image-dependent task set from the templates' own label fields, never from results.

Dict-valued fields are listed per key (`ct_abnormalities.lung_nodule`).
"""

from __future__ import annotations

from breastgpt.synth.render_volume import CT_DRAWN

RENDERED_LABELS: dict[str, frozenset[str]] = {
    # render_mammogram(density, abnormality, mass_shape, mass_margin, calc_distribution). The breast side is
    # drawn too, but corpus normalisation flips every breast to one side, so laterality is not visible after it.
    "mammography": frozenset({"density", "abnormality", "mass_shape", "mass_margin", "calc_distribution"}),
    # render_ultrasound(lesion, us_shape, us_margin, us_echo, us_boundary, us_calcification, us_blood_flow)
    "ultrasound": frozenset({"us_shape", "us_margin", "us_echo", "us_boundary", "us_calcification",
                             "us_blood_flow"}),
    # render_mri(side, lesion_type, curve, malignant): side, enhancement, time course, T2/DWI/ADC by malignancy
    "mri": frozenset({"laterality", "lesion_type", "enhancement_curve", "malignant"}),
    # render_ct(findings): only the drawn subset of the 18 CT-RATE abnormalities
    "ct": frozenset(f"ct_abnormalities.{key}" for key in CT_DRAWN),
    # render_slide(histologic_type, her2, er, node_status): nuclear arrangement, stain hue, nuclear density
    "pathology": frozenset({"histologic_type", "er", "her2", "node_status"}),
}


def is_rendered(modality: str, field: str, key: str | None = None) -> bool:
    """True when the renderer of `modality` draws `field` (or `field.key` of a dict-valued field)."""
    drawn = RENDERED_LABELS.get(modality, frozenset())
    return (f"{field}.{key}" if key else field) in drawn


__all__ = ["RENDERED_LABELS", "is_rendered"]
