"""From per-item scores to the tables of a bench report, every number with a patient-clustered interval.

Layouts: overall; by stage, modality, task family, source, answer provenance; stage × modality (the paper's
columns); stage × modality × task family × source. Plus clinical metrics per clinical target, judge controls,
shortcut gaps for ablation variants, and paired comparisons of two runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from breastgpt.bench.clusters import cluster_items
from breastgpt.bench.items import BenchItem
from breastgpt.bench.judge_controls import judge_summary
from breastgpt.bench.metrics import binary_stats, confusion, kappa_from_confusion, kappa_stats, weighted_auc
from breastgpt.bench.scoring import OPEN_FAMILIES, RunData, ScoreConfig, load_run, score_responses
from breastgpt.bench.statistics import ClusterResampler, Interval, MetricSpec, ratio

PAPER_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("Scr BUS", "screening", "ultrasound"), ("Scr CT", "screening", "ct"), ("Scr Mam", "screening", "mammography"),
    ("Dx BUS", "diagnosis", "ultrasound"), ("Dx Mam", "diagnosis", "mammography"), ("Dx MRI", "diagnosis", "mri"),
    ("Tx MRI", "treatment", "mri"), ("Tx Path", "treatment", "pathology"),
)
GROUPINGS: dict[str, tuple[str, ...]] = {
    "overall": (), "stage": ("stage",), "modality": ("modality",), "task_family": ("task_family",),
    "source": ("source",), "provenance": ("provenance",), "task_family×provenance": ("task_family", "provenance"),
    "stage×modality": ("stage", "modality"), "cell": ("stage", "modality", "task_family", "source"),
}
METRICS: dict[str, str] = {  # metric -> per-item column (the mean over defined items is reported)
    "accuracy": "correct", "unparseable_rate": "unparseable", "mean_iou": "iou", "hit_rate@0.5": "hit",
    "rouge_l": "rouge_l", "embedding_cosine": "embedding", "key_finding_recall": "kf_recall", "judge": "judge",
}
OPEN_METRIC_COLUMN = {"judge": "judge", "embedding": "embedding", "rouge_l": "rouge_l",
                      "key_finding_recall": "kf_recall"}
SHORTCUT_VARIANTS = ("no_image", "shuffle_image", "permute_options", "no_prior_media")
CLINICAL_METRICS = ("sensitivity", "specificity", "auc", "kappa_linear", "kappa_quadratic")


@dataclass
class BenchScores:
    model: str
    config: ScoreConfig
    open_metric: str
    per_item: pd.DataFrame
    groups: list[dict[str, Any]] = field(default_factory=list)
    paper_row: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    clinical: list[dict[str, Any]] = field(default_factory=list)
    shortcuts: list[dict[str, Any]] = field(default_factory=list)
    judge: dict[str, Any] = field(default_factory=dict)
    clustering: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def full_rows(df: pd.DataFrame, items: list[BenchItem]) -> pd.DataFrame:
    """The full-variant rows in item order (one per item)."""
    full = df[df["variant"] == "full"].set_index("item_id")
    return full.loc[[it.id for it in items]].reset_index()


def resolve_open_metric(config: ScoreConfig, full: pd.DataFrame) -> str:
    if config.open_metric != "auto":
        return config.open_metric
    if np.isfinite(full["judge"].to_numpy(float)).any():
        return "judge"
    return "embedding" if config.embeddings else "rouge_l"


def aggregate(items: list[BenchItem], run: RunData, df: pd.DataFrame, config: ScoreConfig,
              human_grades: dict[str, int] | None = None) -> BenchScores:
    full = full_rows(df, items)
    clustering = cluster_items(items)
    rs = resampler(full, config)
    out = BenchScores(model=run.model, config=config, open_metric=resolve_open_metric(config, full), per_item=df)
    out.clustering = {**clustering.summary(), "warning": clustering.warning()}
    out.groups = group_table(full, rs)
    out.paper_row = paper_row(out.groups, out.open_metric)
    out.clinical = clinical_table(items, full, rs)
    out.shortcuts = shortcut_table(items, df, rs, config)
    out.judge = judge_summary(run.judgements, run.candidate_family, [it.id for it in items], rs, human_grades,
                              config.primary_judge)
    out.warnings = _warnings(out, full)
    return out


def resampler(full: pd.DataFrame, config: ScoreConfig) -> ClusterResampler:
    """The one resampler of an analysis, over the items' clusters (clusters.py), named for its warnings."""
    unit = "patients" if set(full["cluster_level"]) <= {"patient"} else "clusters"
    return ClusterResampler(full["cluster"].to_numpy(), n_resamples=config.n_resamples, seed=config.seed,
                            level=config.level, unit=unit)


