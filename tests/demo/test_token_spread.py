"""benchmarks/demo_token_spread.py: the spread and cosine figures on tiny inputs, and the probe."""

from __future__ import annotations

import numpy as np
import pytest

from tests.demo.scripts import load_benchmark


def test_spread_and_cosine_exact_on_tiny_inputs() -> None:
    spread_stats = load_benchmark("demo_token_spread").spread_stats
    orthogonal = spread_stats(np.array([[1.0, 0.0], [0.0, 1.0]]))
    assert orthogonal == {"norm": 1.0, "spread": 0.5, "cosine": 0.0, "studies": 2}
    # one shared direction 100 long, studies differing by 1 along another: almost no spread, cosine ~1
    shared = spread_stats(np.array([[100.0, 1.0], [100.0, -1.0], [100.0, 0.0]]))
    assert shared["spread"] == pytest.approx((2 / 3) / ((10001 + 10001 + 10000) / 3))
    assert shared["cosine"] > 0.9999 and shared["norm"] == pytest.approx((2 * 10001**0.5 + 100) / 3)
    with pytest.raises(ValueError, match="at least two"):
        spread_stats(np.ones((1, 4)))


def test_probe_reads_a_small_difference_on_a_large_shared_vector() -> None:
    probe_accuracy = load_benchmark("demo_token_spread").probe_accuracy
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 80)
    x = 50.0 + rng.normal(0, 0.01, (80, 6))
    x[:, 2] += 0.05 * labels  # the reading: 0.1 % of the vector's length
    y = ["Yes" if v else "No" for v in labels]
    assert probe_accuracy(x[:60], y[:60], x[60:], y[60:]) >= 0.95
    assert probe_accuracy(x[:60], ["No"] * 60, x[60:], y[60:]) is None
