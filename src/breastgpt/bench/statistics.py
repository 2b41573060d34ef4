"""Patient-clustered bootstrap intervals, paired model comparisons and the small-subset warning.

Items from one patient are correlated (same images, same disease), so resampling items as if independent gives
intervals that are too narrow. We resample **patients** with replacement and take all their items.

Speed: most bench metrics are functions of sums over items (accuracy = correct / n, sensitivity = TP / P, κ from
the confusion counts). A `ClusterResampler` draws, once per seed, how many times each patient appears in each
resample (a resamples × patients count matrix built from plain index sampling); bootstrap totals of any per-item
statistics are then one matrix product `counts @ per_patient_sums`. 12,182 items / 3,000 patients / 10,000
resamples is a few hundred milliseconds. Metrics that are not sums (AUC) get per-item multiplicities from the
same counts, and `bootstrap_indices` runs any Python metric on explicit resampled item indices (slow path).

Every interval in one resampler uses the same resamples, so comparisons (two models on the same items, a full vs
an ablated run) are paired: the difference is computed inside each resample.

Subsets: a cell (e.g. Dx MRI) is bootstrapped by resampling all patients and keeping the cell's items, so its
patient count varies between resamples like it would in a new bench of the same size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import numpy as np
from scipy.stats import norm

# The small-subset rule (docs/evaluation.md): a claim needs ≥ MIN_PATIENTS patients and a 95 % interval whose
# half-width is at most MAX_HALF_WIDTH (10 points on a 0-1 metric).
MIN_PATIENTS = 30
MAX_HALF_WIDTH = 0.10
_CACHE_LIMIT = 64_000_000  # count-matrix cells kept in memory (uint8 -> 64 MB); beyond that, regenerate per use


@dataclass(frozen=True)
class Interval:
    """A point estimate with its percentile 95 % bootstrap interval (level configurable)."""

    point: float
    low: float
    high: float
    n_items: int
    n_clusters: int
    n_resamples: int
    warning: str | None = None
    p_value: float | None = None  # paired differences only: bootstrap two-sided p against no difference

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2

    def as_dict(self) -> dict[str, float | int | str | None]:
        out = {"point": self.point, "low": self.low, "high": self.high, "n_items": self.n_items,
               "n_clusters": self.n_clusters, "n_resamples": self.n_resamples, "zero_width": self.zero_width,
               "warning": self.warning}
        return out if self.p_value is None else out | {"p_value": self.p_value}

    @property
    def zero_width(self) -> bool:
        """Every resample gave the same value: the percentile bootstrap cannot express the uncertainty."""
        return bool(np.isfinite(self.low) and self.low == self.high)


def small_subset_warning(n_clusters: int, low: float, high: float, *, min_patients: int = MIN_PATIENTS,
                         max_half_width: float = MAX_HALF_WIDTH, unit: str = "patients") -> str | None:
    """The warning text when a subset is too small to support a claim, else None.

    A zero-width interval is always flagged: it means every resample gave the same value (one cluster, or a
    metric at 0 or 100 %), which the percentile bootstrap cannot distinguish from certainty."""
    reasons = []
    if n_clusters < min_patients:
        reasons.append(f"only {n_clusters} {unit} (< {min_patients})")
    if not np.isfinite(low) or not np.isfinite(high):
        reasons.append("interval undefined")
    elif low == high:
        reasons.append("zero-width interval (all resamples equal: not evidence of certainty)")
    elif (high - low) / 2 > max_half_width:
        reasons.append(f"95% interval half-width {100 * (high - low) / 2:.1f} points (> {100 * max_half_width:.0f})")
    return "; ".join(reasons) or None


class ClusterResampler:
    """Seeded patient-level resampling shared by every metric of one analysis.

    `clusters` gives each item's patient key (or another cluster key, clusters.py); clusters are ordered by sorted
    key so the same seed and the same clusters give the same resamples in every run. `unit` names the clusters in
    warnings ("patients", or "clusters" when they are not all patients).
    """

    def __init__(self, clusters: Sequence[object] | np.ndarray, n_resamples: int = 10_000, seed: int = 0,
                 chunk: int = 1000, level: float = 0.95, unit: str = "patients") -> None:
        if n_resamples < 1:
            raise ValueError("n_resamples must be at least 1")
        keys, self.cluster_of_item = np.unique(np.asarray(clusters, dtype=object).astype(str), return_inverse=True)
        self.cluster_keys = keys
        self.n_clusters = len(keys)
        self.n_items = len(self.cluster_of_item)
        self.n_resamples, self.seed, self.chunk, self.level, self.unit = n_resamples, seed, chunk, level, unit
        self._cached: list[np.ndarray] | None = None
        if n_resamples * self.n_clusters <= _CACHE_LIMIT:
            self._cached = list(self._generate())

    def _generate(self) -> Iterator[np.ndarray]:
        rng = np.random.default_rng(self.seed)
        g = self.n_clusters
        for start in range(0, self.n_resamples, self.chunk):
            rows = min(self.chunk, self.n_resamples - start)
            picks = rng.integers(0, g, size=(rows, g))
            flat = (picks + (np.arange(rows) * g)[:, None]).ravel()
            counts = np.bincount(flat, minlength=rows * g).reshape(rows, g)
            yield counts.astype(np.uint8) if counts.max(initial=0) < 256 else counts

    def count_chunks(self) -> Iterator[np.ndarray]:
        """(rows, patients) multiplicities of each patient in each resample, chunk by chunk."""
        return iter(self._cached) if self._cached is not None else self._generate()

    def cluster_sums(self, stats: np.ndarray) -> np.ndarray:
        stats = np.asarray(stats, dtype=float).reshape(self.n_items, -1)
        return np.stack([np.bincount(self.cluster_of_item, weights=col, minlength=self.n_clusters)
                         for col in stats.T], axis=1)

    def totals(self, stats: np.ndarray) -> np.ndarray:
        """Bootstrap totals (resamples, m) of per-item statistics (items, m)."""
        # float32 halves the cost of the product; per-patient sums of counts/0-1 values stay exact integers far
        # beyond bench sizes (2^24), and fractional statistics keep ~7 significant digits, ample for intervals.
        sums = self.cluster_sums(stats).astype(np.float32)
        return np.concatenate([c.astype(np.float32) @ sums for c in self.count_chunks()], axis=0).astype(np.float64)

    def item_weight_chunks(self, item_mask: np.ndarray | None = None) -> Iterator[np.ndarray]:
        """(rows, items) multiplicity of each (masked) item in each resample: its patient's count."""
        cols = self.cluster_of_item if item_mask is None else self.cluster_of_item[np.asarray(item_mask, bool)]
        for counts in self.count_chunks():
            yield counts[:, cols].astype(np.float64)

    # ------------------------------------------------------------------------------------------ intervals

    def interval(self, point: float, samples: np.ndarray, item_mask: np.ndarray | None = None,
                 test_zero: bool = False) -> Interval:
        """Percentile interval from bootstrap samples, with counts and the small-subset warning (and, with
        `test_zero`, the bootstrap p-value of a difference against 0)."""
        samples = np.asarray(samples, dtype=float)
        alpha = (1 - self.level) / 2
        finite = samples[np.isfinite(samples)]
        if finite.size:
            low, high = (float(v) for v in np.percentile(finite, [100 * alpha, 100 * (1 - alpha)]))
        else:
            low = high = float("nan")
        mask = np.ones(self.n_items, bool) if item_mask is None else np.asarray(item_mask, bool)
        n_clusters = len(np.unique(self.cluster_of_item[mask]))
        return Interval(point=float(point), low=low, high=high, n_items=int(mask.sum()), n_clusters=n_clusters,
                        n_resamples=self.n_resamples,
                        warning=small_subset_warning(n_clusters, low, high, unit=self.unit),
                        p_value=bootstrap_p_value(finite) if test_zero else None)

    def bootstrap(self, stats: np.ndarray, metric: Callable[[np.ndarray], np.ndarray],
                  item_mask: np.ndarray | None = None) -> Interval:
        """Interval of `metric(totals)` for per-item statistics `stats` (items, m); masked-out items count 0."""
        stats = _masked(stats, item_mask, self.n_items)
        point = float(metric(stats.sum(axis=0)))
        return self.interval(point, metric(self.totals(stats)), item_mask)

    def bootstrap_ratio(self, values: np.ndarray, item_mask: np.ndarray | None = None) -> Interval:
        """Interval of the mean of per-item values (accuracy, mean IoU, hit rate, mean similarity)."""
        values = np.asarray(values, dtype=float)
        stats = np.stack([values, np.ones_like(values)], axis=1)
        return self.bootstrap(stats, _ratio, item_mask)

    def paired_difference(self, stats_a: np.ndarray, stats_b: np.ndarray,
                          metric: Callable[[np.ndarray], np.ndarray], item_mask: np.ndarray | None = None) -> Interval:
        """Interval of metric(A) − metric(B) on the same items, both computed in every resample."""
        a, b = _masked(stats_a, item_mask, self.n_items), _masked(stats_b, item_mask, self.n_items)
        m = a.shape[1]
        totals = self.totals(np.concatenate([a, b], axis=1))
        diff = metric(totals[:, :m]) - metric(totals[:, m:])
        point = float(metric(a.sum(axis=0)) - metric(b.sum(axis=0)))
        return self.interval(point, diff, item_mask, test_zero=True)

    def bootstrap_indices(self, metric: Callable[[np.ndarray], float], item_mask: np.ndarray | None = None,
                          n_resamples: int | None = None) -> Interval:
        """Slow path for any metric: call `metric(item_indices)` on each resample's items (with repeats)."""
        mask = np.ones(self.n_items, bool) if item_mask is None else np.asarray(item_mask, bool)
        items = np.flatnonzero(mask)
        limit = self.n_resamples if n_resamples is None else min(n_resamples, self.n_resamples)
        samples: list[float] = []
        for weights in self.item_weight_chunks(mask):
            for row in weights[: limit - len(samples)]:
                samples.append(metric(np.repeat(items, row.astype(int))))
            if len(samples) >= limit:
                break
        return self.interval(float(metric(items)), np.array(samples), mask)


    def bootstrap_batch(self, specs: dict[str, MetricSpec]) -> dict[str, Interval]:
        """Many intervals from one pass over the resamples: all statistics are stacked into one matrix product.

        Scoring a whole bench (hundreds of cells × metrics) this way costs about as much as one interval."""
        blocks = {name: _masked(spec.stats, spec.item_mask, self.n_items) for name, spec in specs.items()}
        if not blocks:
            return {}
        totals = self.totals(np.concatenate(list(blocks.values()), axis=1))
        out, start = {}, 0
        for name, block in blocks.items():
            spec, width = specs[name], block.shape[1]
            point = float(spec.metric(block.sum(axis=0)))
            out[name] = self.interval(point, spec.metric(totals[:, start:start + width]), spec.item_mask,
                                      test_zero=spec.difference)
            start += width
        return out


