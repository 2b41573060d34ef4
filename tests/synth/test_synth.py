"""Synthetic cohorts: deterministic, in each source's layout, labels visible in pixels; CLI."""

from __future__ import annotations

import json

import numpy as np
from typer.testing import CliRunner

from tests.clitext import words

from breastgpt.synth.cases import SynthConfig
from breastgpt.synth.cli import app
from breastgpt.synth.cohort import generate
from breastgpt.synth.render import DENSITY_FRACTION, breast_mask, render_mammogram
from breastgpt.synth.render_us import render_ultrasound
from breastgpt.synth.render_volume import render_ct, render_mri


def test_same_seed_same_cohort(tmp_path):
    from breastgpt.corpus.sources.media import read_pixels

    a = generate(tmp_path / "a", 3, ["vindr_mammo", "csaw_m", "busi"], seed=5)
    b = generate(tmp_path / "b", 3, ["vindr_mammo", "csaw_m", "busi"], seed=5, workers=2)  # sources in parallel
    c = generate(tmp_path / "c", 3, ["vindr_mammo"], seed=6)
    assert (a["vindr_mammo"] / "finding_annotations.csv").read_bytes() == \
        (b["vindr_mammo"] / "finding_annotations.csv").read_bytes()
    files_a = sorted(p.relative_to(a["busi"]) for p in a["busi"].rglob("*.png"))
    assert files_a == sorted(p.relative_to(b["busi"]) for p in b["busi"].rglob("*.png"))
    for rel in files_a:
        assert np.array_equal(read_pixels(a["busi"] / rel), read_pixels(b["busi"] / rel))
    assert (a["vindr_mammo"] / "finding_annotations.csv").read_bytes() != \
        (c["vindr_mammo"] / "finding_annotations.csv").read_bytes()
    truth_a = (tmp_path / "a" / ".truth" / "csaw_m.json").read_text()
    assert truth_a.replace(str(tmp_path / "a"), str(tmp_path / "b")) == \
        (tmp_path / "b" / ".truth" / "csaw_m.json").read_text()
    manifest = json.loads((tmp_path / "a" / "synth_manifest.json").read_text())
    assert manifest["seed"] == 5 and manifest["sources"]["busi"]["samples"] == 3


def test_density_is_fibroglandular_fraction():
    rng = np.random.default_rng(0)
    breast = breast_mask(256, 208, "L")
    for density, fraction in DENSITY_FRACTION.items():
        image, _ = render_mammogram(rng, 256, 208, "L", density)
        dense = (image > 1200) & breast
        assert abs(dense.sum() / breast.sum() - fraction) < 0.05


def test_spiculated_mass_has_more_edge_than_circumscribed():
    def box_area(margin):
        rng = np.random.default_rng(1)
        _, findings = render_mammogram(rng, 256, 208, "L", "A", "mass", "round", margin)
        x1, y1, x2, y2 = findings[0].box
        return (x2 - x1) * (y2 - y1), findings[0].mask.sum()

    (round_box, round_area), (spic_box, spic_area) = box_area("circumscribed"), box_area("spiculated")
    assert spic_box > 2 * round_box  # spicules reach well beyond the core


def test_ultrasound_shadowing_and_region():
    rng = np.random.default_rng(2)
    plain, mask, region = render_ultrasound(rng, 120, 160, shadowing=False)
    shadowed, mask2, _ = render_ultrasound(np.random.default_rng(2), 120, 160, shadowing=True)
    assert np.array_equal(mask, mask2) and mask.any()
    ys, xs = np.nonzero(mask)
    below = slice(ys.max() + 2, region[3]), slice(xs.min() + 2, xs.max() - 2)
    assert shadowed[below][..., 0].mean() < 0.5 * plain[below][..., 0].mean()
    x1, y1, x2, y2 = region
    assert plain[:, :x1 - 1].max() <= 200 and plain[y1:y2, x1:x2].mean() > 40


