"""Metrics for closed-ended, grounding and clinical targets.

Each metric exists in two forms: a plain one on item arrays (checked against scikit-learn in the tests), and a
"from sufficient statistics" one that works on per-item sums stacked along the last axis, so the bootstrap can
resample patients by summing their statistics instead of re-running the metric per resample (see statistics.py).
Open-ended text metrics are in text_metrics.py.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import cohen_kappa_score, confusion_matrix, roc_auc_score

# ------------------------------------------------------------------------------------------------ accuracy


def accuracy(correct: np.ndarray) -> float:
    correct = np.asarray(correct, dtype=float)
    return float(correct.mean()) if correct.size else float("nan")


def ratio_from_sums(sums: np.ndarray) -> np.ndarray:
    """Statistic [numerator, denominator] -> numerator / denominator (NaN where the denominator is 0)."""
    num, den = sums[..., 0], sums[..., 1]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)


def ratio_stats(values: np.ndarray) -> np.ndarray:
    """Per-item statistics for a mean: [value, 1]."""
    values = np.asarray(values, dtype=float)
    return np.stack([values, np.ones_like(values)], axis=-1)


# ------------------------------------------------------------------------------------------------ grounding


def iou(pred: tuple[float, ...] | None, truth: tuple[float, ...]) -> float:
    """Intersection over union of axis-aligned boxes [x1,y1,x2,y2] or [x1,y1,x2,y2,z1,z2]; 0 for no prediction.

    Boxes on the 0-1000 grid are continuous coordinates (x2 is an edge, not an inclusive pixel index)."""
    if pred is None:
        return 0.0
    if len(pred) != len(truth):
        raise ValueError(f"box dimensions differ: {len(pred)} vs {len(truth)} numbers")
    axes = [(0, 2), (1, 3)] + ([(4, 5)] if len(truth) == 6 else [])
    inter, vol_p, vol_t = 1.0, 1.0, 1.0
    for lo, hi in axes:
        inter *= max(0.0, min(pred[hi], truth[hi]) - max(pred[lo], truth[lo]))
        vol_p *= pred[hi] - pred[lo]
        vol_t *= truth[hi] - truth[lo]
    union = vol_p + vol_t - inter
    return inter / union if union > 0 else float(pred == truth)


def hit_rate(ious: np.ndarray, threshold: float = 0.5) -> float:
    ious = np.asarray(ious, dtype=float)
    return float((ious >= threshold).mean()) if ious.size else float("nan")


# ------------------------------------------------------------------------------------------------- clinical


def sensitivity_specificity(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[float, float]:
    """Binary labels (1 = positive at the operating point); NaN where a class is absent."""
    sens, spec = sens_spec_from_sums(binary_stats(y_true, y_pred).sum(axis=0))
    return float(sens), float(spec)


def binary_stats(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """Per-item statistics [TP, positive, TN, negative]."""
    t, p = np.asarray(y_true, dtype=bool), np.asarray(y_pred, dtype=bool)
    return np.stack([t & p, t, ~t & ~p, ~t], axis=-1).astype(float)


def sens_spec_from_sums(sums: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    sens = ratio_from_sums(sums[..., [0, 1]])
    spec = ratio_from_sums(sums[..., [2, 3]])
    return sens, spec


def auc(y_true: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC (scikit-learn); NaN when only one class is present."""
    y_true = np.asarray(y_true, dtype=int)
    if len(np.unique(y_true)) < 2:
        return float("nan")
    return float(roc_auc_score(y_true, scores))


def weighted_auc(y_true: np.ndarray, scores: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """AUC for each row of `weights` (resamples × items): the Mann-Whitney statistic with item multiplicities.

    Items are sorted by score once; cumulative negative weight below each item (ties counted one half, as in
    roc_auc_score) gives every resample's AUC with a few vectorised passes, no per-resample sort.
    """
    s = np.asarray(scores, dtype=float)
    order = np.argsort(s, kind="stable")
    s, y = s[order], np.asarray(y_true, dtype=bool)[order]
    w = np.atleast_2d(np.asarray(weights, dtype=float))[:, order]
    starts = np.searchsorted(s, s, side="left")   # first item of each item's tie group
    ends = np.searchsorted(s, s, side="right")    # one past its last
    neg_cum = np.concatenate([np.zeros((w.shape[0], 1)), np.cumsum(w * ~y, axis=1)], axis=1)
    below = neg_cum[:, starts]
    tied = neg_cum[:, ends] - below
    pos_w = w * y
    num = (pos_w * (below + 0.5 * tied)).sum(axis=1)
    den = pos_w.sum(axis=1) * (w * ~y).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)