@dataclass(frozen=True)
class MetricSpec:
    """Per-item statistics (items, m), the metric of their totals, and the items it covers."""

    stats: np.ndarray
    metric: Callable[[np.ndarray], np.ndarray]
    item_mask: np.ndarray | None = None
    difference: bool = False  # a paired difference: its interval carries a p-value against 0

    @classmethod
    def mean(cls, values: np.ndarray, item_mask: np.ndarray | None = None) -> MetricSpec:
        """Mean of per-item values over the masked items (NaN values are left out of the mean)."""
        values = np.asarray(values, dtype=float)
        defined = np.isfinite(values)
        mask = defined if item_mask is None else defined & np.asarray(item_mask, bool)
        stats = np.stack([np.where(defined, values, 0.0), np.ones_like(values)], axis=1)
        return cls(stats, ratio, mask)

    @classmethod
    def mean_difference(cls, a: np.ndarray, b: np.ndarray, item_mask: np.ndarray | None = None) -> MetricSpec:
        """Paired mean(a) − mean(b) over items where both are defined."""
        a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
        defined = np.isfinite(a) & np.isfinite(b)
        mask = defined if item_mask is None else defined & np.asarray(item_mask, bool)
        ones = np.ones_like(a)
        stats = np.stack([np.where(defined, a, 0.0), ones, np.where(defined, b, 0.0), ones], axis=1)
        return cls(stats, lambda t: ratio(t[..., 0:2]) - ratio(t[..., 2:4]), mask, difference=True)