def test_mri_enhancement_curves_and_ct_findings():
    for curve in ("persistent", "plateau", "washout"):
        volumes, mask = render_mri(np.random.default_rng(3), (12, 48, 64), "L", "mass", curve, True)
        means = [volumes[f"T1_dyn{k}"][mask.astype(bool)].mean() for k in range(3)]
        if curve == "persistent":
            assert means[0] < means[1] < means[2]
        if curve == "washout":
            assert means[1] > means[2] * 1.2
    hu = render_ct(np.random.default_rng(4), (16, 64, 64), {"pleural_effusion": True})
    clean = render_ct(np.random.default_rng(4), (16, 64, 64), {})
    lower = slice(None), slice(44, 60), slice(None)
    assert (hu[lower] > -200).mean() > (clean[lower] > -200).mean() + 0.1


def test_mri_time_course_survives_per_phase_windowing():
    """Each phase is windowed on its own (corpus MRI percentiles); the blood pool sets every post-contrast window, so
    the lesion's grey level still rises, stays or falls from the early to the delayed phase."""
    from breastgpt.io.windowing import window_array

    grey = {}
    for curve in ("persistent", "plateau", "washout"):
        volumes, mask = render_mri(np.random.default_rng(7), (24, 64, 96), "R", "mass", curve, True)
        lesion = mask.astype(bool)
        grey[curve] = [float(window_array(volumes[f"T1_dyn{k}"], "mri-percentile")[lesion].mean()) for k in (1, 2)]
    assert grey["persistent"][1] > grey["persistent"][0] + 20
    assert abs(grey["plateau"][1] - grey["plateau"][0]) < 10
    assert grey["washout"][1] < grey["washout"][0] - 20


def test_enhancing_lesion_is_the_brightest_tissue_of_the_fat_suppressed_breast():
    """The dynamic series is fat-suppressed: on the early post-contrast phase (windowed per volume) the lesion is
    brighter than nearly all of the breast around it, whatever the parenchymal pattern (before: as bright as it)."""
    from breastgpt.io.windowing import window_array

    for seed, lesion_type in ((5, "mass"), (6, "non_mass_enhancement"), (7, "focus")):
        volumes, mask = render_mri(np.random.default_rng(seed), (24, 64, 96), "L", lesion_type, "plateau", True)
        early = window_array(volumes["T1_dyn1"], "mri-percentile").astype(float)
        lesion = mask.astype(bool)
        tissue = (volumes["T1"] > 100) & ~lesion  # body and breasts (air is ~0)
        tissue[:, int(64 * 0.75):, :] = False  # the heart and chest wall below the breasts
        assert np.median(early[lesion]) > np.percentile(early[tissue], 95), lesion_type


def test_ct_wide_window_shows_emphysema_the_soft_tissue_window_hides():
    from breastgpt.io.windowing import window_array

    sick = render_ct(np.random.default_rng(4), (16, 64, 64), {"emphysema": True}).astype(np.float32)
    clean = render_ct(np.random.default_rng(4), (16, 64, 64), {}).astype(np.float32)
    lung = (clean < -700) & (sick < -700)  # lung in both (the findings' draws change the later random ones)
    for window, visible in (("ct-soft-tissue", False), ("ct-wide", True)):
        diff = np.abs(window_array(sick, window)[lung].astype(float) - window_array(clean, window)[lung]).mean()
        assert bool(diff > 1.0) == visible, (window, diff)


def test_cli_generate_json_and_errors(tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["generate", "--out", str(tmp_path), "--patients", "2", "--sources", "mias,busi",
                                 "--seed", "1", "--json"])
    assert result.exit_code == 0, result.output
    roots = json.loads(result.output)
    assert sorted(roots) == ["busi", "mias"] and (tmp_path / "mias" / "Info.txt").is_file()
    bad = runner.invoke(app, ["generate", "--out", str(tmp_path), "--sources", "nope"])
    assert bad.exit_code != 0 and "unknown source" in words(bad.output)
    listed = runner.invoke(app, ["sources"])
    assert "cbis_ddsm" in listed.output.split()


def test_config_rejects_no_patients():
    import pytest

    with pytest.raises(ValueError):
        SynthConfig(patients=0)
