"""The fixed registry of answer builders that templates name.

A builder turns a sample's labels (and report / normalised boxes) into an answer. Everything it does is
deterministic: where a choice is needed (distractors, option order, which finding to ask about) it is drawn from
a hash of the record id, so the same record always renders identically and option letters are balanced across a
corpus. A builder raises `NotApplicable` when the sample cannot support the question (the template is skipped).
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field
from string import Template as TextTemplate
from typing import Any, Callable

from breastgpt.corpus.labels import FIELDS
from breastgpt.corpus.templates.schema import MAX_OPTIONS, Template, TemplateError, value_key

YES, NO = "Yes", "No"


class NotApplicable(Exception):
    """The sample lacks what this template needs (e.g. too few absent CT findings for distractors)."""


@dataclass
class RenderContext:
    record_id: str
    labels: dict[str, Any]
    report: str | None
    boxes: list[dict[str, Any]]  # normalised boxes: {'box': [x1,y1,x2,y2(,z1,z2)] on the 0-1000 grid, 'label'}
    vocab_text: dict[str, dict[str, str]]

    def rng(self, purpose: str) -> random.Random:
        digest = hashlib.sha256(f"{self.record_id}|{purpose}".encode()).digest()
        return random.Random(int.from_bytes(digest[:8], "big"))

    def text(self, field_name: str, value: Any) -> str:
        table = self.vocab_text.get(field_name, {})
        return table.get(value_key(value), str(value).replace("_", " "))


@dataclass
class Built:
    """A builder's result; closed builders fill `options`/`answer_index`, the others `answer`."""

    provenance: str = "label"
    answer: str = ""
    key_findings: list[str] = field(default_factory=list)
    options: list[str] = field(default_factory=list)
    option_values: list[Any] = field(default_factory=list)  # the label value each option stands for
    answer_index: int = -1
    clinical_value: Any = None
    positive: bool | None = None
    boxes: list[list[int]] = field(default_factory=list)
    target: str = ""
    question_vars: dict[str, str] = field(default_factory=dict)


def shuffle_options(ctx: RenderContext, correct: str, distractors: list[str],
                    values: list[Any] | None = None) -> tuple[list[str], int, list[Any]]:
    """Per-record uniform shuffle seeded by the record id: every letter is equally likely to be correct.

    `values` (the label value behind each option, correct first) are shuffled along with the texts.
    """
    order = list(range(1 + len(distractors)))
    ctx.rng("options").shuffle(order)
    texts = [correct, *distractors]
    values = values if values is not None else texts
    return [texts[i] for i in order], order.index(0), [values[i] for i in order]


def _vocabulary(t: Template, field_name: str) -> tuple[Any, ...]:
    """The values this template can answer: the option rule's `values` (or the field's whole vocabulary), less any
    value its `when` filter excludes — an option that can never be correct would be one a text-only reader learns to
    skip."""
    assert t.options is not None
    vocab = t.options.values or FIELDS[field_name].values
    allowed = t.when.get(field_name)
    return tuple(v for v in vocab if allowed is None or v in allowed)


def option_count(t: Template, vocab: tuple[Any, ...]) -> int:
    """How many options a `field_choice` question shows: the whole vocabulary when it fits in MAX_OPTIONS (then the
    option set is the same for every answer), else the rule's `n`."""
    assert t.options is not None
    return len(vocab) if len(vocab) <= MAX_OPTIONS else min(t.options.n, len(vocab))


def _pick_distractors(ctx: RenderContext, t: Template, vocab: tuple[Any, ...], answer: Any) -> list[Any]:
    """The wrong options beside `answer`, chosen so that the option set does not tell the answer.

    The answer is always among the options, so a subset of a larger vocabulary drawn around it leaks: a value shown
    is likelier to be the answer than one left out, and ordinal neighbours centred on the answer put it in the
    middle, where a model that never looks at the image learns to point (on the demo's abnormality-type questions,
    always choosing the offered option most often correct in training scored 75-83 % against a prior of 52-60 %;
    docs/notes/2026-12-demo-research.md). So a vocabulary of up to MAX_OPTIONS values is shown
    whole (`option_count`); an ordinal ("adjacent") one larger than that shows a window of `n` consecutive values
    drawn uniformly among the windows that hold the answer, so its place in the window is uniform; a nominal one
    larger than that draws `n - 1` distractors at random — the one residual leak.
    """
    assert t.options is not None
    n = option_count(t, vocab)
    rng = ctx.rng("distractors")
    if t.options.distractors == "adjacent":
        pos = vocab.index(answer)
        starts = [s for s in range(len(vocab) - n + 1) if s <= pos < s + n]
        start = starts[rng.randrange(len(starts))]
        return [v for v in vocab[start:start + n] if v != answer]
    others = [v for v in vocab if v != answer]
    tiebreak = {value_key(v): rng.random() for v in others}
    others.sort(key=lambda v: tiebreak[value_key(v)])
    return others[: n - 1]