def weighted_kappa(true_rank: np.ndarray, pred_rank: np.ndarray, weights: str = "quadratic") -> float:
    """Cohen's κ with linear or quadratic weights for ordinal targets (scikit-learn)."""
    if weights not in ("linear", "quadratic"):
        raise ValueError(f"weights must be 'linear' or 'quadratic', got {weights!r}")
    with np.errstate(invalid="ignore", divide="ignore"):
        return float(cohen_kappa_score(true_rank, pred_rank, weights=weights))


def kappa_stats(true_rank: np.ndarray, pred_rank: np.ndarray, n_levels: int) -> np.ndarray:
    """Per-item statistics for κ: the item's one-hot cell of the n_levels × n_levels confusion matrix."""
    t, p = np.asarray(true_rank, dtype=int), np.asarray(pred_rank, dtype=int)
    stats = np.zeros((len(t), n_levels * n_levels))
    stats[np.arange(len(t)), t * n_levels + p] = 1.0
    return stats


def kappa_from_confusion(conf: np.ndarray, weights: str = "quadratic") -> np.ndarray:
    """Weighted κ of confusion matrices (..., K, K) (rows truth, columns prediction); NaN when undefined."""
    k = conf.shape[-1]
    i, j = np.meshgrid(np.arange(k), np.arange(k), indexing="ij")
    w = np.abs(i - j).astype(float) if weights == "linear" else (i - j).astype(float) ** 2
    total = conf.sum(axis=(-2, -1))
    expected = conf.sum(axis=-1)[..., :, None] * conf.sum(axis=-2)[..., None, :]
    observed_w = (w * conf).sum(axis=(-2, -1))
    with np.errstate(invalid="ignore", divide="ignore"):
        expected_w = (w * expected).sum(axis=(-2, -1)) / total
        return np.where(expected_w > 0, 1.0 - observed_w / np.where(expected_w > 0, expected_w, 1), np.nan)


def confusion(true: np.ndarray, pred: np.ndarray, n_levels: int) -> np.ndarray:
    """Counts with rows = truth, columns = prediction over ranks 0..n_levels-1 (scikit-learn)."""
    return confusion_matrix(true, pred, labels=list(range(n_levels)))


def spearman_from_confusion(conf: np.ndarray) -> np.ndarray:
    """Spearman ρ of two raters from their joint count table(s) (..., K, K) over ordered levels; NaN when undefined.

    Ties get average ranks (as `scipy.stats.spearmanr`): every item at level i of rater A has the mid-rank of
    level i among all items, so ρ is the count-weighted Pearson correlation of level mid-ranks. Being a function
    of counts, it bootstraps through the same batched sums as κ."""
    conf = np.asarray(conf, dtype=float)
    rows, cols = conf.sum(axis=-1), conf.sum(axis=-2)
    total = rows.sum(axis=-1)[..., None]
    rank_a = np.cumsum(rows, axis=-1) - rows + (rows + 1) / 2
    rank_b = np.cumsum(cols, axis=-1) - cols + (cols + 1) / 2
    with np.errstate(invalid="ignore", divide="ignore"):
        da = rank_a - (rows * rank_a).sum(axis=-1)[..., None] / total
        db = rank_b - (cols * rank_b).sum(axis=-1)[..., None] / total
        cov = np.einsum("...ij,...i,...j->...", conf, da, db)
        var = (rows * da ** 2).sum(axis=-1) * (cols * db ** 2).sum(axis=-1)
        return np.where(var > 0, cov / np.sqrt(np.where(var > 0, var, 1)), np.nan)


# ---------------------------------------------------------------------------------------------- calibration


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray, n_bins: int = 10) -> float:
    """ECE over equal-width confidence bins: Σ_b (n_b / N) · |accuracy_b − mean confidence_b|.

    A confidence of exactly 1 falls in the last bin; NaN when there are no items."""
    conf, hit = np.clip(np.asarray(confidence, dtype=float), 0, 1), np.asarray(correct, dtype=float)
    if not conf.size:
        return float("nan")
    bins = np.minimum((conf * n_bins).astype(int), n_bins - 1)
    total = 0.0
    for b in np.unique(bins):
        in_bin = bins == b
        total += in_bin.sum() / conf.size * abs(hit[in_bin].mean() - conf[in_bin].mean())
    return float(total)
