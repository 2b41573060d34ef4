"""Feature files from TRIDENT, CLAM and hs2p, written here the way those tools write them, read by `load_features`.

Layouts (from the tools' documentation and source, facts only): TRIDENT puts `patch_size`, `patch_size_level0`,
`level0_magnification`, `target_magnification`, `overlap`, `name`, `savetodir` on the `coords` dataset and
`name`, `savetodir` on `features`; CLAM's `extract_features_fp.py` writes `features` and `coords` with no
attributes, its patch files `patch_size` / `patch_level` / `downsample` on `coords`; hs2p names the level-0 tile
size `tile_size_lv0` and the spacing `target_spacing_um` (it writes its tiling as .npy/.npz + JSON; the HDF5 here
carries those names as pipelines built on it do).
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from breastgpt.pathology.features import (FeatureMetadataMissingError, FeatureMismatchError, load_features,
                                          write_features)
from breastgpt.io.errors import CorruptFileError, MedicalFileError, UnsupportedFormatError
from breastgpt.pathology.foreign_features import FeatureFileError

N, D = 12, 32


def _arrays(seed: int = 0, footprint: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    coords = np.stack([np.arange(N) % 4, np.arange(N) // 4], axis=1).astype(np.int64) * footprint + 3000
    return rng.normal(size=(N, D)).astype(np.float32), coords


def write_trident(path: Path, features: np.ndarray, coords: np.ndarray) -> Path:
    """A TRIDENT patch-feature file: 20x patches of 512 px cut from a 40x slide (1024 level-0 px)."""
    with h5py.File(path, "w") as h5:
        feats = h5.create_dataset("features", data=features)
        feats.attrs.update({"name": "slide-1", "savetodir": "/jobs/features_conch_v15"})
        ds = h5.create_dataset("coords", data=coords)
        ds.attrs.update({"patch_size": 512, "patch_size_level0": 1024, "level0_magnification": 40,
                         "target_magnification": 20, "overlap": 0, "name": "slide-1", "savetodir": "/jobs"})
    return path


def write_clam(path: Path, features: np.ndarray, coords: np.ndarray, coords_attrs: dict | None = None) -> Path:
    with h5py.File(path, "w") as h5:
        h5.create_dataset("features", data=features)
        ds = h5.create_dataset("coords", data=coords)
        ds.attrs.update(coords_attrs or {})
    return path


def write_hs2p(path: Path, features: np.ndarray, coords: np.ndarray) -> Path:
    """(1, N, D) half-precision features with hs2p's tiling metadata as file attributes."""
    with h5py.File(path, "w") as h5:
        h5.create_dataset("features", data=features[None].astype(np.float16))
        h5.create_dataset("coords", data=coords.astype(np.int32))
        h5.attrs.update({"tile_size_lv0": 1024, "target_spacing_um": 0.5, "target_tile_size_px": 512,
                         "encoder_name": "conch_v1_5"})
    return path


def test_trident_file_geometry_comes_from_its_coords_attributes(tmp_path: Path) -> None:
    features, coords = _arrays()
    loaded = load_features(write_trident(tmp_path / "slide-1.h5", features, coords), expect_dim=D)
    np.testing.assert_array_equal(loaded.features, features)
    np.testing.assert_array_equal(loaded.coords, coords)
    attrs = loaded.attrs
    assert attrs["source_format"] == "trident" and attrs["footprint_level0"] == [1024, 1024]
    assert attrs["target_mpp"] == pytest.approx(0.5) and attrs["mpp_source"] == "target_magnification"
    assert attrs["tile_size"] == 512 and attrs["n_tiles"] == N


def test_hs2p_file_with_a_batch_axis_and_half_precision(tmp_path: Path) -> None:
    features, coords = _arrays(1)
    loaded = load_features(write_hs2p(tmp_path / "s.h5", features, coords), expect_dim=D)
    assert loaded.features.shape == (N, D) and loaded.features.dtype == np.float32
    np.testing.assert_allclose(loaded.features, features, atol=1e-2)
    assert loaded.attrs["source_format"] == "hs2p" and loaded.attrs["footprint_level0"] == [1024, 1024]
    assert loaded.attrs["target_mpp"] == 0.5 and loaded.attrs["mpp_source"] == "target_spacing_um"


def test_clam_feature_file_needs_both_flags_and_names_the_missing_one(tmp_path: Path) -> None:
    features, coords = _arrays(2)
    path = write_clam(tmp_path / "clam.h5", features, coords)
    with pytest.raises(FeatureMetadataMissingError, match="--tile-size-level0") as missing:
        load_features(path)
    assert missing.value.flag == "--tile-size-level0"
    with pytest.raises(FeatureMetadataMissingError, match="µm/px.*--tile-mpp"):
        load_features(path, tile_size_level0=1024)
    loaded = load_features(path, tile_size_level0=1024, tile_mpp=0.5)
    assert loaded.attrs["footprint_level0"] == [1024, 1024] and loaded.attrs["footprint_source"] == "user"
    assert loaded.attrs["target_mpp"] == 0.5 and loaded.attrs["mpp_source"] == "user"


