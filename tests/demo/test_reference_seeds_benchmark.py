"""benchmarks/demo_reference_seeds.py: the earlier demo's seed patch, the comparison's statistics and pooling."""

from __future__ import annotations

import subprocess

import pytest

from tests.demo.scripts import BENCHMARKS, load_benchmark


@pytest.fixture(scope="module")
def ref():
    return load_benchmark("demo_reference_seeds")


EARLIER_TRAINING = '''def seeded(settings):
    torch.manual_seed(settings.seed)

def train_config(ctx, name):
    s = ctx.settings
    return replace(base, name=name, seed=s.seed, output_dir=out)

def pretrain_for(ctx, name):
    key = stage_key("pretrain", mode, s.micro_batch, s.seed, s.encoder_mirror)
    return pretrain_encoders(init, batch=2 * s.micro_batch, seed=s.seed, mirror=s.encoder_mirror)
'''


def test_the_training_seed_is_patched_in_where_s_seed_is_passed_and_nowhere_else(ref):
    patched = ref.patch_seed(EARLIER_TRAINING)
    assert patched.count(ref.SEED_READ) == 3
    assert "torch.manual_seed(settings.seed)" in patched  # the initial checkpoint's seed stays the demo's
    assert "s.seed" not in patched.replace("settings.seed", "")


@pytest.mark.parametrize("text", [EARLIER_TRAINING.replace("seed=s.seed, mirror", "seed=0, mirror"),
                                  EARLIER_TRAINING + "x = s.seed\n"])
def test_another_number_of_seed_uses_is_refused(ref, text):
    with pytest.raises(SystemExit, match="uses of `s.seed`"):
        ref.patch_seed(text)


def test_the_patch_fits_the_revision_it_defaults_to():
    rev = subprocess.run(["git", "-C", str(BENCHMARKS.parent), "show", "5091f1d:src/breastgpt/demo/training.py"],
                         capture_output=True, text=True)
    if rev.returncode != 0:
        pytest.skip("this clone lacks 5091f1d (shallow)")
    ref = load_benchmark("demo_reference_seeds")
    assert ref.patch_seed(rev.stdout).count(ref.SEED_READ) == 3


def test_welch_interval_and_permutation_p_on_tiny_samples(ref):
    d, low, high = ref.welch([1.0, 2.0, 3.0], [0.0, 1.0])
    # variances 1 and 0.5: se = sqrt(1/3 + 1/4), Welch df = 2.882..., t quantile 3.2572...
    assert d == 1.5
    assert low == pytest.approx(1.5 - 3.25721 * 0.763763, abs=2e-4)
    assert high == pytest.approx(1.5 + 3.25721 * 0.763763, abs=2e-4)
    assert ref.welch([1.0, 1.0], [1.0, 1.0]) == (0.0, 0.0, 0.0)
    # every relabelling of identical samples is as extreme as the observed one
    assert ref.permutation_p([1.0, 2.0], [1.0, 2.0], n=99) == 1.0
    # {0,0,0} against {9,9,9}: 2 of the 20 splits are as extreme, so p is near 0.1
    assert ref.permutation_p([0.0] * 3, [9.0] * 3, n=4000) == pytest.approx(0.1, abs=0.02)


def _run(full: float, comparator: float, passed: bool) -> dict:
    point = lambda v: {"point": v, "low": v - 5, "high": v + 5}  # noqa: E731
    sets = ("all image-dependent", "not pathology", "pathology")
    return {"full": point(full), "full-no_image": point(full - 45), "criterion": {"passed": passed},
            "slide_minus_thumbnail": {s: point(2.0) for s in sets},
            "slide_vs_thumbnail_accuracy": {s: {"breastgpt": point(58.0), "thumbnail": point(comparator)}
                                            for s in sets},
            "pathway": {"full": point(50.0)}}


def test_comparison_rows(ref):
    rows = ref.compare({"0": _run(62.0, 58.0, True), "1": _run(64.0, 60.0, False)},
                       {"0": _run(60.0, 56.0, True), "1": _run(60.0, 56.0, True), "2": _run(63.0, 56.0, False)})
    assert rows["accuracy"]["current"] == {"n": 2, "mean": 63.0, "min": 62.0, "max": 64.0}
    assert rows["accuracy"]["reference"]["mean"] == 61.0
    assert rows["accuracy"]["difference"]["point"] == 2.0
    assert rows["comparator, not pathology"]["difference"]["point"] == 3.0
    assert rows["criterion met"]["current"]["mean"] == 0.5
    assert set(rows) == set(ref.FIGURES)


def test_runs_pool_only_with_the_same_revision_patch_and_threads(ref):
    base = {"revision": "a" * 40, "threads": 2, "patch": {"uses": 3}, "settings": {"seed": 0},
            "commands": [{"command": "c", "seeds": [0]}]}
    earlier = {**base, "runs": {"0": _run(60.0, 56.0, True), "1": _run(61.0, 56.0, True)}}
    later = {**base, "commands": [{"command": "d", "seeds": [1, 2]}],
             "runs": {"1": _run(70.0, 56.0, True), "2": _run(62.0, 56.0, False)}}
    doc = ref.merged(earlier, later)
    assert list(doc["runs"]) == ["0", "1", "2"] and doc["runs"]["1"]["full"]["point"] == 70.0
    assert doc["settings"]["train_seed"] == [0, 1, 2] and [c["command"] for c in doc["commands"]] == ["c", "d"]
    for key, value in (("revision", "b" * 40), ("threads", 1), ("patch", {"uses": 2})):
        with pytest.raises(SystemExit, match=key):
            ref.check_poolable(earlier, {**later, key: value})


def test_runs_of_another_cpu_are_not_pooled_and_the_comparison_says_where_each_ran(ref):
    epyc, xeon = {"cpu": "AMD EPYC (AVX-512)"}, {"cpu": "Intel Xeon (AVX-512)"}
    assert list(ref.pooled_runs({"0": epyc, "1": {}}, {"2": epyc})) == ["0", "1", "2"]  # no CPU: unknown, not other
    assert list(ref.pooled_runs({"10": {}}, {"2": xeon})) == ["2", "10"]
    with pytest.raises(SystemExit, match="differ between CPUs"):
        ref.pooled_runs({"0": epyc, "1": {}}, {"2": xeon})
    assert ref.cpus({"0": epyc, "1": {}, "2": epyc}) == {"AMD EPYC (AVX-512)": [0, 2], "not recorded": [1]}
