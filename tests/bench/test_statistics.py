"""Patient-clustered bootstrap: exactness on tiny inputs, pairing, the warning rule, and coverage by simulation."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import expit

from breastgpt.bench.metrics import kappa_from_confusion, kappa_stats, weighted_auc
from breastgpt.bench.statistics import ClusterResampler, item_level_resampler, small_subset_warning


def test_counts_resample_whole_patients():
    rs = ClusterResampler(["p2", "p1", "p1", "p3"], n_resamples=7, seed=3, chunk=3)
    chunks = list(rs.count_chunks())
    assert [c.shape for c in chunks] == [(3, 3), (3, 3), (1, 3)]
    counts = np.concatenate(chunks)
    assert (counts.sum(axis=1) == 3).all()  # each resample draws as many patients as there are
    assert list(rs.cluster_keys) == ["p1", "p2", "p3"]
    again = np.concatenate(list(ClusterResampler(["p3", "p1", "p1", "p2"], n_resamples=7, seed=3).count_chunks()))
    assert (again == counts).all()  # same patients + seed -> same resamples, whatever the item order


def test_totals_match_a_direct_loop():
    clusters = np.array([0, 0, 1, 2, 2, 2])
    stats = np.array([[1, 1], [0, 1], [1, 1], [1, 1], [1, 1], [0, 1]], dtype=float)
    rs = ClusterResampler(clusters, n_resamples=50, seed=0)
    totals = rs.totals(stats)
    counts = np.concatenate(list(rs.count_chunks()))
    for row, c in zip(totals, counts):
        expected = sum(c[k] * stats[clusters == k].sum(axis=0) for k in range(3))
        assert row.tolist() == expected.tolist()


def test_constant_data_gives_a_point_interval_and_the_fast_path_equals_the_slow_path():
    rs = ClusterResampler(np.repeat(np.arange(40), 3), n_resamples=200, seed=1)
    iv = rs.bootstrap_ratio(np.ones(120))
    assert (iv.point, iv.low, iv.high, iv.n_items, iv.n_clusters) == (1.0, 1.0, 1.0, 120, 40)
    y = (np.arange(120) % 3 == 0).astype(float)
    fast = rs.bootstrap_ratio(y)
    slow = rs.bootstrap_indices(lambda idx: float(y[idx].mean()))
    assert fast.point == pytest.approx(1 / 3)
    assert (fast.low, fast.high) == pytest.approx((slow.low, slow.high), abs=1e-12)


def test_masked_subset_counts_only_its_patients():
    clusters = np.repeat(np.arange(10), 2)
    y = np.tile([1.0, 0.0], 10)
    mask = clusters < 4
    iv = ClusterResampler(clusters, n_resamples=100, seed=0).bootstrap_ratio(y, mask)
    assert (iv.point, iv.n_items, iv.n_clusters) == (0.5, 8, 4)
    assert iv.warning is not None and "only 4 patients" in iv.warning


def test_paired_difference_is_zero_for_identical_models_and_exact_for_a_shift():
    clusters = np.repeat(np.arange(50), 2)
    rng = np.random.default_rng(0)
    a = (rng.random(100) < 0.7).astype(float)
    rs = ClusterResampler(clusters, n_resamples=300, seed=0)
    stats = np.stack([a, np.ones(100)], 1)
    same = rs.paired_difference(stats, stats, lambda t: t[..., 0] / t[..., 1])
    assert (same.point, same.low, same.high) == (0.0, 0.0, 0.0)
    b = a.copy()
    b[:10] = 1 - b[:10]  # flips on patients 0-4 only
    diff = rs.paired_difference(stats, np.stack([b, np.ones(100)], 1), lambda t: t[..., 0] / t[..., 1])
    assert diff.point == pytest.approx((a.sum() - b.sum()) / 100)
    assert diff.low <= diff.point <= diff.high


def test_vectorised_kappa_and_auc_under_resampling_match_direct_computation():
    t = np.array([0, 1, 2, 2, 1, 0, 2, 1])
    p = np.array([0, 2, 2, 1, 1, 0, 2, 0])
    clusters = np.array([0, 0, 1, 1, 2, 3, 3, 4])
    rs = ClusterResampler(clusters, n_resamples=20, seed=5)
    kappas = kappa_from_confusion(rs.totals(kappa_stats(t, p, 3)).reshape(-1, 3, 3), "quadratic")
    y, s = (t == 2), np.linspace(0, 1, 8)[::-1] * 0 + np.array([.1, .5, .9, .4, .6, .2, .8, .3])
    aucs = np.concatenate([weighted_auc(y, s, w) for w in rs.item_weight_chunks()])
    from sklearn.metrics import cohen_kappa_score, roc_auc_score
    for k, a, w in zip(kappas, aucs, np.concatenate(list(rs.item_weight_chunks()))):
        idx = np.repeat(np.arange(8), w.astype(int))
        ref_k = cohen_kappa_score(t[idx], p[idx], weights="quadratic", labels=[0, 1, 2])
        assert (np.isnan(k) and np.isnan(ref_k)) or k == pytest.approx(ref_k)
        if len(np.unique(y[idx])) == 2:
            assert a == pytest.approx(roc_auc_score(y[idx], s[idx]))


@pytest.mark.parametrize("n,low,high,expected", [
    (30, 0.50, 0.70, None),
    (29, 0.50, 0.70, "only 29 patients (< 30)"),
    (100, 0.40, 0.62, "95% interval half-width 11.0 points (> 10)"),
    (100, float("nan"), float("nan"), "interval undefined"),
])
def test_small_subset_rule(n, low, high, expected):
    assert small_subset_warning(n, low, high) == expected


def _coverage(replicates: int, patients: int, resamples: int, seed: int) -> tuple[float, float]:
    """Clustered data with known truth: patient random effect u ~ N(0, 1.5) on the logit, 2-8 items each."""
    mu, sigma = 0.5, 1.5
    x, w = np.polynomial.hermite_e.hermegauss(80)
    truth = float((expit(mu + sigma * x) * w).sum() / w.sum())  # E[p] = the accuracy the estimator targets
    rng = np.random.default_rng(seed)
    hits_cluster = hits_item = 0
    for r in range(replicates):
        u = rng.normal(0.0, sigma, patients)
        clusters = np.repeat(np.arange(patients), rng.integers(2, 9, patients))
        y = (rng.random(len(clusters)) < expit(mu + u)[clusters]).astype(float)
        c = ClusterResampler(clusters, n_resamples=resamples, seed=r).bootstrap_ratio(y)
        i = item_level_resampler(len(y), n_resamples=resamples, seed=r).bootstrap_ratio(y)
        hits_cluster += c.low <= truth <= c.high
        hits_item += i.low <= truth <= i.high
    return hits_cluster / replicates, hits_item / replicates


@pytest.mark.slow
def test_coverage_acceptance_1000_replicates():
    """Issue 8 point 2: clustered intervals cover 93-97 %; the item-level bootstrap under-covers."""
    cluster, item = _coverage(replicates=1000, patients=200, resamples=500, seed=2024)
    assert 0.93 <= cluster <= 0.97
    assert item < 0.88


def test_coverage_quick():
    """Fewer replicates, looser bounds, same conclusion: only patient clustering gives honest intervals."""
    cluster, item = _coverage(replicates=200, patients=100, resamples=400, seed=7)
    assert 0.90 <= cluster <= 0.985
    assert item < 0.88
