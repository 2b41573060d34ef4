"""Every metric a bench report or comparison names, registered once.

A metric is registered with what the rest of the bench needs to know about it: its name in report.json, its
heading, the per-item column whose mean it is, the task families whose cell tables show it, its value of
``--open-metric`` when it can be the open-ended score, and whether baselines are scored on it. Scoring, the
aggregate tables, baselines, the HTML report, ``compare`` and the CLI choices all read this registry.

Adding a metric computed from an answer's text is one decorated function here::

    @text_metric("answer_length", "answer length", column="length", families=OPEN_FAMILIES)
    def answer_length(item: BenchItem, text: str) -> float:
        return float(len(text.split())) if item.answer is not None else float("nan")

Scoring then fills the column for every response (and for the training prior's answer, when ``baseline``), the
groups report its mean with an interval, and the open-ended families' cell tables show it. Metrics that need a
parse of the answer (choice, box), a model (embeddings), a judge's file or several variants at once are filled by
`scoring.py`/`aggregate.py` and registered here with `declare_metric`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from breastgpt.bench.items import BenchItem
from breastgpt.bench.text_metrics import key_finding_recall, rouge_l
from breastgpt.registry import Registry

OPEN_FAMILIES = ("open_vqa", "report", "grounded_caption")
TextScore = Callable[[BenchItem, str], float]


@dataclass(frozen=True)
class Metric:
    name: str
    label: str  # table heading
    column: str | None = None  # per-item column whose mean is reported; None: computed by its own table
    families: tuple[str, ...] = ()  # task families whose cell tables show it
    open_option: str | None = None  # its value of --open-metric (an open-ended score)
    baseline: bool = False  # chance, prior and the ablated runs are scored on it as well
    # groups (a mean per group) | clinical (per clinical target) | agreement (between graders) | calibration
    table: str = "groups"
    per_item: bool = True  # the column is one value per response; False: per item, across variants (circular)
    score_text: TextScore | None = None  # value from the answer text; None: filled by scoring.py


METRICS: Registry[Metric] = Registry("bench metric")


def declare_metric(name: str, label: str, **fields) -> None:
    """Register a metric whose values scoring.py or aggregate.py compute."""
    METRICS.add(name, Metric(name, label, **fields))


def text_metric(name: str, label: str, *, column: str | None = None, **fields) -> Callable[[TextScore], TextScore]:
    """Decorator: register `score(item, answer_text) -> float` (NaN where it does not apply) as metric `name`,
    reported as the mean of per-item column `column` (default: the name)."""
    def add(score: TextScore) -> TextScore:
        METRICS.add(name, Metric(name, label, column=column or name, score_text=score, **fields))
        return score
    return add


# ------------------------------------------------------------------------------------------ derived views


def group_metrics() -> dict[str, str]:
    """Metric -> per-item column, for every metric reported as a mean per group."""
    return {m.name: m.column for _, m in METRICS.items() if m.table == "groups" and m.column}


def response_columns() -> tuple[str, ...]:
    """Per-response metric columns of the scored frame, in registration order."""
    return tuple(m.column for _, m in METRICS.items() if m.column and m.per_item)


def baseline_columns() -> tuple[str, ...]:
    return tuple(m.column for _, m in METRICS.items() if m.column and m.baseline)


def text_scored() -> tuple[Metric, ...]:
    return tuple(m for _, m in METRICS.items() if m.score_text is not None)


def family_metrics() -> dict[str, tuple[str, ...]]:
    """Task family -> the metrics its cell table shows, in registration order (families in order of first use)."""
    out: dict[str, tuple[str, ...]] = {}
    for _, m in METRICS.items():
        for family in m.families:
            out[family] = (*out.get(family, ()), m.name)
    return out


def open_options() -> tuple[str, ...]:
    """The values of ``--open-metric`` besides ``auto``."""
    return tuple(m.open_option for _, m in METRICS.items() if m.open_option)


def open_metric(option: str) -> Metric:
    """The metric an ``--open-metric`` value names."""
    found = next((m for _, m in METRICS.items() if m.open_option == option), None)
    if found is None:
        raise ValueError(f"open metric {option!r} is not one of {', '.join(open_options())}")
    return found


def column_label(column: str) -> str:
    return next((m.label for _, m in METRICS.items() if m.column == column), column)


def clinical_metrics() -> tuple[str, ...]:
    return tuple(m.name for _, m in METRICS.items() if m.table == "clinical")


# ------------------------------------------------------------------------------------------- the metrics

declare_metric("accuracy", "accuracy", column="correct", families=("closed_vqa",), baseline=True)
declare_metric("unparseable_rate", "unparseable rate", column="unparseable", families=("closed_vqa",))
declare_metric("mean_iou", "mean IoU", column="iou", families=("grounding",), baseline=True)
declare_metric("hit_rate@0.5", "hit rate @ IoU 0.5", column="hit", families=("grounding",), baseline=True)
declare_metric("judge", "judge score", column="judge", families=OPEN_FAMILIES, open_option="judge")
declare_metric("embedding_cosine", "embedding similarity", column="embedding", families=OPEN_FAMILIES,
               open_option="embedding", baseline=True)


@text_metric("rouge_l", "ROUGE-L", families=OPEN_FAMILIES, open_option="rouge_l", baseline=True)
def _rouge_l(item: BenchItem, text: str) -> float:
    return rouge_l(text, item.answer) if item.answer is not None else np.nan


@text_metric("key_finding_recall", "key-finding recall", column="kf_recall", families=OPEN_FAMILIES,
             open_option="key_finding_recall", baseline=True)
def _key_finding_recall(item: BenchItem, text: str) -> float:
    return key_finding_recall(text, item.key_findings).recall if item.answer is not None else np.nan


declare_metric("circular_accuracy", "circular accuracy", column="circular", per_item=False)
declare_metric("option_accuracy", "option-score accuracy", column="option_correct")
for _name, _label in (("sensitivity", "sensitivity"), ("specificity", "specificity"), ("auc", "AUC"),
                      ("kappa_linear", "linear κ"), ("kappa_quadratic", "quadratic κ")):
    declare_metric(_name, _label, table="clinical")
declare_metric("spearman", "Spearman ρ", table="agreement")  # judges with each other and with human grades
declare_metric("ece", "expected calibration error", table="calibration")  # of the option scores


__all__ = ["METRICS", "OPEN_FAMILIES", "Metric", "baseline_columns", "clinical_metrics", "column_label",
           "declare_metric", "family_metrics", "group_metrics", "open_metric", "open_options", "response_columns",
           "text_metric", "text_scored"]
