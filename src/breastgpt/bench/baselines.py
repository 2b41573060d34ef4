"""The baselines shown beside every score, and the shortcut flags decided by paired intervals.

Baselines (per item, then averaged over any group with the same patient-clustered bootstrap as the model):
* `chance`: a uniform guess among a closed question's options (1 / number of options); undefined elsewhere.
* `prior`: the per-template training prior — what a model that never looks at the image and answers each template
  with its most common training answer would score: the majority option text (closed), the coordinate-wise median
  training box (grounding), the most common training reference text (open-ended, scored by ROUGE-L and key-finding
  recall; no judge or embedding is run for it). Needs the training records (`bench score --train`).
* `text_only`: the model's own no-image ablation (`bench run --ablate no-image`), when it was run.

Shortcut flags compare the model with a baseline on the same items inside every resample (paired differences,
statistics.py): the model is flagged on a cell when the lower end of the 95 % interval of (model − baseline) is at
or below `ScoreConfig.shortcut_min_gap` (0: the model is not shown to beat the baseline) — for closed accuracy,
grounding IoU and the open-ended metric alike. Option order: flagged when the permuted-options interval excludes 0.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from breastgpt.bench.items import BenchItem
from breastgpt.bench import metric_registry
from breastgpt.bench.metric_registry import baseline_columns, column_label, group_metrics, text_scored
from breastgpt.bench.metrics import iou

BASELINES = ("chance", "prior", "text_only")
ABLATION_BASELINES = {"text_only": "no_image", "shuffled_image": "shuffle_image"}  # baseline -> ablation variant
# The metric each task family's shortcut check compares (open-ended: see `open_ablation_column`).
FAMILY_GAP_COLUMN = {"closed_vqa": "correct", "grounding": "iou"}


@dataclass(frozen=True)
class TemplatePrior:
    """The most common training answer of one template."""

    option_text: str | None = None  # closed: normalised option text
    box: tuple[float, ...] | None = None  # grounding: coordinate-wise median box
    answer: str | None = None  # open-ended: most common reference text
    n_train: int = 0


def _norm(text: str) -> str:
    return " ".join(str(text).lower().split())


def template_priors(train: list[BenchItem]) -> dict[str, TemplatePrior]:
    """Per template id, the training prior (ties broken by sorted text, so the prior is deterministic)."""
    by_template: dict[str, list[BenchItem]] = {}
    for it in train:
        by_template.setdefault(it.template_id, []).append(it)
    return {tid: _prior(items) for tid, items in by_template.items()}


def _prior(items: list[BenchItem]) -> TemplatePrior:
    closed = [_norm(it.options[it.answer_index]) for it in items if it.is_closed and it.answer_index is not None]
    boxes = [it.box for it in items if it.box is not None and it.task_family == "grounding"]
    answers = [it.answer for it in items if it.answer is not None]
    box = None
    if boxes:
        length = Counter(len(b) for b in boxes).most_common(1)[0][0]
        box = tuple(float(v) for v in np.median(np.array([b for b in boxes if len(b) == length]), axis=0))
    return TemplatePrior(option_text=_majority(closed), box=box, answer=_majority(answers), n_train=len(items))


def _majority(values: list[str]) -> str | None:
    if not values:
        return None
    counts = Counter(values)
    best = max(counts.values())
    return sorted(v for v, c in counts.items() if c == best)[0]


def prior_scores(items: list[BenchItem], priors: dict[str, TemplatePrior]) -> pd.DataFrame:
    """Per item, the scores of the training prior's answer (NaN where its template has no prior)."""
    rows = []
    for it in items:
        p = priors.get(it.template_id)
        row = dict.fromkeys(baseline_columns(), np.nan)
        if p is not None and it.is_closed and p.option_text is not None:
            row["correct"] = float(_norm(it.options[it.answer_index]) == p.option_text)
        if p is not None and it.task_family == "grounding" and it.box is not None and p.box is not None:
            row["iou"] = iou(p.box if len(p.box) == len(it.box) else None, it.box)
            row["hit"] = float(row["iou"] >= 0.5)
        if p is not None and it.answer is not None and p.answer is not None:
            row.update({m.column: m.score_text(it, p.answer) for m in text_scored() if m.baseline})
        rows.append(row)
    return pd.DataFrame(rows, columns=list(baseline_columns()))


def chance_scores(items: list[BenchItem]) -> pd.DataFrame:
    rows = [{**dict.fromkeys(baseline_columns(), np.nan), **({"correct": 1 / len(it.options)} if it.is_closed else {})}
            for it in items]
    return pd.DataFrame(rows, columns=list(baseline_columns()))


def ablation_scores(items: list[BenchItem], df: pd.DataFrame, variant: str) -> pd.DataFrame | None:
    """The model's scores under an ablation, aligned to the items (NaN where the ablation did not ask)."""
    sub = df[df["variant"] == variant]
    if sub.empty:
        return None
    return sub.set_index("item_id")[list(baseline_columns())].reindex([it.id for it in items]).reset_index(drop=True)


def baseline_frames(items: list[BenchItem], full: pd.DataFrame, df: pd.DataFrame,
                    train: list[BenchItem] | None) -> dict[str, pd.DataFrame]:
    """Each baseline as a copy of the full-variant frame with its own scores in the metric columns."""
    scores: dict[str, pd.DataFrame | None] = {"chance": chance_scores(items)}
    scores["prior"] = prior_scores(items, template_priors(train)) if train else None
    for name, variant in ABLATION_BASELINES.items():
        scores[name] = ablation_scores(items, df, variant)
    out = {}
    for name, values in scores.items():
        if values is None:
            continue
        frame = full.copy()
        for column in group_metrics().values():  # a metric the baseline lacks is undefined, not the model's
            frame[column] = values[column].to_numpy(float) if column in values else np.nan
        out[name] = frame
    return out


def open_ablation_column(open_metric: str, full: pd.DataFrame) -> str:
    """The open-ended metric a baseline can also be scored on: judges score only the full answers, so the
    judge's column falls back to embedding similarity when computed, else ROUGE-L."""
    column = metric_registry.open_metric(open_metric).column
    if column == "judge":
        return "embedding" if np.isfinite(full["embedding"].to_numpy(float)).any() else "rouge_l"
    return column


def flag_text(baseline: str, column: str, gap: dict[str, Any], min_gap: float) -> str | None:
    """The flag for a paired gap model − baseline (an ablation variant, 'prior' or 'chance'), or None when its
    interval clears `min_gap`."""
    low = gap.get("low")
    if low is None or not np.isfinite(low):
        return None
    column = column_label(column)
    if baseline == "permute_options":
        if gap["low"] > 0 or gap["high"] < 0:
            return f"{column} changes {100 * gap['point']:.1f} points when options are permuted: option-position bias"
        return None
    if low > min_gap:
        return None
    what = {"no_image": "with no image", "shuffle_image": "with another patient's image",
            "prior": "of the per-template training prior", "chance": "of chance"}[baseline]
    return (f"{column} not shown above the score {what}: gap {100 * gap['point']:.1f} "
            f"[{100 * gap['low']:.1f}, {100 * gap['high']:.1f}] points")