def _spec_key(grouping: str, key: tuple[Any, ...], metric: str) -> str:
    return f"{grouping}|{'/'.join(map(str, key))}|{metric}"


def group_table(full: pd.DataFrame, rs: ClusterResampler) -> list[dict[str, Any]]:
    """Mean of every metric in every group of every grouping, with intervals, from one batched bootstrap."""
    specs: dict[str, MetricSpec] = {}
    meta: dict[str, dict[str, Any]] = {}
    for grouping, cols in GROUPINGS.items():
        keys = [()] if not cols else sorted(set(map(tuple, full[list(cols)].to_numpy().tolist())))
        for key in keys:
            in_group = np.ones(len(full), bool)
            for c, v in zip(cols, key):
                in_group &= full[c].to_numpy() == v
            for metric, column in METRICS.items():
                values = full[column].to_numpy(float)
                mask = in_group & np.isfinite(values)
                if mask.any():
                    name = _spec_key(grouping, key, metric)
                    specs[name] = MetricSpec.mean(values, mask)
                    meta[name] = {"grouping": grouping, "key": dict(zip(cols, key)), "metric": metric}
    intervals = rs.bootstrap_batch(specs)
    return [{**meta[name], **iv.as_dict()} for name, iv in intervals.items()]


def find_group(groups: list[dict[str, Any]], grouping: str, key: dict[str, Any], metric: str) -> dict | None:
    return next((g for g in groups if g["grouping"] == grouping and g["key"] == key and g["metric"] == metric), None)


def paper_row(groups: list[dict[str, Any]], open_metric: str) -> dict[str, dict[str, Any] | None]:
    """The paper's table layout: closed accuracy per stage × modality, overall closed, overall open score."""
    row: dict[str, dict[str, Any] | None] = {}
    for label, stage, modality in PAPER_COLUMNS:
        row[label] = find_group(groups, "stage×modality", {"stage": stage, "modality": modality}, "accuracy")
    row["closed"] = find_group(groups, "overall", {}, "accuracy")
    open_metric_name = {"embedding": "embedding_cosine"}.get(open_metric, open_metric)
    row["open"] = find_group(groups, "overall", {}, open_metric_name)
    return row


# ------------------------------------------------------------------------------------------------ clinical


def clinical_table(items: list[BenchItem], full: pd.DataFrame, rs: ClusterResampler) -> list[dict[str, Any]]:
    """Per clinical target: sensitivity/specificity at the operating point, AUC when scores exist, weighted κ and
    the confusion matrix for ordinal targets. An unparseable answer counts as the worst prediction (the opposite
    class; the level farthest from the truth) so a model cannot gain by refusing."""
    names = sorted({it.clinical_target.name for it in items if it.clinical_target is not None})
    return [_clinical_one(name, items, full, rs) for name in names]


