"""Exact values of the closed/grounding/clinical metrics on tiny inputs, and agreement of the vectorised forms."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import spearmanr
from sklearn.metrics import cohen_kappa_score, roc_auc_score

from breastgpt.bench.metrics import (accuracy, auc, binary_stats, confusion, hit_rate, iou, kappa_from_confusion,
                                     kappa_stats, ratio_from_sums, ratio_stats, sens_spec_from_sums,
                                     sensitivity_specificity, spearman_from_confusion, weighted_auc,
                                     weighted_kappa)


def test_accuracy_and_ratio_from_sums():
    assert accuracy(np.array([1, 0, 1, 1])) == 0.75
    assert np.isnan(accuracy(np.array([])))
    sums = ratio_stats(np.array([1.0, 0.0, 1.0])).sum(axis=0)
    assert sums.tolist() == [2.0, 3.0]
    assert ratio_from_sums(np.array([[2.0, 4.0], [1.0, 0.0]])).tolist()[0] == 0.5
    assert np.isnan(ratio_from_sums(np.array([1.0, 0.0])))


@pytest.mark.parametrize("pred,truth,expected", [
    ((0, 0, 10, 10), (0, 0, 10, 10), 1.0),
    ((0, 0, 10, 10), (5, 0, 15, 10), 50 / 150),
    ((0, 0, 10, 10), (20, 20, 30, 30), 0.0),
    ((0, 0, 10, 10), (0, 0, 5, 5), 0.25),
    (None, (0, 0, 5, 5), 0.0),
    ((0, 0, 10, 10, 0, 10), (0, 0, 10, 10, 5, 15), 500 / 1500),
    ((5, 5, 5, 5), (5, 5, 5, 5), 1.0),  # degenerate identical boxes
])
def test_iou(pred, truth, expected):
    assert iou(pred, truth) == pytest.approx(expected, abs=1e-12)


def test_iou_dimension_mismatch_and_hit_rate():
    with pytest.raises(ValueError, match="dimensions"):
        iou((0, 0, 1, 1), (0, 0, 1, 1, 0, 1))
    assert hit_rate(np.array([0.5, 0.49, 0.9, 0.0])) == 0.5


def test_sensitivity_specificity_exact():
    y = np.array([1, 1, 1, 0, 0, 0, 0])
    p = np.array([1, 1, 0, 0, 0, 1, 0])
    assert sensitivity_specificity(y, p) == (2 / 3, 3 / 4)
    sens, spec = sens_spec_from_sums(binary_stats(y, p).sum(axis=0))
    assert (float(sens), float(spec)) == (2 / 3, 3 / 4)
    sens, _ = sensitivity_specificity(np.array([0, 0]), np.array([0, 1]))
    assert np.isnan(sens)


def test_auc_matches_sklearn_and_weighted_form():
    y = np.array([0, 0, 1, 1, 0, 1])
    s = np.array([0.1, 0.4, 0.35, 0.8, 0.8, 0.9])
    assert auc(y, s) == pytest.approx(roc_auc_score(y, s))
    assert auc(y, s) == pytest.approx(6.5 / 9)  # 6 wins + 1 tie among 9 pos-neg pairs
    assert np.isnan(auc(np.array([1, 1]), np.array([0.2, 0.3])))
    w = np.array([[1, 1, 1, 1, 1, 1], [2, 0, 1, 3, 1, 0], [0, 1, 0, 0, 1, 0]], dtype=float)
    got = weighted_auc(y, s, w)
    expanded = np.repeat(np.arange(6), w[1].astype(int))
    assert got[0] == pytest.approx(roc_auc_score(y, s))
    assert got[1] == pytest.approx(roc_auc_score(y[expanded], s[expanded]))
    assert np.isnan(got[2])


def test_weighted_kappa_exact_and_vectorised():
    t = np.array([0, 1, 2, 3, 3, 2, 1, 0])
    p = np.array([0, 1, 3, 3, 2, 2, 0, 0])
    for weights in ("linear", "quadratic"):
        ref = cohen_kappa_score(t, p, weights=weights)
        assert weighted_kappa(t, p, weights) == pytest.approx(ref)
        conf = kappa_stats(t, p, 4).sum(axis=0).reshape(4, 4)
        assert float(kappa_from_confusion(conf, weights)) == pytest.approx(ref)
    # Hand computation for a 2x2 case: observed agreement 0.5, expected 0.5 -> κ = 0.
    assert weighted_kappa(np.array([0, 0, 1, 1]), np.array([0, 1, 0, 1]), "linear") == pytest.approx(0.0)
    assert weighted_kappa(t, t) == 1.0
    with pytest.raises(ValueError, match="weights"):
        weighted_kappa(t, p, "cubic")


def test_confusion_includes_unobserved_levels():
    conf = confusion(np.array([0, 0, 2]), np.array([0, 2, 2]), 4)
    assert conf.tolist() == [[1, 0, 1, 0], [0, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0]]


def test_spearman_from_confusion_matches_scipy_with_ties():
    rng = np.random.default_rng(7)
    tables, expected = [], []
    for _ in range(5):
        a = rng.integers(0, 5, 60)
        b = np.clip(a + rng.integers(-1, 2, 60), 0, 4)
        tables.append(kappa_stats(a, b, 5).sum(axis=0).reshape(5, 5))
        expected.append(spearmanr(a, b)[0])
    got = spearman_from_confusion(np.stack(tables))  # batched over the leading axis, as the bootstrap uses it
    assert got == pytest.approx(expected, abs=1e-12)
    assert np.isnan(spearman_from_confusion(np.diag([3.0, 0, 0])))  # a constant rater: undefined
