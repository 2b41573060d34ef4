"""Record dicts for bench tests (SPEC §4.3 shape), shared by the bench test modules."""

from __future__ import annotations

from typing import Any


def closed_record(rid: str, patient: str, answer_index: int = 1, *, stage: str = "diagnosis",
                  modality: str = "mammography", source: str = "vindr", options: list[str] | None = None,
                  target: dict[str, Any] | None = None, provenance: str = "label") -> dict[str, Any]:
    label: dict[str, Any] = {"options": options or ["Benign", "Malignant"], "answer_index": answer_index}
    if target is not None:
        label["clinical_target"] = target
    return {"id": rid, "source": source, "patient_key": patient, "stage": stage, "modality": modality,
            "task_family": "closed_vqa", "template_id": "t-closed", "answer_provenance": {"kind": provenance},
            "messages": [{"role": "system", "content": "diagnosis"},
                         {"role": "user", "content": f"<image>Question {rid}?"},
                         {"role": "assistant", "content": "B"}],
            "images": [f"img/{rid}.png"], "videos": [], "label": label}


def open_record(rid: str, patient: str, answer: str, findings: list[str], *, family: str = "open_vqa",
                provenance: str = "generated") -> dict[str, Any]:
    return {"id": rid, "source": "bus_cot", "patient_key": patient, "stage": "screening", "modality": "ultrasound",
            "task_family": family, "template_id": "t-open", "answer_provenance": provenance,
            "messages": [{"role": "user", "content": f"<image>Describe {rid}."}],
            "images": [f"img/{rid}.png"], "label": {"answer": answer, "key_findings": findings}}


def grounding_record(rid: str, patient: str, box: list[float]) -> dict[str, Any]:
    return {"id": rid, "source": "vindr", "patient_key": patient, "stage": "diagnosis", "modality": "mammography",
            "task_family": "grounding", "template_id": "t-box", "answer_provenance": "label",
            "messages": [{"role": "user", "content": f"<image>Where is the lesion in {rid}?"}],
            "images": [f"img/{rid}.png"], "label": {"box": box}}
