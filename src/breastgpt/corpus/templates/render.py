"""Render a normalised sample through every applicable template into corpus records."""

from __future__ import annotations

from dataclasses import dataclass, field
from string import Template as TextTemplate
from typing import Any

from breastgpt.corpus.records import MEDIA_TOKENS, MediaRef, Provenance, Record, record_id
from breastgpt.corpus.templates.builders import BUILDERS, Built, NotApplicable, RenderContext
from breastgpt.corpus.templates.evidence import unmet_conditions
from breastgpt.corpus.templates.schema import Template, TemplateSet, load_templates
from breastgpt.preprocessing import Preprocessing

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


def applicable_templates(view: SampleView, tset: TemplateSet, preprocessing: Preprocessing | None = None) -> list[Template]:
    """Templates the sample has the labels for; with `preprocessing`, only those whose answer stays visible in
    media normalised that way (`evidence.unmet_conditions`)."""
    has_report = bool((view.report or view.labels.get("report") or "").strip())
    return [t for t in tset.templates if t.applies(view.modality, view.labels, bool(view.boxes), has_report)
            and (preprocessing is None or not unmet_conditions(t, preprocessing))]


# The model's stages: the corpus says "treatment", the clinical wording (and the CLI) says "treatment planning".
STAGE_ALIASES = {"treatment planning": "treatment"}


def system_prompt(stage: str, family: str | None = None, tset: TemplateSet | None = None) -> str:
    """The system prompt of a stage (and task family): the one text used by corpus records, training and
    inference alike, so the model is always asked the way it was trained."""
    prompts = (tset or load_templates()).prompts
    stage = STAGE_ALIASES.get(stage, stage)
    if stage not in prompts["stages"]:
        raise ValueError(f"unknown clinical stage {stage!r}; choose one of {sorted(prompts['stages'])} "
                         "(or 'treatment planning')")
    if family is None:
        return prompts["stages"][stage]
    if family not in prompts["tasks"]:
        raise ValueError(f"unknown task family {family!r}; choose one of {sorted(prompts['tasks'])}")
    return prompts["stages"][stage] + "\n" + prompts["tasks"][family]


ANSWER_STYLES = ("letter", "text")
MEDIA_POSITIONS = ("before", "after")


def render_sample(view: SampleView, tset: TemplateSet | None = None, answer_style: str = "letter",
                  media_position: str = "before", preprocessing: Preprocessing | None = None) -> list[Record]:
    """All records of one sample, in template order (deterministic).

    `answer_style` sets how closed questions are answered: "letter" (the published corpus's "B. <option>") or
    "text" (the option's text alone; the strict parser accepts exact option text). Small models trained from
    scratch learn "text" far faster, since it does not require finding the option's letter in the prompt.

    `media_position` puts the placeholders "before" the question (the published layout) or "after" the whole
    user text. With "after", a causal LLM reads the question first, so its visual tokens can attend to it: a
    small LLM trained from scratch then learns question-specific readings of one image (which finding is asked
    about) in hundreds of steps instead of not at all (docs/notes/2026-12-demo-research.md).

    `preprocessing` (the corpus build's settings) drops templates whose answer those settings remove from the
    pixels (`breastgpt.corpus.templates.evidence`).
    """
    if answer_style not in ANSWER_STYLES:
        raise ValueError(f"answer_style {answer_style!r} not in {ANSWER_STYLES}")
    if media_position not in MEDIA_POSITIONS:
        raise ValueError(f"media_position {media_position!r} not in {MEDIA_POSITIONS}")
    tset = tset or load_templates()
    records = []
    for t in applicable_templates(view, tset, preprocessing):
        rec = render_one(view, t, tset, answer_style, media_position)
        if rec is not None:
            records.append(rec)
    return records


