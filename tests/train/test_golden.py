"""The golden loss curve holds on every CPU kernel family, and its tolerance keeps the power to catch a change.

The in-process check under this machine's best kernels is tests/train/test_training.py
(`test_tiny_debug_matches_golden_losses_and_learns`); here the same run is repeated in fresh processes capped at
the other instruction sets, and with planted changes that must fail it. How the tolerance was measured:
tests/train/golden.py.
"""

from __future__ import annotations

import json

import pytest

from tests.train.golden import (GOLDEN, PLANTED, SPREAD, TOLERANCE, capabilities_here, losses_in_subprocess,
                                max_abs_diff, run_golden)


@pytest.mark.parametrize("capability", ["default", "avx2"])
def test_golden_holds_under_other_cpu_kernels(capability: str) -> None:
    if capability not in capabilities_here():
        pytest.skip(f"this CPU cannot run ATEN_CPU_CAPABILITY={capability}")
    diff = max_abs_diff(losses_in_subprocess(capability))
    assert diff <= TOLERANCE, f"under {capability}: max |diff| {diff:.3e} > {TOLERANCE}"


@pytest.mark.parametrize("name", sorted(PLANTED))
def test_a_planted_change_fails_the_golden_check(name: str, tmp_path) -> None:
    losses = run_golden(tmp_path / "run", checkpoint_every=0, **PLANTED[name]).losses
    # Not just over the tolerance: the smallest planted effect must dwarf it (measured: 0.22 and 0.60).
    assert max_abs_diff(losses) > 100 * TOLERANCE, name


def test_tolerance_is_derived_from_the_measured_spread() -> None:
    spread = json.loads(SPREAD.read_text())
    seen = [run["max_abs_diff"] for run in spread["runs"] + spread["reported_elsewhere"]]
    assert len(spread["runs"]) >= 4 and {run["capability"] for run in spread["runs"]} >= {"default", "avx2"}
    assert TOLERANCE >= spread["safety_factor"] * max(seen), "the tolerance no longer covers the measured spread"
    assert TOLERANCE * 100 <= min(spread["planted"].values()), "the tolerance is too loose to catch a change"
    assert spread["tolerance"] == TOLERANCE == json.loads(GOLDEN.read_text())["tolerance"]