def _clinical_one(name: str, items: list[BenchItem], full: pd.DataFrame, rs: ClusterResampler) -> dict[str, Any]:
    mask = np.array([it.clinical_target is not None and it.clinical_target.name == name for it in items])
    targets = [it.clinical_target for it in items]
    kind = next(t.kind for t in targets if t is not None and t.name == name)
    pred_idx = full["pred_index"].to_numpy(int)
    y_true, y_pred = np.zeros(len(items), bool), np.zeros(len(items), bool)
    t_rank, p_rank = np.zeros(len(items)), np.zeros(len(items))
    for i in np.flatnonzero(mask):
        t, it = targets[i], items[i]
        truth = t.option_values[it.answer_index]
        y_true[i] = t.is_positive(truth)
        y_pred[i] = t.is_positive(t.option_values[pred_idx[i]]) if pred_idx[i] >= 0 else not y_true[i]
        t_rank[i] = t.rank(truth) if kind == "ordinal" else float(y_true[i])
        p_rank[i] = t.rank(t.option_values[pred_idx[i]]) if pred_idx[i] >= 0 else np.nan
    stats = binary_stats(y_true, y_pred)
    specs = {"sensitivity": MetricSpec(stats[:, [0, 1]], ratio, mask),
             "specificity": MetricSpec(stats[:, [2, 3]], ratio, mask)}
    out: dict[str, Any] = {"target": name, "kind": kind, "operating_point": _operating_point(targets, mask),
                           "n_items": int(mask.sum()), "n_unparseable": int((pred_idx[mask] < 0).sum())}
    if kind == "ordinal":
        levels = np.unique(np.concatenate([t_rank[mask], [r for i in np.flatnonzero(mask) for r in
                                                        (targets[i].rank(v) for v in targets[i].option_values)]]))
        t_lvl = np.searchsorted(levels, t_rank)
        p_lvl = _worst_case_levels(t_lvl, p_rank, levels)
        kstats = kappa_stats(np.where(mask, t_lvl, 0), np.where(mask, p_lvl, 0), len(levels))
        k = len(levels)
        for w in ("linear", "quadratic"):
            specs[f"kappa_{w}"] = MetricSpec(kstats, lambda s, w=w: kappa_from_confusion(
                s.reshape(s.shape[:-1] + (k, k)), w), mask)
        out["levels"] = levels.tolist()
        out["confusion"] = confusion(t_lvl[mask], p_lvl[mask], k).tolist()
    else:
        out["confusion"] = confusion(y_true[mask].astype(int), y_pred[mask].astype(int), 2).tolist()
    out.update({m: iv.as_dict() for m, iv in rs.bootstrap_batch(specs).items()})
    scores = full["score"].to_numpy(float)
    out["auc"] = _auc_interval(y_true, scores, mask, rs)
    out["calibration"] = calibration_bins(y_true, scores, mask)
    return out


def calibration_bins(y_true: np.ndarray, scores: np.ndarray, mask: np.ndarray, n_bins: int = 10) -> list[dict]:
    """Reliability data: per equal-width score bin, mean score, observed positive fraction and count."""
    m = mask & np.isfinite(scores)
    if not m.any():
        return []
    s, y = np.clip(scores[m], 0, 1), y_true[m].astype(float)
    idx = np.minimum((s * n_bins).astype(int), n_bins - 1)
    return [{"bin": b, "mean_score": float(s[idx == b].mean()), "observed": float(y[idx == b].mean()),
             "n": int((idx == b).sum())} for b in range(n_bins) if (idx == b).any()]


def _operating_point(targets: list[Any], mask: np.ndarray) -> str:
    t = next(targets[i] for i in np.flatnonzero(mask))
    return "positive = true" if t.kind == "binary" else f"positive = {t.name} >= {t.positive_threshold}"


def _worst_case_levels(t_lvl: np.ndarray, p_rank: np.ndarray, levels: np.ndarray) -> np.ndarray:
    p_lvl = np.searchsorted(levels, np.nan_to_num(p_rank, nan=levels[0]))
    far = np.where(t_lvl >= (len(levels) - 1) - t_lvl, 0, len(levels) - 1)
    return np.where(np.isnan(p_rank), far, p_lvl)


def _auc_interval(y_true: np.ndarray, scores: np.ndarray, mask: np.ndarray,
                  rs: ClusterResampler) -> dict[str, Any] | None:
    m = mask & np.isfinite(scores)
    if len(np.unique(y_true[m])) < 2:
        return None
    point = float(weighted_auc(y_true[m], scores[m], np.ones((1, int(m.sum()))))[0])
    samples = np.concatenate([weighted_auc(y_true[m], scores[m], w) for w in rs.item_weight_chunks(m)])
    return rs.interval(point, samples, m).as_dict()


# ----------------------------------------------------------------------------------------------- shortcuts


def shortcut_table(items: list[BenchItem], df: pd.DataFrame, rs: ClusterResampler,
                   config: ScoreConfig) -> list[dict[str, Any]]:
    """Accuracy gap full − ablated on the closed items run both ways, overall and per paper column."""
    full = full_rows(df, items)
    rows = []
    for variant in SHORTCUT_VARIANTS:
        sub = df[df["variant"] == variant].set_index("item_id")
        if sub.empty:
            continue
        ablated = sub["correct"].reindex([it.id for it in items]).to_numpy(float)
        closed = (full["task_family"] == "closed_vqa").to_numpy()
        specs = {"overall": MetricSpec.mean_difference(full["correct"].to_numpy(float), ablated, closed)}
        for label, stage, modality in PAPER_COLUMNS:
            cell = closed & (full["stage"] == stage).to_numpy() & (full["modality"] == modality).to_numpy()
            if (cell & np.isfinite(ablated)).any():
                specs[label] = MetricSpec.mean_difference(full["correct"].to_numpy(float), ablated, cell)
        for where, iv in rs.bootstrap_batch(specs).items():
            rows.append({"variant": variant, "where": where, "gap": iv.as_dict(),
                         "flag": _shortcut_flag(variant, iv, config.shortcut_min_gap)})
    return rows


