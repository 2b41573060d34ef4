"""Pathway records: one patient's studies linked screening → diagnosis → treatment as one multi-turn conversation.

A patient (one source, one pseudonymous patient key) with a screening study and a treatment-planning study with a
receptor label gets one record per pathway template (`templates/data/pathway.json`). Each earlier stage is a turn
— its media, its question and the answer from its labels — and the last turn asks a question whose answer needs
the treatment study (receptor status and the treatment question it raises) after the history of the others.
Every answer comes from labels (provenance `label`); the record's stage is `treatment`, its split the patient's.

A study's stage is the manifest's `stage` column when the source has one (`sample.meta["stage"]`), otherwise the
modality's usual place (mammography and CT: screening; ultrasound and MRI: diagnosis; pathology: treatment).
Studies of one stage are ordered by `date` when given, then by study key, and the first is used.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from string import Template as TextTemplate
from typing import Any, Iterable

from breastgpt.corpus.records import MEDIA_TOKENS, STAGES, MediaRef, Provenance, Record, record_id
from breastgpt.corpus.templates.render import LETTERS, system_prompt

PATHWAY_PREFIX = "pathway-"
DEFAULT_STAGE = {"mammography": "screening", "ct": "screening", "ultrasound": "diagnosis", "mri": "diagnosis",
                 "pathology": "treatment"}
_DATA = Path(__file__).with_name("templates") / "data" / "pathway.json"


@dataclass(frozen=True)
class Study:
    """One finished build item as the pathway sees it: keys, stage, media and labels (no raw identifier)."""

    source: str
    patient_key: str
    study_key: str
    split: str
    stage: str
    date: str
    modality: str
    kind: str
    media: tuple[MediaRef, ...]
    labels: dict[str, Any]


@lru_cache(maxsize=1)
def pathway_templates() -> dict[str, Any]:
    return json.loads(_DATA.read_text(encoding="utf-8"))


def pathway_template_ids() -> list[str]:
    return [t["id"] for t in pathway_templates()["templates"]]


def is_pathway(record: Record | dict[str, Any]) -> bool:
    template = record["template_id"] if isinstance(record, dict) else record.template_id
    return template.startswith(PATHWAY_PREFIX)


def study_from_item(sample: Any, patient_key: str, study_key: str, split: str, state: dict[str, Any]) -> Study:
    """A `Study` from a build task's sample and its finished item state."""
    from breastgpt.corpus.build_items import media_refs
    from breastgpt.corpus.sources.base import NormalisedMedia

    media = NormalisedMedia(**state["media"])
    stage = sample.meta.get("stage") or DEFAULT_STAGE[sample.modality]
    return Study(sample.source, patient_key, study_key, split, stage, str(sample.meta.get("date", "")),
                 sample.modality, media.kind, tuple(media_refs(media)), dict(sample.labels))


def _first_by_stage(studies: list[Study]) -> dict[str, Study]:
    first: dict[str, Study] = {}
    for study in sorted(studies, key=lambda s: (s.date, s.study_key)):
        first.setdefault(study.stage, study)
    return first


def _placeholders(study: Study) -> str:
    return "".join(MEDIA_TOKENS[m.kind] for m in study.media)


def _with_media(text: str, study: Study, media_position: str) -> str:
    tokens = _placeholders(study)
    return f"{text}\n{tokens}" if media_position == "after" else f"{tokens}\n{text}"


def _history_turn(study: Study, media_position: str) -> list[dict[str, str]] | None:
    spec = pathway_templates()["turns"].get(study.stage, {}).get(study.modality)
    if spec is None or spec["field"] not in study.labels:
        return None
    answer = TextTemplate(spec["answer"]).substitute(value=study.labels[spec["field"]])
    return [{"role": "user", "content": _with_media(spec["question"], study, media_position)},
            {"role": "assistant", "content": answer[:1].upper() + answer[1:]}]


def _options(template: dict[str, Any], value: bool, rec_id: str) -> tuple[list[str], int, list[bool]]:
    """Both options in an order fixed by the record id (so the correct letter is balanced across records)."""
    values = [True, False]
    random.Random(int(hashlib.sha256(rec_id.encode()).hexdigest()[:12], 16)).shuffle(values)
    return [template["options"][str(v).lower()] for v in values], values.index(value), values


