"""BUS-CoT (breast ultrasound with chain-of-thought annotations): one folder per image, holding the raw frame
(`*.png` that is not a mask), lesion masks (`*mask*.png`) and a JSON with the structured report and reasoning.
Folders may sit under `train/`, `val/`, `test/` (kept as the dataset split). JSON keys are matched loosely:
shape, edge/margin, boundary, echo/echo_pattern, calcification, blood_flow, bi-rads, pathology, and
cot/reasoning/report for the text."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Iterator

from breastgpt.corpus.sources.base import BoxMask, SourceProblem, SourceSample, checked_sample, register, safe_id
from breastgpt.corpus.sources.tables import parse_birads, parse_bool

MARGIN = {"circumscribed": "circumscribed", "smooth": "circumscribed", "not circumscribed": "not_circumscribed",
          "indistinct": "not_circumscribed", "angular": "not_circumscribed", "microlobulated": "not_circumscribed",
          "spiculated": "not_circumscribed", "irregular": "not_circumscribed"}
ECHO = {"anechoic": "anechoic", "hypoechoic": "hypoechoic", "isoechoic": "isoechoic", "hyperechoic": "hyperechoic",
        "complex cystic and solid": "complex", "complex": "complex", "heterogeneous": "heterogeneous"}
BOUNDARY = {"abrupt": "abrupt", "abrupt interface": "abrupt", "echogenic halo": "echogenic_halo"}
FLOW = {"none": "none", "absent": "none", "no": "none", "internal": "internal", "internal vascularity": "internal",
        "rim": "rim", "vessels in rim": "rim"}
SPLITS = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}


def _key(data: dict[str, Any], *names: str) -> Any:
    wanted = {re.sub(r"[^a-z]", "", n) for n in names}
    for key, value in data.items():
        if re.sub(r"[^a-z]", "", key.lower()) in wanted:
            return value
    return None


def _map(table: dict[str, str], value: Any, what: str) -> str | None:
    if value in (None, ""):
        return None
    text = str(value).strip().lower().replace("_", " ")
    if text not in table:
        raise ValueError(f"{what} {value!r} not in {sorted(table)}")
    return table[text]


def report_labels(data: dict[str, Any]) -> dict[str, Any]:
    """Vocabulary labels from one BUS-CoT structured report (flat or nested under 'features')."""
    flat = dict(data)
    for nested in ("features", "structured_report", "report_fields"):
        if isinstance(data.get(nested), dict):
            flat.update(data[nested])
    labels = {"us_shape": _map({"oval": "oval", "round": "round", "irregular": "irregular"}, _key(flat, "shape"), "shape"),
              "us_margin": _map(MARGIN, _key(flat, "edge", "margin"), "edge"),
              "us_boundary": _map(BOUNDARY, _key(flat, "boundary", "lesion boundary"), "boundary"),
              "us_echo": _map(ECHO, _key(flat, "echo", "echo pattern", "echopattern"), "echo pattern"),
              "us_blood_flow": _map(FLOW, _key(flat, "blood flow", "bloodflow", "vascularity"), "blood flow"),
              "birads": parse_birads(str(_key(flat, "birads", "bi-rads") or "")),
              "pathology": _map({"benign": "benign", "malignant": "malignant"}, _key(flat, "pathology", "diagnosis"),
                                "pathology")}
    calc = _key(flat, "calcification", "calcifications")
    if calc not in (None, ""):
        labels["us_calcification"] = calc if isinstance(calc, bool) else parse_bool(
            {"present": "yes", "absent": "no"}.get(str(calc).lower(), str(calc)))
    if labels["pathology"]:
        labels["malignant"] = labels["pathology"] == "malignant"
    return {k: v for k, v in labels.items() if v is not None}


@register
class BUSCoTAdapter:
    name = "bus_cot"
    modality = "ultrasound"

    def discover(self, root: Path) -> Iterator[SourceSample | SourceProblem]:
        found = False
        for report in sorted(root.rglob("*.json")):
            found = True
            yield self._sample(root, report)
        if not found:
            yield SourceProblem(self.name, str(root), "no per-image folders with a JSON report found")

    def _sample(self, root: Path, report: Path) -> SourceSample | SourceProblem:
        folder = report.parent
        pngs = [p for p in sorted(folder.glob("*.png")) if not p.name.startswith(".")]
        frames = [p for p in pngs if "mask" not in p.stem.lower()]
        masks = [p for p in pngs if "mask" in p.stem.lower()]
        if len(frames) != 1:
            return SourceProblem(self.name, str(folder), f"expected one raw PNG, found {len(frames)}")
        try:
            data = json.loads(report.read_text(encoding="utf-8"))
            labels = report_labels(data)
        except ValueError as exc:
            return SourceProblem(self.name, str(report), f"{type(exc).__name__}: {exc}")
        text = _key(data, "cot", "reasoning", "chain of thought", "report")
        rel = folder.relative_to(root)
        split = next((SPLITS[p.lower()] for p in rel.parts if p.lower() in SPLITS), None)
        patient = str(_key(data, "patient", "patient_id", "patientid") or folder.name)
        return checked_sample(self.name, str(report), sample_id=safe_id(*rel.parts), patient_id=patient,
                              study_id=patient, modality="ultrasound", kind="image", media=frames, masks=masks,
                              labels=labels, report=text if isinstance(text, str) else None, dataset_split=split,
                              box_masks=[BoxMask(m, "lesion") for m in masks], box_required=True)