def _shortcut_flag(variant: str, gap: Interval, min_gap: float) -> str | None:
    if variant in ("no_image", "shuffle_image") and gap.point < min_gap:
        return (f"accuracy drops only {100 * gap.point:.1f} points with {variant.replace('_', ' ')} "
                f"(< {100 * min_gap:.0f}): answers may come from the text, not the image")
    if variant == "permute_options" and abs(gap.point) >= min_gap:
        return f"accuracy changes {100 * gap.point:.1f} points when options are permuted: option-position bias"
    return None


# --------------------------------------------------------------------------------------------------- judges


def _warnings(out: BenchScores, full: pd.DataFrame) -> list[str]:
    warns = [out.clustering["warning"]] if out.clustering.get("warning") else []
    warns += [f"{label}: {cell['warning']}" for label, cell in out.paper_row.items() if cell and cell["warning"]]
    warns += [f"clinical {c['target']} {m}: {c[m]['warning']}" for c in out.clinical for m in CLINICAL_METRICS
              if isinstance(c.get(m), dict) and c[m].get("warning")]
    warns += [f"judge {j['judge_model']}: {j['family_check']['text']}" for j in out.judge.get("judges", [])
              if j["family_check"]["status"] != "different"]
    warns += [f"shortcut ({s['variant']}, {s['where']}): {s['flag']}" for s in out.shortcuts if s["flag"]]
    missing = int((full["status"] == "missing").sum())
    if missing:
        warns.append(f"{missing} items have no response and are scored wrong")
    gen = full[(full["provenance"] == "generated") & full["task_family"].isin(OPEN_FAMILIES)]
    if len(gen):
        warns.append(f"{len(gen)} open-ended references are model-generated (answer_provenance 'generated'); "
                     f"see the provenance split")
    return warns


# -------------------------------------------------------------------------------------------------- compare


def compare(items: list[BenchItem], df_a: pd.DataFrame, df_b: pd.DataFrame, config: ScoreConfig,
            open_metric: str) -> list[dict[str, Any]]:
    """Paired differences A − B on the same items (same resampled patients for both), per paper column."""
    a, b = full_rows(df_a, items), full_rows(df_b, items)
    rs = resampler(a, config)
    closed = (a["task_family"] == "closed_vqa").to_numpy()
    acc_a, acc_b = a["correct"].to_numpy(float), b["correct"].to_numpy(float)
    specs = {"closed": MetricSpec.mean_difference(acc_a, acc_b, closed)}
    for label, stage, modality in PAPER_COLUMNS:
        cell = closed & (a["stage"] == stage).to_numpy() & (a["modality"] == modality).to_numpy()
        if cell.any():
            specs[label] = MetricSpec.mean_difference(acc_a, acc_b, cell)
    col = OPEN_METRIC_COLUMN[open_metric]
    if np.isfinite(a[col].to_numpy(float)).any():
        specs["open"] = MetricSpec.mean_difference(a[col].to_numpy(float), b[col].to_numpy(float))
    return [{"where": k, "difference": iv.as_dict()} for k, iv in rs.bootstrap_batch(specs).items()]


def comparison(items: list[BenchItem], df_a: pd.DataFrame, df_b: pd.DataFrame, config: ScoreConfig,
               open_metric: str) -> dict[str, Any]:
    """`compare` rows plus what a reader must see beside them: the clustering and every interval's warning."""
    rows = compare(items, df_a, df_b, config, open_metric)
    clustering = cluster_items(items)
    warns = [clustering.warning()] if clustering.warning() else []
    warns += [f"{r['where']}: {r['difference']['warning']}" for r in rows if r["difference"]["warning"]]
    return {"open_metric": open_metric, "clustering": clustering.summary(), "differences": rows, "warnings": warns}


# ----------------------------------------------------------------------------------------------- entry point


def score_run(items: list[BenchItem], run_dir: Any, config: ScoreConfig,
              human_grades: dict[str, int] | None = None) -> tuple[BenchScores, list[Any]]:
    """Load a run directory, score every response and aggregate; returns the scores and the input files read."""
    run = load_run(run_dir, items)
    df = score_responses(items, run, config)
    return aggregate(items, run, df, config, human_grades), run.files
