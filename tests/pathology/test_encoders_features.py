"""Tile encoders (registry, determinism, weight loading) and feature files (round-trip, refusal)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from breastgpt.artifacts import code_version
from breastgpt.io.errors import UnsupportedFormatError
from breastgpt.pathology import encoders
from breastgpt.pathology.encoders import (ConchV15Vision, EncoderSpec, _conch_state, build_encoder,
                                          convert_checkpoint, encoder_names, register_encoder)
from breastgpt.pathology.features import (FeatureMismatchError, load_features, read_attrs, verify_features,
                                          write_features)
from breastgpt.pathology.synthetic import SyntheticScene


def _tiles() -> np.ndarray:
    scene = SyntheticScene.random(6000, 4000, mpp=0.5, seed=0)
    tumour, normal = scene.tumour_region, scene.blobs[1]
    return np.stack([scene.render(int(tumour.cx) - 256, int(tumour.cy) - 256, 512, 512),
                     scene.render(int(normal.cx) - 256, int(normal.cy) - 256, 512, 512),
                     scene.render(0, 0, 512, 512)])


def test_registry_lists_the_families() -> None:
    assert {"conch_v1_5", "uni_vit_l16", "gigapath_vit_g14", "hoptimus_vit_g14", "stain-texture-v1",
            "tiny-random"} <= set(encoder_names())
    assert encoders.get_spec("CONCH-V1-5").name == "conch_v1_5"
    with pytest.raises(ValueError, match="available"):
        encoders.get_spec("resnet-imaginary")
    with pytest.raises(ValueError, match="needs --weights"):
        build_encoder("uni_vit_l16")


def test_descriptor_is_deterministic_and_separates_tissue() -> None:
    tiles = _tiles()
    encoder = build_encoder("stain-texture-v1")
    assert (encoder.dim, encoder.input_size, encoder.weights_sha256) == (86, 256, None)
    first = encoder.encode(tiles)
    assert first.shape == (3, 86) and first.dtype == np.float32 and np.isfinite(first).all()
    assert np.array_equal(first, build_encoder("stain-texture-v1").encode(tiles))
    # Background has almost no optical density; the tumour is more haematoxylin-rich than normal tissue.
    haem_mean = first[:, 0]
    assert haem_mean[0] > haem_mean[1] > haem_mean[2]
    assert np.linalg.norm(first[0] - first[1]) > 0.5


def test_tiny_random_is_seeded() -> None:
    tiles = _tiles()
    a, b = build_encoder("tiny-random"), build_encoder("tiny-random")
    assert a.weights_sha256 == b.weights_sha256 and len(a.weights_sha256) == 64
    assert np.array_equal(a.encode(tiles), b.encode(tiles))
    assert a.encode(tiles[:0]).shape == (0, 32)
    with pytest.raises(ValueError, match="uint8"):
        a.encode(tiles.astype(np.float32))


def test_conch_tower_layout_with_small_trunk() -> None:
    from timm.models.vision_transformer import VisionTransformer

    trunk = VisionTransformer(img_size=64, patch_size=16, embed_dim=64, depth=1, num_heads=2, num_classes=0,
                              init_values=1e-6, global_pool="")
    tower = ConchV15Vision(trunk).eval()
    keys = set(tower.state_dict())
    assert {"attn_pool_contrast.query", "attn_pool_contrast.to_kv.weight", "ln_contrast.weight",
            "trunk.blocks.0.ls1.gamma", "trunk.pos_embed"} <= keys
    assert tower.attn_pool_contrast.query.shape == (1, 768)
    assert tower(torch.zeros(2, 3, 64, 64)).shape == (2, 768)
    # A 2×2 position grid (checkpoint) expands to the 4×4 grid of the 64 px model at load time.
    state = dict(tower.state_dict())
    state["trunk.pos_embed"] = torch.randn(1, 1 + 4, 64)
    converted = _conch_state(state, tower)
    assert converted["trunk.pos_embed"].shape == (1, 17, 64)
    assert torch.equal(converted["trunk.pos_embed"][:, 0], state["trunk.pos_embed"][:, 0])


@pytest.mark.slow
def test_full_conch_tower_dimensions() -> None:
    spec = encoders.get_spec("conch_v1_5")
    module = spec.build()
    assert (spec.dim, spec.input_size) == (768, 448)
    assert module.trunk.pos_embed.shape == (1, 785, 1024) and len(module.trunk.blocks) == 24


def test_weights_from_converted_pickle(tmp_path: Path) -> None:
    from timm.models.vision_transformer import VisionTransformer

    def build() -> torch.nn.Module:
        return VisionTransformer(img_size=32, patch_size=8, embed_dim=16, depth=1, num_heads=2, num_classes=0)

    register_encoder(EncoderSpec("test-local-vit", 16, 32, (0.5,) * 3, (0.5,) * 3, build, True, "test", "test"))
    torch.manual_seed(7)
    trained = build().eval()
    torch.save({"state_dict": trained.state_dict()}, tmp_path / "ckpt.pth")
    with pytest.raises(ValueError, match="safetensors"):
        build_encoder("test-local-vit", weights=tmp_path / "ckpt.pth")
    manifest = convert_checkpoint(tmp_path / "ckpt.pth", tmp_path / "w.safetensors", key="state_dict")
    assert manifest["target_sha256"] == encoders.file_sha256(tmp_path / "w.safetensors")
    assert (tmp_path / "w.safetensors.manifest.json").is_file()
    encoder = build_encoder("test-local-vit", weights=tmp_path / "w.safetensors")
    assert encoder.weights_sha256 == manifest["target_sha256"]
    tiles = _tiles()[:2]
    with torch.no_grad():
        expected = trained(encoder.preprocess(tiles)).numpy()
    assert np.allclose(encoder.encode(tiles), expected, atol=1e-6)


def test_pickle_with_code_is_refused(tmp_path: Path) -> None:
    torch.save({"weights": torch.zeros(2), "hook": Path("/etc")}, tmp_path / "evil.pt")
    with pytest.raises(Exception, match="(?i)weights_only|unsupported|global"):
        convert_checkpoint(tmp_path / "evil.pt", tmp_path / "out.safetensors")
    assert not (tmp_path / "out.safetensors").exists()


PROVENANCE = {"encoder": "tiny-random", "weights_sha256": "ab" * 32, "dim": 4, "target_mpp": 0.5, "tile_size": 512,
              "segmentation": {"mask_mpp": 8.0}, "slide_sha256": "cd" * 32, "mpp_override": None}


def test_feature_file_round_trip(tmp_path: Path) -> None:
    coords = np.array([[0, 0], [512, 0], [0, 512]], dtype=np.int64)
    feats = np.arange(12, dtype=np.float32).reshape(3, 4) / 7
    path = write_features(tmp_path / "s.h5", coords, feats, PROVENANCE, thumbnail=np.zeros((4, 5, 3), np.uint8))
    loaded = load_features(path, expect_encoder="tiny-random", expect_dim=4)
    assert np.array_equal(loaded.coords, coords) and loaded.coords.dtype == np.int64
    assert np.array_equal(loaded.features, feats)
    assert loaded.attrs["segmentation"] == {"mask_mpp": 8.0} and loaded.attrs["mpp_override"] is None
    assert loaded.attrs["n_tiles"] == 3 and loaded.attrs["code_version"] == code_version()
    assert loaded.thumbnail.shape == (4, 5, 3)
    assert [p.name for p in tmp_path.iterdir()] == ["s.h5"]  # no temporary file left behind
    half = write_features(tmp_path / "h.h5", coords, feats, PROVENANCE, feature_dtype="float16")
    assert np.allclose(load_features(half).features, feats, atol=1e-3)


def test_feature_file_refuses_mismatches(tmp_path: Path) -> None:
    coords = np.zeros((2, 2), dtype=np.int64)
    path = write_features(tmp_path / "s.h5", coords, np.ones((2, 4)), PROVENANCE)
    with pytest.raises(FeatureMismatchError, match="encoder 'tiny-random', expected 'conch_v1_5'"):
        load_features(path, expect_encoder="conch_v1_5")
    with pytest.raises(FeatureMismatchError, match="4-d, expected 768-d"):
        load_features(path, expect_dim=768)
    request = dict(PROVENANCE)
    assert verify_features(path, request) is None
    assert "tile_size" in verify_features(path, request | {"tile_size": 256})
    assert "slide_sha256" in verify_features(path, request | {"slide_sha256": "00"})
    assert verify_features(tmp_path / "none.h5", request) == "no feature file"
    (tmp_path / "junk.h5").write_bytes(b"junk")
    assert verify_features(tmp_path / "junk.h5", request).startswith("unreadable")
    with pytest.raises(UnsupportedFormatError, match="not an HDF5 file"):
        load_features(tmp_path / "junk.h5")
    with pytest.raises(ValueError, match="do not match"):
        write_features(tmp_path / "bad.h5", coords, np.ones((3, 4)), PROVENANCE)
    assert read_attrs(path)["dim"] == 4