def test_clam_patch_attributes_give_the_level0_footprint(tmp_path: Path) -> None:
    features, coords = _arrays(3, footprint=512)
    path = write_clam(tmp_path / "clam.h5", features, coords,
                      {"patch_size": 256, "patch_level": 1, "downsample": [2.0, 2.0], "name": "s"})
    loaded = load_features(path, tile_mpp=0.5)
    assert loaded.attrs["source_format"] == "clam" and loaded.attrs["footprint_level0"] == [512, 512]
    with pytest.raises(FeatureMismatchError, match="--tile-size-level0 1024 contradicts"):
        load_features(path, tile_mpp=0.5, tile_size_level0=1024)


def test_flags_that_contradict_a_recorded_value_are_refused(tmp_path: Path) -> None:
    features, coords = _arrays()
    path = write_trident(tmp_path / "t.h5", features, coords)
    with pytest.raises(FeatureMismatchError, match="--tile-mpp 0.25 contradicts"):
        load_features(path, tile_mpp=0.25)
    assert load_features(path, tile_mpp=0.5, tile_size_level0=1024).attrs["footprint_level0"] == [1024, 1024]


@pytest.mark.parametrize("shapes", [((N, D), (N, 3)), ((N, D), (N + 1, 2)), ((2, N, D), (N, 2))])
def test_inconsistent_shapes_are_a_typed_error(tmp_path: Path, shapes) -> None:
    (fshape, cshape) = shapes
    path = write_clam(tmp_path / "bad.h5", np.zeros(fshape, np.float32), np.zeros(cshape, np.int64))
    with pytest.raises(CorruptFileError, match="expected \\(N, D\\) or \\(1, N, D\\) features"):
        load_features(path, tile_mpp=0.5, tile_size_level0=512)


def test_a_foreign_file_gives_the_model_the_same_slide_as_our_own(tmp_path: Path) -> None:
    from breastgpt.infer.inputs import load_slide_features

    features, coords = _arrays(4)
    ours = write_features(tmp_path / "ours.h5", coords, features,
                          {"encoder": "tiny-random", "dim": D, "footprint_level0": [1024, 1024], "target_mpp": 0.5,
                           "tile_size": 512})
    theirs = write_trident(tmp_path / "trident.h5", features, coords)
    a, b = load_slide_features(ours, expect_dim=D).part(), load_slide_features(theirs, expect_dim=D).part()
    assert a["tile_size"] == b["tile_size"] == 1024
    np.testing.assert_array_equal(a["features"], b["features"])
    np.testing.assert_array_equal(a["coords"], b["coords"])


def test_feature_file_errors_are_medical_file_errors_that_survive_pickling(tmp_path: Path) -> None:
    import pickle

    features, coords = _arrays(5)
    path = write_clam(tmp_path / "clam.h5", features, coords)
    with pytest.raises(FeatureMetadataMissingError) as missing:
        load_features(path)
    assert isinstance(missing.value, MedicalFileError) and isinstance(missing.value, ValueError)
    again = pickle.loads(pickle.dumps(missing.value))
    assert type(again) is FeatureMetadataMissingError and again.flag == "--tile-size-level0"
    assert str(again) == str(missing.value) and again.as_record()["error"] == "missing_metadata"


def test_a_tile_geometry_attribute_that_is_not_a_number_is_a_typed_error(tmp_path: Path) -> None:
    features, coords = _arrays(6)
    path = write_clam(tmp_path / "clam.h5", features, coords, {"patch_size": "big", "patch_level": 0})
    with pytest.raises(FeatureFileError, match="not a number"):
        load_features(path, tile_mpp=0.5)


def test_a_foreign_file_whose_features_live_in_another_file_is_refused(tmp_path: Path) -> None:
    features, coords = _arrays(7)
    (tmp_path / "elsewhere.h5").write_bytes(b"")
    with h5py.File(tmp_path / "elsewhere.h5", "w") as other:
        other.create_dataset("features", data=features)
    path = tmp_path / "linked.h5"
    with h5py.File(path, "w") as h5:
        h5["features"] = h5py.ExternalLink("elsewhere.h5", "/features")
        h5.create_dataset("coords", data=coords).attrs.update({"patch_size_level0": 1024, "target_magnification": 20})
    with pytest.raises(UnsupportedFormatError, match="never read"):
        load_features(path)


def test_float_coordinates_are_rounded_to_level0_pixels(tmp_path: Path) -> None:
    features, coords = _arrays(8)
    path = write_trident(tmp_path / "t.h5", features, coords)
    with h5py.File(path, "a") as h5:
        attrs = dict(h5["coords"].attrs)
        del h5["coords"]
        h5.create_dataset("coords", data=coords.astype(np.float64) + 0.4).attrs.update(attrs)
    loaded = load_features(path)
    assert loaded.coords.dtype == np.int64
    np.testing.assert_array_equal(loaded.coords, coords)
