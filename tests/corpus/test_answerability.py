"""Answerable from pixels (issue 28, point 7): burned-in labels are masked in mammograms, templates whose answer
the preprocessing removes are not rendered, the audit flags any that are, and docs/corpus.md lists the contract
of every template."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from breastgpt.corpus.audit import AuditConfig, audit_corpus
from breastgpt.corpus.build import BuildConfig, SourceSpec, build_corpus
from breastgpt.corpus.records import MediaRef
from breastgpt.corpus.templates import SampleView, load_templates, render_sample
from breastgpt.corpus.templates.evidence import (CT_FINDING_TISSUE, condition_holds, contract_markdown,
                                                 template_contract, unmet_conditions)
from breastgpt.io.volume import read_volume
from breastgpt.io.windowing import window_volume
from breastgpt.preprocessing import PREPROCESSING_FILE, Preprocessing, prepare_image, read_image_pixels
from tests.corpus.fixtures import FULL_LABELS, SECRET, adapters_for, make_source, png_normaliser
from tests.io.dicom_factory import write_grey_dicom

REPO = Path(__file__).resolve().parents[2]


def _film_with_label(tmp_path: Path, side: str) -> tuple[Path, np.ndarray]:
    """A MONOCHROME1 DICOM mammogram with a burned-in view label in the air beside the breast, and the label's
    pixel mask."""
    from breastgpt.synth.render import render_mammogram

    h, w = 360, 280
    image, _ = render_mammogram(np.random.default_rng(5), h, w, side, "B")
    label = Image.new("L", (w, h), 0)
    x = w - 90 if side == "L" else 10  # the air is on the side away from the chest wall
    ImageDraw.Draw(label).text((x, h // 2 - 140), f"{side}CC", fill=255, font_size=30)
    text = np.asarray(label) > 0
    assert text.sum() > 100
    image = np.where(text, 4000.0, image)
    stored = 4095 - np.clip(np.round(image), 0, 4095).astype(np.uint16)
    path = write_grey_dicom(tmp_path / f"{side}.dcm", stored, bits_stored=12, photometric="MONOCHROME1",
                            WindowCenter=2048, WindowWidth=4096)
    return path, text


@pytest.mark.parametrize("side", ["L", "R"])
def test_a_burned_in_view_label_is_masked_and_the_breast_kept(tmp_path: Path, side: str) -> None:
    path, text = _film_with_label(tmp_path, side)
    display = read_image_pixels(path)
    assert display[text].min() >= 240  # the label reads white on the displayed film
    # no crop, no flip: the same geometry, so pixels compare one to one
    kept = Preprocessing(mammo_crop=False, mammo_flip_to="none", image_long_side=4096)
    prepared = prepare_image(display, "mammography", kept)
    assert prepared.pixels.shape == display.shape and prepared.masked_pixels >= int(text.sum())
    assert prepared.pixels[text].max() == 0
    breast = display > 60
    breast &= ~text
    assert np.array_equal(prepared.pixels[breast], display[breast])
    # the defaults: cropped, flipped, scaled, and still no label pixel left
    default = prepare_image(display, "mammography", Preprocessing()).pixels
    assert (default >= 240).sum() < 0.01 * default.size and prepared.flipped is False
    unmasked = prepare_image(display, "mammography", Preprocessing(mammo_mask_outside_breast=False,
                                                                   mammo_crop=False, mammo_flip_to="none"))
    assert unmasked.pixels[text].min() >= 240  # what the masking removes


def test_conditions_follow_the_settings() -> None:
    templates = {t.id: t for t in load_templates().templates}
    laterality = templates["scr-mam-laterality-choice"]
    assert unmet_conditions(laterality, Preprocessing()) == ["native_orientation"]
    assert unmet_conditions(laterality, Preprocessing(mammo_flip_to="none")) == []
    assert unmet_conditions(laterality, Preprocessing(mammo_flip_to="none", mammo_mask_outside_breast=False)) == [
        "no_burned_in_labels"]
    assert unmet_conditions(templates["scr-mam-view-choice"], Preprocessing()) == []
    soft = Preprocessing(ct_preset="ct-soft-tissue")
    assert unmet_conditions(templates["scr-ct-emphysema-yesno"], soft) == ["ct_window:lung"]
    assert unmet_conditions(templates["scr-ct-pleural-effusion-yesno"], soft) == []
    assert unmet_conditions(templates["scr-ct-coronary-calc-yesno"], Preprocessing(ct_preset="ct-lung")) == [
        "ct_window:calcium"]
    assert all(not unmet_conditions(t, Preprocessing()) for t in templates.values() if t.modality == "ct")
    with pytest.raises(KeyError):
        condition_holds("made_up", Preprocessing())


def test_the_lung_window_contract_matches_a_real_chest_ct(realdata: Path) -> None:
    """Lung voxels of a real chest CT carry no contrast in a soft-tissue window and do in the demo's wide window:
    the reason lung templates need `ct_window:lung`."""
    volume = read_volume(realdata / "ct" / "totalseg_pulmonary_ct_cropped.nii.gz")
    lung = (volume.array > -900) & (volume.array < -500)
    assert lung.sum() > 10_000
    assert condition_holds("ct_window:lung", Preprocessing()) and not condition_holds(
        "ct_window:lung", Preprocessing(ct_preset="ct-soft-tissue"))
    assert np.unique(window_volume(volume, "ct-soft-tissue")[lung]).tolist() == [0]
    assert len(np.unique(window_volume(volume, "ct-wide")[lung])) > 40


def test_every_ct_finding_has_a_tissue() -> None:
    from breastgpt.corpus.sources.ct_rate import ABNORMALITIES, snake

    assert set(CT_FINDING_TISSUE) == {snake(n) for n in ABNORMALITIES}
    keys = [t.args["key"] for t in load_templates().templates if t.modality == "ct" and "key" in t.args]
    assert keys and all(key in CT_FINDING_TISSUE for key in keys)


def test_rendering_drops_templates_the_window_makes_unanswerable() -> None:
    labels = {k: v for k, v in FULL_LABELS["ct"].items() if k != "boxes"}
    view = SampleView("s", "c1", "p", "st", "ct", "volume", "train", [MediaRef("media/x.npz", "0" * 64, "volume")],
                      labels)
    wide = {r.template_id for r in render_sample(view, preprocessing=Preprocessing())}
    soft = {r.template_id for r in render_sample(view, preprocessing=Preprocessing(ct_preset="ct-soft-tissue"))}
    lung_templates = {t.id for t in load_templates().templates
                      if t.modality == "ct" and CT_FINDING_TISSUE.get(t.args.get("key", "")) == "lung"}
    assert lung_templates and lung_templates <= wide
    assert not soft & lung_templates and "scr-ct-pleural-effusion-yesno" in soft
    assert "scr-ct-which-present-choice" in wide and "scr-ct-which-present-choice" not in soft


def test_the_audit_flags_records_the_preprocessing_cannot_answer(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("ANSWERABILITY_SECRET", SECRET)
    make_source(tmp_path / "src" / "mam", "mam", [
        {"id": f"c{i}", "patient": f"p{i}", "labels": FULL_LABELS["mammography"] | {"laterality": "LR"[i % 2]}}
        for i in range(4)])
    config = dict(out=tmp_path / "corpus", sources=(SourceSpec("mam", tmp_path / "src" / "mam"),),
                  secret_env="ANSWERABILITY_SECRET")
    build_corpus(BuildConfig(**config, limits=Preprocessing(mammo_flip_to="none")), adapters=adapters_for("mam"),
                 normaliser=png_normaliser)
    native = audit_corpus(tmp_path / "corpus", AuditConfig(near_duplicates=False))
    assert native.findings["unanswerable_from_pixels"] == []
    # the same records claimed under orientation normalisation: the side is no longer in the pixels
    (tmp_path / "corpus" / PREPROCESSING_FILE).write_text(
        (tmp_path / "corpus" / PREPROCESSING_FILE).read_text().replace('"none"', '"L"'))
    flipped = audit_corpus(tmp_path / "corpus", AuditConfig(near_duplicates=False))
    assert flipped.findings["unanswerable_from_pixels"] == [
        {"template": "scr-mam-laterality-choice", "records": 4, "unmet": ["native_orientation"]}]
    assert flipped.leakage
    # a default build never renders them
    build_corpus(BuildConfig(**config), adapters=adapters_for("mam"), normaliser=png_normaliser)
    rebuilt = audit_corpus(tmp_path / "corpus", AuditConfig(near_duplicates=False))
    assert rebuilt.findings["unanswerable_from_pixels"] == [] and rebuilt.n_records == native.n_records - 4


def test_docs_list_the_contract_of_every_template() -> None:
    templates = load_templates().templates
    table = contract_markdown(templates)
    assert table.count("\n| `") == len(templates)
    assert table in (REPO / "docs" / "corpus.md").read_text(encoding="utf-8")
    assert all(template_contract(t).evidence for t in templates)
