"""Task templates as data: the typed schema, the loader and the checks every data file must pass.

A template file (`data/templates_*.json`) is a JSON list of objects with exactly the keys of `Template` (unknown
keys are errors). Templates name a builder from the fixed registry in `builders.py` by name — data never holds
code. Display text for label values lives in `data/vocab_text.json`; stage and task system prompts in
`data/prompts.json`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, fields
from functools import lru_cache
from importlib import resources
from typing import Any

from breastgpt.corpus.labels import FIELDS
from breastgpt.corpus.records import FAMILIES, STAGES

STAGE_MODALITIES: dict[str, tuple[str, ...]] = {
    "screening": ("mammography", "ultrasound", "ct"),
    "diagnosis": ("mammography", "ultrasound", "mri"),
    "treatment": ("mri", "pathology"),
}
CLINICAL_TARGETS: tuple[str, ...] = ("malignancy", "birads_ordinal", "density_ordinal", "biomarker_status",
                                     "node_status")
DISTRACTOR_RULES: tuple[str, ...] = ("vocabulary", "adjacent")
# Fields a template may require besides the label vocabulary: media-derived facts.
EXTRA_FIELDS: tuple[str, ...] = ("boxes", "report")


class TemplateError(ValueError):
    """A template data file that breaks the schema; the message names the file and the template."""


MAX_OPTIONS = 6  # a closed question shows 2-6 options (A-F)


@dataclass(frozen=True)
class OptionRule:
    """How a closed question's options are drawn from the field's vocabulary: all of its answerable values when
    they are at most MAX_OPTIONS (then `n` must equal their number — `builders.check_builder_args`), else `n`
    (2-6) of them around the answer (`builders._pick_distractors`: why an option set must not tell the answer)."""

    n: int = 4
    distractors: str = "vocabulary"  # "vocabulary": any other values; "adjacent": nearest ordinal neighbours
    values: tuple[Any, ...] = ()  # restrict the vocabulary (e.g. benign/malignant only)

    def __post_init__(self) -> None:
        if not 2 <= self.n <= MAX_OPTIONS:
            raise TemplateError(f"option count {self.n} outside 2-{MAX_OPTIONS}")
        if self.distractors not in DISTRACTOR_RULES:
            raise TemplateError(f"distractor rule {self.distractors!r} not in {DISTRACTOR_RULES}")


@dataclass(frozen=True)
class Template:
    id: str
    stage: str
    modality: str
    family: str
    fields: tuple[str, ...]
    builder: str
    questions: tuple[str, ...]
    args: dict[str, Any] = field(default_factory=dict)
    options: OptionRule | None = None
    clinical_target: str | None = None
    when: dict[str, tuple[Any, ...]] = field(default_factory=dict)  # label field -> allowed values

    def applies(self, modality: str, labels: dict[str, Any], has_boxes: bool, has_report: bool) -> bool:
        """True when the sample has this template's modality, every needed field, and passes `when`."""
        if modality != self.modality:
            return False
        for name in self.fields:
            if name == "boxes":
                if not has_boxes:
                    return False
            elif name == "report":
                if not has_report:
                    return False
            elif name not in labels:
                return False
        return all(labels.get(k) in v for k, v in self.when.items())


def _parse_template(raw: dict[str, Any], where: str) -> Template:
    known = {f.name for f in fields(Template)}
    unknown = set(raw) - known
    if unknown:
        raise TemplateError(f"{where}: unknown keys {sorted(unknown)}; allowed: {sorted(known)}")
    try:
        opts = raw.get("options")
        if opts is not None:
            extra = set(opts) - {"n", "distractors", "values"}
            if extra:
                raise TemplateError(f"unknown option keys {sorted(extra)}")
            opts = OptionRule(n=opts.get("n", 4), distractors=opts.get("distractors", "vocabulary"),
                              values=tuple(opts.get("values", ())))
        return Template(
            id=raw["id"], stage=raw["stage"], modality=raw["modality"], family=raw["family"],
            fields=tuple(raw["fields"]), builder=raw["builder"], questions=tuple(raw["questions"]),
            args=dict(raw.get("args", {})), options=opts, clinical_target=raw.get("clinical_target"),
            when={k: tuple(v) for k, v in raw.get("when", {}).items()},
        )
    except (KeyError, TypeError, TemplateError) as exc:
        raise TemplateError(f"{where}: {exc}") from exc


def check_template(t: Template, where: str) -> None:
    """Schema rules that do not need the builder registry (builders.py checks its own arguments)."""
    def fail(problem: str) -> None:
        raise TemplateError(f"{where}: template {t.id!r}: {problem}")

    if t.stage not in STAGES or t.modality not in STAGE_MODALITIES[t.stage]:
        fail(f"stage/modality {t.stage}/{t.modality} is outside the stage mapping {STAGE_MODALITIES}")
    if t.family not in FAMILIES:
        fail(f"family {t.family!r} not in {FAMILIES}")
    if len(t.questions) < 3 or len(set(t.questions)) != len(t.questions):
        fail("needs at least 3 distinct question phrasings")
    for name in (*t.fields, *t.when):
        if name not in FIELDS and name not in EXTRA_FIELDS:
            fail(f"label field {name!r} is not in the vocabulary (corpus/labels.py)")
    if (t.family == "closed_vqa") != (t.options is not None):
        fail("closed_vqa templates, and only they, need an `options` rule")
    if t.clinical_target is not None and t.clinical_target not in CLINICAL_TARGETS:
        fail(f"clinical_target {t.clinical_target!r} not in {CLINICAL_TARGETS}")


@dataclass(frozen=True)
class TemplateSet:
    templates: tuple[Template, ...]
    prompts: dict[str, Any]
    vocab_text: dict[str, dict[str, str]]
    digest: str  # sha256 over all data files: part of every build fingerprint

    def by_id(self, template_id: str) -> Template:
        for t in self.templates:
            if t.id == template_id:
                return t
        raise KeyError(f"unknown template {template_id!r}")


def _data_files() -> list[tuple[str, str]]:
    root = resources.files("breastgpt.corpus.templates") / "data"
    names = sorted(p.name for p in root.iterdir() if p.name.endswith(".json"))
    return [(n, (root / n).read_text(encoding="utf-8")) for n in names]


@lru_cache(maxsize=1)
def load_templates() -> TemplateSet:
    """Load and validate every packaged template file (cached; the data is immutable at run time)."""
    from breastgpt.corpus.templates.builders import check_builder_args

    files = _data_files()
    digest = hashlib.sha256()
    by_name: dict[str, Any] = {}
    for name, text in files:
        digest.update(name.encode() + b"\x00" + text.encode() + b"\x00")
        try:
            by_name[name] = json.loads(text)
        except json.JSONDecodeError as exc:
            raise TemplateError(f"templates/data/{name}: invalid JSON ({exc.msg}, line {exc.lineno})") from exc
    templates: list[Template] = []
    for name in sorted(n for n in by_name if n.startswith("templates_")):
        for i, raw in enumerate(by_name[name]):
            where = f"templates/data/{name}[{i}]"
            t = _parse_template(raw, where)
            check_template(t, where)
            check_builder_args(t, where)
            templates.append(t)
    ids = [t.id for t in templates]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise TemplateError(f"templates/data: duplicate template ids {dupes}")
    return TemplateSet(tuple(templates), by_name["prompts.json"], by_name["vocab_text.json"], digest.hexdigest())


def value_key(value: Any) -> str:
    """The key of a label value in vocab_text.json (JSON object keys are strings; booleans lower-case)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
