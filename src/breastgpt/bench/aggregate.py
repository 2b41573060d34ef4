"""From per-item scores to the tables of a bench report, every number with a patient-clustered interval.

Layouts: overall; by stage, modality, task family, source, answer provenance, partition (internal bench vs
external held-out sources); stage × modality (the paper's columns, per partition); stage × modality × task family
× source. Every group carries its baselines (chance, training prior, text-only; baselines.py) with intervals and
its power (design effect, minimum detectable difference). Plus clinical metrics per clinical target, option-score
calibration, judge controls, shortcut gaps decided by paired intervals, and paired comparisons of two runs with
Holm-adjusted p-values.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from breastgpt.bench.baselines import (FAMILY_GAP_COLUMN, baseline_frames, flag_text, open_ablation_column)
from breastgpt.bench.clusters import cluster_items
from breastgpt.bench.items import CIRCULAR_VARIANTS, BenchItem
from breastgpt.bench.judge_controls import judge_summary
from breastgpt.bench.metrics import (binary_stats, confusion, expected_calibration_error, kappa_from_confusion,
                                     kappa_stats, weighted_auc)
from breastgpt.bench import metric_registry
from breastgpt.bench.metric_registry import OPEN_FAMILIES, clinical_metrics, group_metrics
from breastgpt.bench.scoring import RunData, ScoreConfig, load_run, score_responses
from breastgpt.bench.statistics import ClusterResampler, MetricSpec, clustered_power, holm, ratio

PAPER_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("Scr BUS", "screening", "ultrasound"), ("Scr CT", "screening", "ct"), ("Scr Mam", "screening", "mammography"),
    ("Dx BUS", "diagnosis", "ultrasound"), ("Dx Mam", "diagnosis", "mammography"), ("Dx MRI", "diagnosis", "mri"),
    ("Tx MRI", "treatment", "mri"), ("Tx Path", "treatment", "pathology"),
)
GROUPINGS: dict[str, tuple[str, ...]] = {
    "overall": (), "stage": ("stage",), "modality": ("modality",), "task_family": ("task_family",),
    "source": ("source",), "provenance": ("provenance",), "task_family×provenance": ("task_family", "provenance"),
    "stage×modality": ("stage", "modality"), "cell": ("stage", "modality", "task_family", "source"),
    "partition": ("partition",), "partition×stage×modality": ("partition", "stage", "modality"),
    "source×partition": ("source", "partition"),
}


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
    paper_external: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    calibration: dict[str, Any] | None = None
    circular: dict[str, Any] | None = None
    judge: dict[str, Any] = field(default_factory=dict)
    clustering: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def full_rows(df: pd.DataFrame, items: list[BenchItem]) -> pd.DataFrame:
    """The full-variant rows in item order (one per item), with `circular`: right under every option rotation
    (NaN unless the item's full answer and all its n − 1 rotations were scored)."""
    full = df[df["variant"] == "full"].set_index("item_id")
    full = full.loc[[it.id for it in items]].reset_index()
    full["circular"] = circular_correct(df, items, full)
    return full


def circular_correct(df: pd.DataFrame, items: list[BenchItem], full: pd.DataFrame) -> np.ndarray:
    out = np.full(len(items), np.nan)
    rotated = df[df["variant"].isin(CIRCULAR_VARIANTS)]
    if rotated.empty:
        return out
    by_item = rotated.groupby("item_id")["correct"].agg(["min", "count"])
    for i, it in enumerate(items):
        if it.is_closed and it.id in by_item.index and by_item.at[it.id, "count"] == len(it.options) - 1:
            out[i] = min(float(full.at[i, "correct"]), float(by_item.at[it.id, "min"]))
    return out


def resolve_open_metric(config: ScoreConfig, full: pd.DataFrame) -> str:
    if config.open_metric != "auto":
        return config.open_metric
    if np.isfinite(full["judge"].to_numpy(float)).any():
        return "judge"
    return "embedding" if config.embeddings else "rouge_l"


def aggregate(items: list[BenchItem], run: RunData, df: pd.DataFrame, config: ScoreConfig,
              human_grades: dict[str, int] | None = None, train: list[BenchItem] | None = None) -> BenchScores:
    full = full_rows(df, items)
    clustering = cluster_items(items)
    rs = resampler(full, config)
    out = BenchScores(model=run.model, config=config, open_metric=resolve_open_metric(config, full), per_item=df)
    out.clustering = {**clustering.summary(), "warning": clustering.warning()}
    frames = baseline_frames(items, full, df, train)
    memberships = group_memberships(full)
    out.groups = group_table(full, rs, memberships)
    attach_baselines(out.groups, {name: group_table(frame, rs, memberships) for name, frame in frames.items()})
    attach_power(out.groups, full, memberships)
    column = open_ablation_column(out.open_metric, full)
    fallback = next(metric for metric, col in group_metrics().items() if col == column)
    out.paper_row = paper_row(out.groups, out.open_metric, baseline_metric=fallback)
    if (full["partition"] == "external").any():
        out.paper_external = paper_row(out.groups, out.open_metric, "external", baseline_metric=fallback)
    out.clinical = clinical_table(items, full, rs)
    out.shortcuts = shortcut_table(items, df, rs, config, frames, out.open_metric)
    out.calibration = option_calibration(full, rs)
    out.circular = circular_summary(df, full)
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


Membership = list[tuple[str, tuple[Any, ...], np.ndarray]]  # (grouping, key, items in the group)


def group_memberships(full: pd.DataFrame) -> Membership:
    """Every group of every grouping with its items; the same for the model and its baselines (same items)."""
    out = []
    codes = {c: pd.factorize(full[c]) for c in {c for cols in GROUPINGS.values() for c in cols}}
    for grouping, cols in GROUPINGS.items():
        keys = [()] if not cols else sorted(set(map(tuple, full[list(cols)].to_numpy().tolist())))
        for key in keys:
            in_group = np.ones(len(full), bool)
            for c, v in zip(cols, key):
                labels, uniques = codes[c]
                in_group &= labels == uniques.get_loc(v)
            out.append((grouping, key, in_group))
    return out


def group_masks(full: pd.DataFrame, memberships: Membership | None = None
                ) -> dict[str, tuple[str, dict[str, Any], str, np.ndarray]]:
    """Every (grouping, group, metric) with defined values: spec key -> (grouping, key, metric, item mask)."""
    out = {}
    defined = {metric: np.isfinite(full[column].to_numpy(float)) for metric, column in group_metrics().items()}
    for grouping, key, in_group in memberships if memberships is not None else group_memberships(full):
        cols = GROUPINGS[grouping]
        for metric in defined:
            mask = in_group & defined[metric]
            if mask.any():
                out[_spec_key(grouping, key, metric)] = (grouping, dict(zip(cols, key)), metric, mask)
    return out


def group_table(full: pd.DataFrame, rs: ClusterResampler, memberships: Membership | None = None
                ) -> list[dict[str, Any]]:
    """Mean of every metric in every group of every grouping, with intervals, from one batched bootstrap."""
    masks = group_masks(full, memberships)
    columns = group_metrics()
    specs = {name: MetricSpec.mean(full[columns[metric]].to_numpy(float), mask)
             for name, (_, _, metric, mask) in masks.items()}
    intervals = rs.bootstrap_batch(specs)
    return [{"grouping": masks[name][0], "key": masks[name][1], "metric": masks[name][2], **iv.as_dict()}
            for name, iv in intervals.items()]


def attach_baselines(groups: list[dict[str, Any]], baselines: dict[str, list[dict[str, Any]]]) -> None:
    """Each group's `baselines`: name -> the baseline's interval on the same group and metric (None when the
    baseline does not define the metric there, e.g. chance for open-ended scores)."""
    index = {name: {_spec_key(g["grouping"], tuple(g["key"].values()), g["metric"]): g for g in rows}
             for name, rows in baselines.items()}
    for g in groups:
        key = _spec_key(g["grouping"], tuple(g["key"].values()), g["metric"])
        g["baselines"] = {name: _interval_only(rows.get(key)) for name, rows in index.items()}


def _interval_only(g: dict[str, Any] | None) -> dict[str, Any] | None:
    return None if g is None else {k: v for k, v in g.items() if k not in ("grouping", "key", "metric")}


def attach_power(groups: list[dict[str, Any]], full: pd.DataFrame, memberships: Membership | None = None) -> None:
    """Each group's `power`: design effect from its clusters and the minimum detectable difference at 80 %."""
    masks = group_masks(full, memberships)
    clusters = pd.factorize(full["cluster"])[0]
    columns = group_metrics()
    for g in groups:
        _, _, metric, mask = masks[_spec_key(g["grouping"], tuple(g["key"].values()), g["metric"])]
        power = clustered_power(full[columns[metric]].to_numpy(float)[mask], clusters[mask])
        g["power"] = None if power is None else power.as_dict()


def find_group(groups: list[dict[str, Any]], grouping: str, key: dict[str, Any], metric: str) -> dict | None:
    return next((g for g in groups if g["grouping"] == grouping and g["key"] == key and g["metric"] == metric), None)


def paper_row(groups: list[dict[str, Any]], open_metric: str, partition: str = "internal",
              baseline_metric: str | None = None) -> dict[str, dict[str, Any] | None]:
    """The paper's table layout for one partition (internal bench or external held-out sources): closed accuracy
    per stage × modality, overall closed, overall open score. When the open metric is the judge (which scores only
    the model's full answers), the open cell's `baselines` are taken on `baseline_metric` instead, named in
    `baselines_metric` with the model's own score on it in `model_on_baselines_metric`."""
    row: dict[str, dict[str, Any] | None] = {}
    for label, stage, modality in PAPER_COLUMNS:
        row[label] = find_group(groups, "partition×stage×modality",
                                {"partition": partition, "stage": stage, "modality": modality}, "accuracy")
    row["closed"] = find_group(groups, "partition", {"partition": partition}, "accuracy")
    open_name = metric_registry.open_metric(open_metric).name
    row["open"] = find_group(groups, "partition", {"partition": partition}, open_name)
    other = find_group(groups, "partition", {"partition": partition}, baseline_metric) if baseline_metric else None
    if (row["open"] is not None and other is not None and not any(row["open"].get("baselines", {}).values())
            and any(other.get("baselines", {}).values())):
        row["open"] = {**row["open"], "baselines": other.get("baselines", {}), "baselines_metric": baseline_metric,
                       "model_on_baselines_metric": _interval_only({**other, "baselines": None, "power": None})}
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


def shortcut_table(items: list[BenchItem], df: pd.DataFrame, rs: ClusterResampler, config: ScoreConfig,
                   frames: dict[str, pd.DataFrame] | None = None, open_metric: str = "rouge_l") -> list[dict[str, Any]]:
    """Paired gaps model − baseline on the same items (ablated runs, training prior, chance), per task family's
    metric (closed accuracy, grounding IoU, the open-ended metric), overall and per paper column, each flagged
    by its interval (baselines.flag_text)."""
    full = full_rows(df, items)
    frames = baseline_frames(items, full, df, None) if frames is None else frames
    permuted = df[df["variant"] == "permute_options"].set_index("item_id")
    compared = {"no_image": frames.get("text_only"), "shuffle_image": frames.get("shuffled_image")}
    if not permuted.empty:
        compared["permute_options"] = permuted.reindex([it.id for it in items]).reset_index()
    compared.update({"prior": frames.get("prior"), "chance": frames.get("chance")})
    families = {**FAMILY_GAP_COLUMN, **{f: open_ablation_column(open_metric, full) for f in OPEN_FAMILIES}}
    specs, meta = {}, {}
    for variant, frame in compared.items():
        if frame is None:
            continue
        for family, column in families.items():
            ours, theirs = full[column].to_numpy(float), frame[column].to_numpy(float)
            in_family = (full["task_family"] == family).to_numpy() & np.isfinite(theirs)
            for where, mask in _shortcut_places(full, in_family):
                name = f"{variant}|{family}|{where}"
                specs[name] = MetricSpec.mean_difference(ours, theirs, mask)
                meta[name] = {"variant": variant, "family": family, "metric": column, "where": where}
    rows = []
    for name, iv in rs.bootstrap_batch(specs).items():
        gap = iv.as_dict()
        rows.append({**meta[name], "gap": gap,
                     "flag": flag_text(meta[name]["variant"], meta[name]["metric"], gap, config.shortcut_min_gap)})
    return rows


def _shortcut_places(full: pd.DataFrame, in_family: np.ndarray) -> list[tuple[str, np.ndarray]]:
    places = [("overall", in_family)] if in_family.any() else []
    for label, stage, modality in PAPER_COLUMNS:
        cell = in_family & (full["stage"] == stage).to_numpy() & (full["modality"] == modality).to_numpy()
        if cell.any():
            places.append((label, cell))
    external = in_family & (full["partition"] == "external").to_numpy()
    if external.any() and not external.all():
        places.append(("external", external))
    return places


# --------------------------------------------------------------------------------------------- calibration


def option_calibration(full: pd.DataFrame, rs: ClusterResampler, n_bins: int = 10) -> dict[str, Any] | None:
    """Option scoring on closed items: accuracy of the top option, ECE (equal-width bins, with a cluster-bootstrap
    interval over at most 2,000 resamples) and the reliability bins; None when no response carried option
    probabilities."""
    conf, hit = full["confidence"].to_numpy(float), full["option_correct"].to_numpy(float)
    mask = np.isfinite(conf) & np.isfinite(hit)
    if not mask.any():
        return None
    ece = rs.bootstrap_indices(lambda idx: expected_calibration_error(conf[idx], hit[idx], n_bins), mask,
                               n_resamples=min(rs.n_resamples, 2000))
    return {"n_items": int(mask.sum()), "ece": ece.as_dict(),
            "bins": calibration_bins(hit.astype(bool), conf, mask, n_bins)}


def circular_summary(df: pd.DataFrame, full: pd.DataFrame) -> dict[str, Any] | None:
    """What circular evaluation covered and cost: rotation answers scored against the closed items."""
    rotated = df[df["variant"].isin(CIRCULAR_VARIANTS)]
    if rotated.empty:
        return None
    closed = int((full["task_family"] == "closed_vqa").sum())
    complete = int(np.isfinite(full["circular"].to_numpy(float)).sum())
    return {"rotation_answers": int(len(rotated)), "closed_items": closed, "items_with_every_rotation": complete,
            "cost": f"{len(rotated)} rotation answers on top of {closed} closed answers "
                    f"({(closed + len(rotated)) / max(closed, 1):.1f}x the closed-item cost)"}


# --------------------------------------------------------------------------------------------------- judges


def _warnings(out: BenchScores, full: pd.DataFrame) -> list[str]:
    warns = [out.clustering["warning"]] if out.clustering.get("warning") else []
    warns += [f"{label}: {cell['warning']}" for label, cell in out.paper_row.items() if cell and cell["warning"]]
    warns += [f"clinical {c['target']} {m}: {c[m]['warning']}" for c in out.clinical for m in clinical_metrics()
              if isinstance(c.get(m), dict) and c[m].get("warning")]
    warns += [f"judge {j['judge_model']}: {j['family_check']['text']}" for j in out.judge.get("judges", [])
              if j["family_check"]["status"] != "different"]
    warns += [f"shortcut ({s['variant']}, {s['family']}, {s['where']}): {s['flag']}" for s in out.shortcuts
              if s["flag"]]
    missing = int((full["status"] == "missing").sum())
    if missing:
        warns.append(f"{missing} items have no response and are scored wrong")
    gen = full[(full["provenance"] == "generated") & full["task_family"].isin(OPEN_FAMILIES)]
    if len(gen):
        warns.append(f"{len(gen)} open-ended references are model-generated (answer_provenance 'generated'); "
                     f"see the provenance split")
    return warns


# -------------------------------------------------------------------------------------------------- compare


def compare_columns(a: pd.DataFrame, open_metric: str) -> dict[str, tuple[str, np.ndarray]]:
    """The columns `compare` reports: label -> (per-item column, items)."""
    closed = (a["task_family"] == "closed_vqa").to_numpy()
    columns = {"closed": ("correct", closed)}
    for label, stage, modality in PAPER_COLUMNS:
        cell = closed & (a["stage"] == stage).to_numpy() & (a["modality"] == modality).to_numpy()
        if cell.any():
            columns[label] = ("correct", cell)
    col = metric_registry.open_metric(open_metric).column
    if np.isfinite(a[col].to_numpy(float)).any():
        columns["open"] = (col, np.ones(len(a), bool))
    external = (a["partition"] == "external").to_numpy()
    if external.any() and not external.all():
        columns["external closed"] = ("correct", closed & external)
    return columns


def compare(items: list[BenchItem], df_a: pd.DataFrame, df_b: pd.DataFrame, config: ScoreConfig,
            open_metric: str, train: list[BenchItem] | None = None) -> list[dict[str, Any]]:
    """Paired differences A − B on the same items (same resampled patients for both), per reported column, with
    bootstrap p-values Holm-adjusted across the columns, and beside each: both models' scores and the baselines
    (chance, training prior, each model's text-only run) with intervals."""
    a, b = full_rows(df_a, items), full_rows(df_b, items)
    rs = resampler(a, config)
    columns = compare_columns(a, open_metric)
    frames = {"a": a, "b": b}
    for side, df, full in (("a", df_a, a), ("b", df_b, b)):
        extra = baseline_frames(items, full, df, train if side == "a" else None)
        frames.update({f"{name}_{side}" if name in ("text_only", "shuffled_image") else name: frame
                       for name, frame in extra.items() if side == "a" or name in ("text_only", "shuffled_image")})
    specs = {f"diff|{k}": MetricSpec.mean_difference(a[c].to_numpy(float), b[c].to_numpy(float), m)
             for k, (c, m) in columns.items()}
    for name, frame in frames.items():
        for k, (c, m) in columns.items():
            values = frame[c].to_numpy(float)
            if (m & np.isfinite(values)).any():
                specs[f"{name}|{k}"] = MetricSpec.mean(values, m)
    intervals = {k: iv.as_dict() for k, iv in rs.bootstrap_batch(specs).items()}
    rows = [{"where": k, "difference": intervals[f"diff|{k}"], "a": intervals.get(f"a|{k}"),
             "b": intervals.get(f"b|{k}"),
             "baselines": {n: intervals.get(f"{n}|{k}") for n in frames if n not in ("a", "b")}}
            for k in columns if f"diff|{k}" in intervals]
    adjusted = holm([r["difference"].get("p_value", float("nan")) for r in rows])
    for r, p in zip(rows, adjusted):
        r["p_holm"] = p
    return rows


def comparison(items: list[BenchItem], df_a: pd.DataFrame, df_b: pd.DataFrame, config: ScoreConfig,
               open_metric: str, train: list[BenchItem] | None = None) -> dict[str, Any]:
    """`compare` rows plus what a reader must see beside them: the clustering and every interval's warning."""
    rows = compare(items, df_a, df_b, config, open_metric, train)
    clustering = cluster_items(items)
    warns = [clustering.warning()] if clustering.warning() else []
    warns += [f"{r['where']}: {r['difference']['warning']}" for r in rows if r["difference"]["warning"]]
    return {"open_metric": open_metric, "clustering": clustering.summary(), "differences": rows,
            "multiple_comparisons": f"Holm across {len(rows)} columns", "warnings": warns}


# ----------------------------------------------------------------------------------------------- entry point


def score_run(items: list[BenchItem], run_dir: Any, config: ScoreConfig,
              human_grades: dict[str, int] | None = None,
              train: list[BenchItem] | None = None) -> tuple[BenchScores, list[Any]]:
    """Load a run directory, score every response and aggregate; returns the scores and the input files read.
    `train`: the training items, for the per-template prior baseline."""
    run = load_run(run_dir, items)
    df = score_responses(items, run, config)
    return aggregate(items, run, df, config, human_grades, train), run.files