def ratio(totals: np.ndarray) -> np.ndarray:
    """[numerator, denominator] totals -> ratio, NaN where the denominator is 0."""
    return _ratio(totals)


def _ratio(totals: np.ndarray) -> np.ndarray:
    num, den = totals[..., 0], totals[..., 1]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)


def _masked(stats: np.ndarray, item_mask: np.ndarray | None, n_items: int) -> np.ndarray:
    stats = np.asarray(stats, dtype=float).reshape(n_items, -1)
    if item_mask is None:
        return stats
    return stats * np.asarray(item_mask, bool)[:, None]


def item_level_resampler(n_items: int, **kwargs: object) -> ClusterResampler:
    """Each item its own cluster: the naive (item-level) bootstrap, kept for comparison only."""
    return ClusterResampler(np.arange(n_items), **kwargs)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------- tests and power


def bootstrap_p_value(differences: np.ndarray) -> float:
    """Two-sided bootstrap p-value of "no difference": twice the smaller share of resampled differences on either
    side of 0 (each share counted with the +1 of a permutation-style estimate, so p is never 0), capped at 1."""
    d = np.asarray(differences, dtype=float)
    d = d[np.isfinite(d)]
    if not d.size:
        return float("nan")
    below, above = (np.sum(d <= 0) + 1) / (d.size + 1), (np.sum(d >= 0) + 1) / (d.size + 1)
    return float(min(1.0, 2 * min(below, above)))


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm step-down adjusted p-values (family-wise error), in the input order; NaN entries stay NaN and do not
    count towards the family."""
    p = np.asarray(p_values, dtype=float)
    out = np.full(p.shape, np.nan)
    finite = np.flatnonzero(np.isfinite(p))
    order = finite[np.argsort(p[finite], kind="stable")]
    m, running = len(order), 0.0
    for rank, idx in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[idx]))
        out[idx] = running
    return out.tolist()


@dataclass(frozen=True)
class Power:
    """Design effect of a clustered mean and the minimum detectable difference (MDD) at the given power."""

    design_effect: float
    mdd: float
    n_items: int
    n_clusters: int
    effective_n: float

    def as_dict(self) -> dict[str, float | int]:
        return {"design_effect": self.design_effect, "mdd": self.mdd, "n_items": self.n_items,
                "n_clusters": self.n_clusters, "effective_n": self.effective_n}


def clustered_power(values: np.ndarray, clusters: np.ndarray, *, alpha: float = 0.05,
                    power: float = 0.80) -> Power | None:
    """Design effect from the data and the smallest difference between two models detectable on these items.

    The variance of the mean under clustering is the ratio-estimator (linearisation) variance over clusters,
    V = G/(G−1) · Σ_g (y_g − ȳ·m_g)² / n²  (y_g, m_g: a cluster's sum and item count); the design effect is V over
    the simple-random-sampling variance s²/n (s² with divisor n). Two models scored on items like these, with
    independent errors, differ detectably (two-sided α, the given power) by MDD = (z_{1−α/2} + z_{power}) ·
    √(2·V). None when fewer than 2 clusters or no spread."""
    values, clusters = np.asarray(values, dtype=float), np.asarray(clusters)
    keep = np.isfinite(values)
    values, clusters = values[keep], clusters[keep]
    keys, inverse = np.unique(clusters, return_inverse=True)
    n, g = len(values), len(keys)
    if g < 2:
        return None
    mean, s2 = values.mean(), values.var()
    sums, sizes = np.bincount(inverse, weights=values, minlength=g), np.bincount(inverse, minlength=g)
    v_cluster = g / (g - 1) * float(np.sum((sums - mean * sizes) ** 2)) / n ** 2
    if s2 <= 0:
        return None
    deff = v_cluster / (s2 / n)
    z = float(norm.ppf(1 - alpha / 2) + norm.ppf(power))
    return Power(design_effect=float(deff), mdd=z * float(np.sqrt(2 * v_cluster)), n_items=n, n_clusters=g,
                 effective_n=float(n / deff) if deff > 0 else float("inf"))
