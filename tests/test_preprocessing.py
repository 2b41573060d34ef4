"""The preprocessing settings: strict files, raster parity between the corpus and `ask --modality`, and the
agreement check `predict` and a local `bench run` make between a records folder and a checkpoint."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from breastgpt.corpus.normalise import normalise_media
from breastgpt.corpus.sources.base import SourceSample
from breastgpt.infer.inputs import load_image
from breastgpt.infer.records import preprocessing_agreement
from breastgpt.preprocessing import (PREPROCESSING_FILE, Preprocessing, PreprocessingError, model_image,
                                     read_preprocessing, read_preprocessing_file, write_preprocessing)


def test_settings_round_trip_and_refuse_unknown_keys(tmp_path: Path) -> None:
    settings = Preprocessing(image_long_side=512, ct_preset="ct-lung", mammo_flip_to="none")
    write_preprocessing(tmp_path, settings)
    assert read_preprocessing(tmp_path) == settings and read_preprocessing(tmp_path / "none") is None
    partial = tmp_path / "partial.json"
    partial.write_text(json.dumps({"ct_preset": "ct-lung"}))
    assert read_preprocessing_file(partial) == Preprocessing(ct_preset="ct-lung")
    for bad, message in (({"ct_window": "ct-lung"}, r"partial.json: unknown key\(s\) \['ct_window'\]; known keys are"),
                         ({"ct_preset": "ct-brain"}, "not a window preset"),
                         ({"mammo_flip_to": "up"}, "mammo_flip_to"),
                         ({"image_long_side": 1}, "at least 2"),
                         ({"format": "other"}, "not a version-1")):
        partial.write_text(json.dumps(bad))
        with pytest.raises(PreprocessingError, match=message):
            read_preprocessing_file(partial)
    partial.write_text("{not json")
    with pytest.raises(PreprocessingError, match="partial.json: unreadable"):
        read_preprocessing_file(partial)


def test_corpus_build_takes_a_settings_file_and_names_a_bad_one(tmp_path: Path, monkeypatch) -> None:
    from breastgpt.corpus.cli import app

    monkeypatch.setenv("BREASTGPT_DEID_SECRET", "preprocessing-secret-0123456789")
    (tmp_path / "busi").mkdir()
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"ct_window": "ct-lung"}))
    result = CliRunner().invoke(app, ["build", "--sources", f"busi={tmp_path / 'busi'}", "--out",
                                      str(tmp_path / "out"), "--preprocessing", str(bad)])
    assert result.exit_code == 2 and "unknown key(s) ['ct_window']" in result.output
    assert not (tmp_path / "out").exists()


def test_a_png_mammogram_through_ask_with_modality_matches_its_corpus_image(tmp_path: Path) -> None:
    from breastgpt.synth.render import render_mammogram

    image, _ = render_mammogram(np.random.default_rng(2), 300, 220, "R", "D", abnormality="mass")
    png = tmp_path / "film.png"
    Image.fromarray((np.clip(image, 0, 4095) / 16).astype(np.uint8)).save(png)
    settings = Preprocessing(image_long_side=128)
    sample = SourceSample("csaw", "film", "p", "s", "mammography", "image", [png], {})
    media = normalise_media(sample, tmp_path / "corpus", limits=settings)
    stored = model_image(np.asarray(Image.open(tmp_path / "corpus" / media.paths[0])))
    assert media.meta["flipped"] and max(stored.shape) == 128
    assert np.array_equal(load_image(png, settings=settings, modality="mammography"), stored)
    untouched = load_image(png, settings=settings)  # a raster without --modality: only the size limit
    assert untouched.shape[:2] == (128, round(220 * 128 / 300))
    with pytest.raises(ValueError, match="not one of"):
        load_image(png, settings=settings, modality="mri")


def test_records_prepared_unlike_the_model_are_reported(tmp_path: Path) -> None:
    engine = SimpleNamespace(preprocessing=Preprocessing(ct_preset="ct-wide"), preprocessing_recorded=True)
    assert preprocessing_agreement(engine, tmp_path) == {"model": "checkpoint", "corpus": "none", "differences": [],
                                                         "images": "prepared at load"}
    write_preprocessing(tmp_path, Preprocessing(ct_preset="ct-soft-tissue", image_long_side=512))
    agreement = preprocessing_agreement(engine, tmp_path)
    assert agreement["corpus"] == "recorded" and agreement["images"] == "as stored"
    assert agreement["differences"] == [
        "image_long_side: 1024 != 512", "ct_preset: 'ct-wide' != 'ct-soft-tissue'"]
    (tmp_path / PREPROCESSING_FILE).unlink()
    write_preprocessing(tmp_path, Preprocessing(ct_preset="ct-wide"))
    assert preprocessing_agreement(engine, tmp_path)["differences"] == []


def test_records_outside_a_corpus_build_get_their_images_prepared(tmp_path: Path) -> None:
    """A published bench's images are not normalised by our corpus: `predict` and a local `bench run` prepare them
    with the model's settings as they are read (`record_conversation(prepare=...)`)."""
    from breastgpt.corpus.records import MediaRef
    from breastgpt.corpus.templates import SampleView, render_sample
    from breastgpt.infer.records import preparation, record_conversation
    from breastgpt.synth.render import render_mammogram

    image, _ = render_mammogram(np.random.default_rng(4), 300, 220, "R", "C")
    Image.fromarray((np.clip(image, 0, 4095) / 16).astype(np.uint8)).save(tmp_path / "film.png")
    view = SampleView("pub", "f", "p", "s", "mammography", "image", "bench", [MediaRef("film.png", "0" * 64, "image")],
                      {"density": "C"})
    record = render_sample(view)[0]
    engine = SimpleNamespace(preprocessing=Preprocessing(image_long_side=100), preprocessing_recorded=True)
    prepare = preparation(engine, preprocessing_agreement(engine, tmp_path))
    assert prepare == engine.preprocessing
    parts = [p for m in record_conversation(record, tmp_path, prepare=prepare).conversation.messages
             if isinstance(m["content"], list) for p in m["content"] if p["type"] == "image"]
    assert len(parts) == 1
    expected = load_image(tmp_path / "film.png", settings=engine.preprocessing, modality="mammography")
    assert np.array_equal(parts[0]["image"], expected) and max(expected.shape) == 100
    write_preprocessing(tmp_path, engine.preprocessing)  # a corpus folder: its media are read as stored
    assert preparation(engine, preprocessing_agreement(engine, tmp_path)) is None