def closed_question(question: str, options: list[str], answer_style: str = "letter") -> str:
    """A multiple-choice question as the corpus writes it: the question, lettered options, the answer rule."""
    from breastgpt.corpus.templates import load_templates

    suffix = load_templates().prompts["closed_suffix_text" if answer_style == "text" else "closed_suffix"]
    return "\n".join([question, *[f"{LETTERS[i]}. {o}" for i, o in enumerate(options)], suffix])


def _final_turn(template: dict[str, Any], study: Study, rec_id: str, answer_style: str,
                media_position: str) -> tuple[list[dict[str, str]], dict[str, Any]]:
    options, answer, values = _options(template, bool(study.labels[template["field"]]), rec_id)
    question = closed_question(template["question"], options, answer_style)
    reply = options[answer] if answer_style == "text" else f"{LETTERS[answer]}. {options[answer]}"
    label = {"options": options, "answer_index": answer, "answer_letter": LETTERS[answer],
             "clinical_target": {"name": "biomarker_status", "kind": "binary", "option_values": values}}
    return [{"role": "user", "content": _with_media(question, study, media_position)},
            {"role": "assistant", "content": reply}], label


def patient_records(studies: list[Study], answer_style: str = "letter", media_position: str = "before") -> list[Record]:
    """The pathway records of one patient ([] when the patient lacks a screening or a labelled treatment study)."""
    first = _first_by_stage(studies)
    treatment, screening = first.get("treatment"), first.get("screening")
    if treatment is None or screening is None:
        return []
    history: list[dict[str, str]] = []
    used: list[Study] = []
    for stage in STAGES[:-1]:
        study = first.get(stage)
        turn = _history_turn(study, media_position) if study is not None else None
        if turn is not None:
            history += turn
            used.append(study)
    if not used or used[0].stage != "screening":
        return []
    family = "closed_vqa_text" if answer_style == "text" else "closed_vqa"
    records = []
    for template in pathway_templates()["templates"]:
        if template["field"] not in treatment.labels:
            continue
        rec_id = record_id(treatment.source, f"pathway|{treatment.study_key}", template["id"])
        final, label = _final_turn(template, treatment, rec_id, answer_style, media_position)
        records.append(Record(
            id=rec_id, source=treatment.source, patient_key=treatment.patient_key, study_key=treatment.study_key,
            stage="treatment", modality=treatment.modality, kind=treatment.kind, task_family="closed_vqa",
            template_id=template["id"], answer_provenance=Provenance("label"), split=treatment.split,
            messages=[{"role": "system", "content": system_prompt("treatment", family)}, *history, *final],
            label=label, media=[m for s in [*used, treatment] for m in s.media]))
    return records


def pathway_records(studies: Iterable[Study], answer_style: str = "letter", media_position: str = "before") -> list[Record]:
    """Pathway records of every patient, sorted by record id (deterministic whatever the input order)."""
    by_patient: dict[tuple[str, str], list[Study]] = {}
    for study in studies:
        if study.patient_key != "unknown":
            by_patient.setdefault((study.source, study.patient_key), []).append(study)
    records = [r for group in by_patient.values() for r in patient_records(group, answer_style, media_position)]
    return sorted(records, key=lambda r: r.id)


def linked_patients(records: Iterable[Record]) -> dict[str, int]:
    """Counts over pathway records: records, patients, and patients whose pathway has all three stages."""
    rows = [r for r in records if is_pathway(r)]
    patients = {(r.source, r.patient_key) for r in rows}
    three = {(r.source, r.patient_key) for r in rows if sum(1 for m in r.messages if m["role"] == "user") >= 3}
    return {"records": len(rows), "patients": len(patients), "patients_with_three_stages": len(three)}


__all__ = ["PATHWAY_PREFIX", "Study", "closed_question", "is_pathway", "linked_patients", "pathway_records", "pathway_template_ids",
           "pathway_templates", "patient_records", "study_from_item"]
