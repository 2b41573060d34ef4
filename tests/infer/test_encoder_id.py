"""The checkpoint's slide encoder (`slide_config.encoder_id`) is the default everywhere a model reads slides, and
feature files made by another encoder are refused: by `ask`, `serve`, `case run`, training and the local bench."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from breastgpt.infer.ask import AskInputs, build_conversation, trained_encoder
from breastgpt.infer.engine import Engine
from breastgpt.model.configuration import slide_encoder_id
from breastgpt.pathology.features import write_features
from breastgpt.pathology.foreign_features import FeatureMismatchError
from breastgpt.serve.app import _prepare
from breastgpt.serve.config import ServeConfig
from breastgpt.serve.media import MediaError
from breastgpt.train.data import MediaLoader


def _features(path: Path, encoder: str | None, dim: int) -> Path:
    provenance = {"dim": dim, "target_mpp": 0.5, "tile_size": 256, "slide_sha256": "cd" * 32}
    if encoder is not None:
        provenance["encoder"] = encoder
    coords = np.array([[0, 0], [256, 0], [0, 256]], dtype=np.int64)
    return write_features(path, coords, np.ones((3, dim), dtype=np.float32), provenance,
                          thumbnail=np.zeros((8, 8, 3), np.uint8))


@pytest.fixture(scope="module")
def engine(tiny_checkpoint: Path) -> Engine:
    return Engine.from_pretrained(tiny_checkpoint, device="cpu")


def test_the_checkpoint_names_its_encoder_and_another_is_refused(engine: Engine) -> None:
    own = slide_encoder_id(engine.model.config)
    assert own and trained_encoder(engine) == own and trained_encoder(engine, own) == own
    with pytest.raises(ValueError, match=f"trained on '{own}'"):
        trained_encoder(engine, "conch_v1_5")
    assert slide_encoder_id(None) is None  # a model without a slide branch


def test_ask_refuses_features_of_another_encoder(engine: Engine, tmp_path: Path) -> None:
    dim = engine.processor.slide_feature_dim
    own = slide_encoder_id(engine.model.config)
    good = _features(tmp_path / "own.h5", own, dim)
    conversation, slide = build_conversation(engine, "Q?", AskInputs(slide_features=good), "diagnosis")
    assert slide is not None and slide.features.shape == (3, dim)
    other = _features(tmp_path / "other.h5", "conch_v1_5", dim)
    with pytest.raises(FeatureMismatchError, match=f"encoder 'conch_v1_5', expected '{own}'"):
        build_conversation(engine, "Q?", AskInputs(slide_features=other), "diagnosis")
    # a file that does not record its encoder (TRIDENT, CLAM, hs2p) can only be checked by its dimension
    unrecorded = _features(tmp_path / "unrecorded.h5", None, dim)
    assert build_conversation(engine, "Q?", AskInputs(slide_features=unrecorded), "diagnosis")[1] is not None


def test_serve_refuses_features_of_another_encoder(engine: Engine, tmp_path: Path) -> None:
    dim = engine.processor.slide_feature_dim
    media = tmp_path / "media"
    media.mkdir()
    other = _features(media / "other.h5", "conch_v1_5", dim)
    body = {"model": "breastgpt", "messages": [{"role": "user", "content": [
        {"type": "slide_features_url", "slide_features_url": {"url": other.resolve().as_uri()}},
        {"type": "text", "text": "Q?"}]}]}
    (tmp_path / "work").mkdir()
    config = ServeConfig(model_dir=tmp_path, api_keys=("k" * 32,), media_root=media)
    with pytest.raises(MediaError, match="conch_v1_5"):
        _prepare(json.dumps(body).encode(), config, engine, tmp_path / "work")
    own = _features(media / "own.h5", slide_encoder_id(engine.model.config), dim)
    body["messages"][0]["content"][0]["slide_features_url"]["url"] = own.resolve().as_uri()
    _prepare(json.dumps(body).encode(), config, engine, tmp_path / "work")


def test_training_and_local_bench_loader_refuse_features_of_another_encoder(tmp_path: Path) -> None:
    _features(tmp_path / "other.h5", "conch_v1_5", 4)
    loader = MediaLoader(tmp_path, tmp_path, "features", 4, slide_encoder="stain-texture-v1")
    with pytest.raises(FeatureMismatchError, match="expected 'stain-texture-v1'"):
        loader.part("slide", "other.h5")
    thumbnails = MediaLoader(tmp_path, tmp_path, "thumbnail", 4, slide_encoder="stain-texture-v1")
    assert thumbnails.part("slide", "other.h5")["type"] == "image"  # the comparator reads the thumbnail only