def render_one(view: SampleView, t: Template, tset: TemplateSet, answer_style: str = "letter",
               media_position: str = "before") -> Record | None:
    rec_id = record_id(view.source, view.sample_id, t.id)
    ctx = RenderContext(rec_id, view.labels, view.report, view.boxes, tset.vocab_text)
    try:
        built = BUILDERS[t.builder][0](ctx, t)
    except NotApplicable:
        return None
    question = t.questions[ctx.rng("question").randrange(len(t.questions))]
    question = TextTemplate(question).substitute(built.question_vars)
    user, assistant = _turns(view, t, tset, question, built, answer_style)
    if media_position == "after":
        user = _media_after(user, view)
    text_answers = answer_style == "text" and t.family == "closed_vqa"
    system = system_prompt(t.stage, "closed_vqa_text" if text_answers else t.family, tset)
    return Record(
        id=rec_id, source=view.source, patient_key=view.patient_key, study_key=view.study_key, stage=t.stage,
        modality=view.modality, kind=view.kind, task_family=t.family, template_id=t.id,
        answer_provenance=Provenance(built.provenance), split=view.split,
        messages=[{"role": "system", "content": system}, {"role": "user", "content": user},
                  {"role": "assistant", "content": assistant}],
        label=_label(t, built), media=list(view.media), objects=_objects(built),
    )


def _turns(view: SampleView, t: Template, tset: TemplateSet, question: str, built: Built,
           answer_style: str = "letter") -> tuple[str, str]:
    tokens = "".join(MEDIA_TOKENS[m.kind] for m in view.media)
    if t.family != "closed_vqa":
        return f"{tokens}\n{question}", built.answer
    lines = [f"{LETTERS[i]}. {opt}" for i, opt in enumerate(built.options)]
    chosen = built.options[built.answer_index]
    if answer_style == "text":
        return "\n".join([f"{tokens}\n{question}", *lines, tset.prompts["closed_suffix_text"]]), chosen
    user = "\n".join([f"{tokens}\n{question}", *lines, tset.prompts["closed_suffix"]])
    return user, f"{LETTERS[built.answer_index]}. {chosen}"


def _media_after(user: str, view: SampleView) -> str:
    tokens = "".join(MEDIA_TOKENS[m.kind] for m in view.media)
    return f"{user.removeprefix(tokens).lstrip()}\n{tokens}" if tokens else user


# How each clinical target turns options into a clinical call (SPEC §5: e.g. BI-RADS ≥ 4 = positive), keyed by
# (target, label field). Yes/no questions are binary whatever the target (their option values are the yes/no
# truth). A molecular-subtype choice is scored as hormone-receptor status (luminal = positive), the call that
# decides endocrine therapy.
_TARGET_RULES: dict[tuple[str, str], dict[str, Any]] = {
    ("malignancy", "pathology"): {"kind": "binary", "positive": {"malignant"}},
    ("birads_ordinal", "birads"): {"kind": "ordinal", "threshold": 4},
    ("density_ordinal", "density"): {"kind": "ordinal", "levels": ("A", "B", "C", "D"), "threshold": "C"},
    ("density_ordinal", "tissue"): {"kind": "ordinal", "levels": ("fatty", "fatty_glandular", "dense_glandular"),
                                    "threshold": "dense_glandular"},
    ("biomarker_status", "molecular_subtype"): {"kind": "binary", "positive": {"luminal_a", "luminal_b"}},
    ("node_status", "node_status"): {"kind": "ordinal", "levels": ("n0", "n1_2", "n3_plus"), "threshold": "n1_2"},
}


class ClinicalTargetError(ValueError):
    """A template pairs a clinical target with a field no rule covers."""


def clinical_target(name: str, field_name: str | None, built: Built) -> dict[str, Any]:
    """The bench scorer's target format: name, kind, the clinical value of each option, operating point."""
    if built.positive is not None:  # yes/no: option values are already the positive/negative truth
        return {"name": name, "kind": "binary", "option_values": list(built.option_values)}
    rule = _TARGET_RULES.get((name, field_name or ""))
    if rule is None:
        raise ClinicalTargetError(f"no clinical-target rule for target {name!r} on field {field_name!r}")
    if rule["kind"] == "binary":
        return {"name": name, "kind": "binary",
                "option_values": [value in rule["positive"] for value in built.option_values]}
    target = {"name": name, "kind": "ordinal", "option_values": list(built.option_values),
              "positive_threshold": rule["threshold"]}
    if "levels" in rule:
        target["levels"] = list(rule["levels"])
    return target


def _label(t: Template, built: Built) -> dict[str, Any]:
    if t.family == "closed_vqa":
        label: dict[str, Any] = {"options": built.options, "answer_index": built.answer_index,
                                 "answer_letter": LETTERS[built.answer_index]}
        if t.clinical_target:
            label["clinical_target"] = clinical_target(t.clinical_target, t.args.get("field"), built)
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