# ---------------------------------------------------------------------------------------------------- closed


def field_choice(ctx: RenderContext, t: Template) -> Built:
    name = t.args["field"]
    answer = ctx.labels[name]
    vocab = _vocabulary(t, name)
    if answer not in vocab:
        raise NotApplicable(f"{name}={answer!r} outside the template's option values")
    distractors = _pick_distractors(ctx, t, vocab, answer)
    options, idx, values = shuffle_options(ctx, ctx.text(name, answer), [ctx.text(name, v) for v in distractors],
                                           [answer, *distractors])
    return Built(options=options, option_values=values, answer_index=idx, clinical_value=answer)


def _yes_no(ctx: RenderContext, value: Any, positive: bool) -> Built:
    options, idx, values = shuffle_options(ctx, YES if positive else NO, [NO if positive else YES],
                                           [positive, not positive])
    return Built(options=options, option_values=values, answer_index=idx, clinical_value=value, positive=positive)


def yes_no(ctx: RenderContext, t: Template) -> Built:
    name = t.args["field"]
    value = ctx.labels[name]
    if "key" in t.args:
        if t.args["key"] not in value:
            raise NotApplicable(f"{name} has no entry {t.args['key']!r}")
        value = value[t.args["key"]]
    positive_values = t.args.get("positive", [True])
    return _yes_no(ctx, value, value in positive_values)


def triple_negative(ctx: RenderContext, t: Template) -> Built:
    status = {k: ctx.labels[k] for k in ("er", "pr", "her2")}
    return _yes_no(ctx, status, not any(status.values()))


def present_choice(ctx: RenderContext, t: Template) -> Built:
    """Which one of these findings is present: one present finding against absent ones."""
    assert t.options is not None
    name = t.args["field"]
    findings: dict[str, bool] = ctx.labels[name]
    present = sorted(k for k, v in findings.items() if v)
    absent = sorted(k for k, v in findings.items() if not v)
    n = t.options.n
    if not present or len(absent) < n - 1:
        raise NotApplicable(f"{name}: need 1 present and {n - 1} absent findings")
    rng = ctx.rng("present")
    correct = present[rng.randrange(len(present))]
    distractors = rng.sample(absent, n - 1)
    options, idx, values = shuffle_options(ctx, ctx.text(name, correct), [ctx.text(name, d) for d in distractors],
                                           [correct, *distractors])
    return Built(options=options, option_values=values, answer_index=idx, clinical_value=correct)


# ---------------------------------------------------------------------------------------------------- open


def _fill(sentence: str, **values: str) -> str:
    # string.Template only substitutes names: no attribute access or formatting code can come from data.
    return TextTemplate(sentence).substitute(values)


def field_sentence(ctx: RenderContext, t: Template) -> Built:
    name = t.args["field"]
    value_text = ctx.text(name, ctx.labels[name])
    return Built(answer=_fill(t.args["sentence"], value=value_text), key_findings=[value_text],
                 clinical_value=ctx.labels[name])


def value_sentence(ctx: RenderContext, t: Template) -> Built:
    """One fixed sentence per label value (e.g. the management that follows a BI-RADS category)."""
    name = t.args["field"]
    value = ctx.labels[name]
    sentence = t.args["sentences"].get(value_key(value))
    if sentence is None:
        raise NotApplicable(f"no sentence for {name}={value!r}")
    value_text = ctx.text(name, value)
    return Built(answer=_fill(sentence, value=value_text), key_findings=[value_text], clinical_value=value)


def multi_sentence(ctx: RenderContext, t: Template) -> Built:
    """One sentence per field present, in the order the template lists them."""
    parts, findings = [], []
    for name, sentence in t.args["sentences"].items():
        if name in ctx.labels:
            value_text = ctx.text(name, ctx.labels[name])
            parts.append(_fill(sentence, value=value_text))
            findings.append(value_text)
    return Built(answer=" ".join(parts), key_findings=findings)