def test_morphology_equals_scipy_on_random_masks():
    """The shifted-array morphology gives scipy.ndimage's pixels (default cross structure, border value 0)."""
    from scipy import ndimage

    from breastgpt import preprocessing as P

    rng = np.random.default_rng(0)
    cases = 0
    for trial in range(150):
        h, w = (int(v) for v in rng.integers(1, 30, 2))
        mask = rng.random((h, w)) < rng.random()
        if trial % 3 == 0:
            mask = ndimage.binary_dilation(mask)
        for it in (1, 2, 3):
            assert np.array_equal(P.binary_erosion(mask, it), ndimage.binary_erosion(mask, iterations=it))
            assert np.array_equal(P.binary_dilation(mask, it), ndimage.binary_dilation(mask, iterations=it))
            assert np.array_equal(P.binary_opening(mask, it), ndimage.binary_opening(mask, iterations=it))
            assert np.array_equal(P.binary_closing(mask, it), ndimage.binary_closing(mask, iterations=it))
        assert np.array_equal(P.binary_fill_holes(mask), ndimage.binary_fill_holes(mask))
        cases += 1
    assert cases == 150


def test_largest_component_takes_the_first_on_a_tie():
    from breastgpt.preprocessing import largest_component

    mask = np.zeros((5, 9), dtype=bool)
    mask[1:3, 1:3] = True  # 4 pixels, label 1
    mask[1:3, 5:7] = True  # 4 pixels, label 2
    mask[4, 0] = True  # 1 pixel, label 3
    expected = np.zeros_like(mask)
    expected[1:3, 1:3] = True
    assert np.array_equal(largest_component(mask), expected)
    assert largest_component(np.zeros((3, 3), dtype=bool)) is None
