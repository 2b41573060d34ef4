"""Render a normalised sample through every applicable template into corpus records."""

from __future__ import annotations

from dataclasses import dataclass, field
from string import Template as TextTemplate
from typing import Any

from breastgpt.corpus.records import MEDIA_TOKENS, MediaRef, Provenance, Record, record_id
from breastgpt.corpus.templates.builders import BUILDERS, Built, NotApplicable, RenderContext
from breastgpt.corpus.templates.schema import Template, TemplateSet, load_templates

LETTERS = "ABCDEF"


@dataclass
class SampleView:
    """What templates see of a sample after normalisation: pseudonymous keys, media refs, labels, boxes."""

    source: str
    sample_id: str
    patient_key: str
    study_key: str
    modality: str
    kind: str
    split: str
    media: list[MediaRef]
    labels: dict[str, Any] = field(default_factory=dict)
    report: str | None = None
    boxes: list[dict[str, Any]] = field(default_factory=list)  # on the 0-1000 grid


def applicable_templates(view: SampleView, tset: TemplateSet) -> list[Template]:
    has_report = bool((view.report or view.labels.get("report") or "").strip())
    return [t for t in tset.templates if t.applies(view.modality, view.labels, bool(view.boxes), has_report)]


def render_sample(view: SampleView, tset: TemplateSet | None = None) -> list[Record]:
    """All records of one sample, in template order (deterministic)."""
    tset = tset or load_templates()
    records = []
    for t in applicable_templates(view, tset):
        rec = render_one(view, t, tset)
        if rec is not None:
            records.append(rec)
    return records


def render_one(view: SampleView, t: Template, tset: TemplateSet) -> Record | None:
    rec_id = record_id(view.source, view.sample_id, t.id)
    ctx = RenderContext(rec_id, view.labels, view.report, view.boxes, tset.vocab_text)
    try:
        built = BUILDERS[t.builder][0](ctx, t)
    except NotApplicable:
        return None
    question = t.questions[ctx.rng("question").randrange(len(t.questions))]
    question = TextTemplate(question).substitute(built.question_vars)
    user, assistant = _turns(view, t, tset, question, built)
    system = tset.prompts["stages"][t.stage] + "\n" + tset.prompts["tasks"][t.family]
    return Record(
        id=rec_id, source=view.source, patient_key=view.patient_key, study_key=view.study_key, stage=t.stage,
        modality=view.modality, kind=view.kind, task_family=t.family, template_id=t.id,
        answer_provenance=Provenance(built.provenance), split=view.split,
        messages=[{"role": "system", "content": system}, {"role": "user", "content": user},
                  {"role": "assistant", "content": assistant}],
        label=_label(t, built), media=list(view.media), objects=_objects(built),
    )


def _turns(view: SampleView, t: Template, tset: TemplateSet, question: str, built: Built) -> tuple[str, str]:
    tokens = "".join(MEDIA_TOKENS[m.kind] for m in view.media)
    if t.family != "closed_vqa":
        return f"{tokens}\n{question}", built.answer
    lines = [f"{LETTERS[i]}. {opt}" for i, opt in enumerate(built.options)]
    user = "\n".join([f"{tokens}\n{question}", *lines, tset.prompts["closed_suffix"]])
    return user, f"{LETTERS[built.answer_index]}. {built.options[built.answer_index]}"


def _label(t: Template, built: Built) -> dict[str, Any]:
    if t.family == "closed_vqa":
        label: dict[str, Any] = {"options": built.options, "answer_index": built.answer_index,
                                 "answer_letter": LETTERS[built.answer_index]}
        if t.clinical_target:
            target = {"name": t.clinical_target, "field": t.args.get("field"), "value": built.clinical_value}
            if built.positive is not None:
                target["positive"] = built.positive
            label["clinical_target"] = target
        return label
    if t.family == "grounding":
        return {"box": built.boxes[0], "boxes": built.boxes, "target": built.target}
    label = {"answer": built.answer, "key_findings": built.key_findings}
    if built.boxes:
        label["box"] = built.boxes[0]
    return label


def _objects(built: Built) -> dict[str, Any] | None:
    if not built.boxes:
        return None
    return {"ref": [built.target] * len(built.boxes) if built.target else [], "bbox": built.boxes,
            "bbox_type": "norm1000"}