def finding_list(ctx: RenderContext, t: Template) -> Built:
    findings: dict[str, bool] = ctx.labels[t.args["field"]]
    present = [ctx.text(t.args["field"], k) for k in sorted(findings) if findings[k]]
    if not present:
        return Built(answer=t.args["none_sentence"], key_findings=[])
    return Built(answer=_fill(t.args["some_sentence"], list=", ".join(present)), key_findings=present)


def report_text(ctx: RenderContext, t: Template) -> Built:
    report = (ctx.report or ctx.labels.get("report") or "").strip()
    if not report:
        raise NotApplicable("no report text")
    findings = [ctx.text(n, ctx.labels[n]) for n in t.args.get("key_fields", []) if n in ctx.labels]
    return Built(provenance="report", answer=report, key_findings=findings)


# ---------------------------------------------------------------------------------------------------- boxes


def box_text(box: list[int]) -> str:
    return "[" + ",".join(str(int(v)) for v in box) + "]"


def _boxes(ctx: RenderContext) -> list[list[int]]:
    boxes = [[int(round(v)) for v in b["box"]] for b in ctx.boxes]
    if not boxes:
        raise NotApplicable("no boxes")
    return boxes


def box_grounding(ctx: RenderContext, t: Template) -> Built:
    boxes = _boxes(ctx)
    return Built(answer=", ".join(box_text(b) for b in boxes), boxes=boxes, target=t.args["target"],
                 question_vars={"target": t.args["target"]})


def box_caption(ctx: RenderContext, t: Template) -> Built:
    box = _boxes(ctx)[0]
    described = multi_sentence(ctx, t)
    return Built(answer=described.answer, key_findings=described.key_findings, boxes=[box],
                 question_vars={"box": box_text(box)})


BuilderFn = Callable[[RenderContext, Template], Built]

# name -> (function, family it serves, required args, optional args)
BUILDERS: dict[str, tuple[BuilderFn, str, frozenset[str], frozenset[str]]] = {
    "field_choice": (field_choice, "closed_vqa", frozenset({"field"}), frozenset()),
    "yes_no": (yes_no, "closed_vqa", frozenset({"field"}), frozenset({"positive", "key"})),
    "triple_negative": (triple_negative, "closed_vqa", frozenset(), frozenset()),
    "present_choice": (present_choice, "closed_vqa", frozenset({"field"}), frozenset()),
    "field_sentence": (field_sentence, "open_vqa", frozenset({"field", "sentence"}), frozenset()),
    "value_sentence": (value_sentence, "open_vqa", frozenset({"field", "sentences"}), frozenset()),
    "multi_sentence": (multi_sentence, "open_vqa", frozenset({"sentences"}), frozenset()),
    "finding_list": (finding_list, "open_vqa", frozenset({"field", "none_sentence", "some_sentence"}),
                     frozenset()),
    "report_text": (report_text, "report", frozenset(), frozenset({"key_fields"})),
    "box_grounding": (box_grounding, "grounding", frozenset({"target"}), frozenset()),
    "box_caption": (box_caption, "grounded_caption", frozenset({"sentences"}), frozenset()),
}


def check_builder_args(t: Template, where: str) -> None:
    if t.builder not in BUILDERS:
        raise TemplateError(f"{where}: template {t.id!r}: unknown builder {t.builder!r}; known: {sorted(BUILDERS)}")
    _, family, required, optional = BUILDERS[t.builder]
    if family != t.family:
        raise TemplateError(f"{where}: template {t.id!r}: builder {t.builder} serves {family}, not {t.family}")
    given = set(t.args)
    if not required <= given or given - required - optional:
        raise TemplateError(f"{where}: template {t.id!r}: builder {t.builder} takes args {sorted(required)} "
                            f"(+ optional {sorted(optional)}), got {sorted(given)}")
    named = t.args.get("field")
    if named is not None and named not in t.fields:
        raise TemplateError(f"{where}: template {t.id!r}: builder field {named!r} must be listed in `fields`")
    sentences = t.args.get("sentences") if t.builder in ("multi_sentence", "box_caption") else None
    if sentences is not None and not any(f in t.fields for f in sentences):
        raise TemplateError(f"{where}: template {t.id!r}: at least one sentence field must be required")
    if t.builder == "field_choice" and t.options is not None and named in FIELDS:
        vocab = _vocabulary(t, named)
        if option_count(t, vocab) != t.options.n:
            raise TemplateError(f"{where}: template {t.id!r}: options.n={t.options.n}, but its {len(vocab)} "
                                f"answerable values are all shown (a subset drawn around the answer would tell it "
                                f"to a reader who never looks at the image); set n to {len(vocab)}")
