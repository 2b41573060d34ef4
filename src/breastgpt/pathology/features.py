"""Per-slide feature files: HDF5 with `coords (N, 2)` int64 level-0 and `features (N, D)`, plus provenance.

`load_features` also reads the feature files of TRIDENT, CLAM and hs2p (`breastgpt.pathology.foreign_features`):
a file without our ``format_version`` / ``n_tiles`` attributes is read as one of those, and its tile geometry is mapped onto our
attribute names, so every consumer (ask, serve, training, overlays) sees the same `FeatureFile`.

Written atomically (temporary file in the same folder, fsync, rename), so a killed run leaves either the
previous state or a complete file, never a half-written one that looks done. `verify_features` is the
definition of "done": the file opens, shapes agree, and its provenance matches the request.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from breastgpt.artifacts import ArtifactError, atomic_path, code_version
from breastgpt.io.feature_file import FeatureArrays, plain_attribute, read_feature_file
from breastgpt.io.limits import DEFAULT_LIMITS, ReadLimits
from breastgpt.pathology.foreign_features import (
    FeatureFileError,
    FeatureMetadataMissingError,
    FeatureMismatchError,
    agree,
    read_foreign,
)

FORMAT_VERSION = 1


class FeatureWriteError(ArtifactError):
    """Arrays that cannot make a feature file (wrong dtype, features and coordinates of different lengths)."""


# Attributes that must equal the request for a file to count as the requested output.
REQUEST_KEYS = ("encoder", "weights_sha256", "dim", "target_mpp", "tile_size", "min_tissue_fraction",
                "segmentation", "slide_sha256", "slide_mpp_source", "feature_dtype", "mpp_override")


@dataclass(frozen=True)
class FeatureFile:
    coords: np.ndarray
    features: np.ndarray
    attrs: dict[str, Any]
    thumbnail: np.ndarray | None
    tissue_mask: np.ndarray | None


def write_features(path: str | Path, coords: np.ndarray, features: np.ndarray, provenance: dict[str, Any], *,
                   feature_dtype: str = "float32", thumbnail: np.ndarray | None = None,
                   tissue_mask: np.ndarray | None = None) -> Path:
    """Write one slide's features atomically. `provenance` values must be JSON-serialisable scalars/lists/dicts;
    dicts and lists are stored as JSON strings."""
    path = Path(path)
    coords = np.asarray(coords, dtype=np.int64).reshape(-1, 2)
    if feature_dtype not in ("float32", "float16"):
        raise FeatureWriteError(f"{path}: feature_dtype must be float32 or float16, not {feature_dtype!r}")
    features = np.asarray(features, dtype=np.float32)
    if features.ndim != 2 or len(features) != len(coords):
        raise FeatureWriteError(f"{path}: features {features.shape} do not match coords {coords.shape}; pass one "
                                "feature row per tile coordinate")
    attrs = dict(provenance) | {"n_tiles": int(len(coords)), "feature_dtype": feature_dtype,
                                "format_version": FORMAT_VERSION, "code_version": code_version(),
                                "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as h5:
        h5.create_dataset("coords", data=coords)
        h5.create_dataset("features", data=features.astype(feature_dtype))
        if thumbnail is not None:
            h5.create_dataset("thumbnail", data=np.asarray(thumbnail, dtype=np.uint8), compression="gzip")
        if tissue_mask is not None:
            h5.create_dataset("tissue_mask", data=np.asarray(tissue_mask, dtype=bool), compression="gzip")
        for key, value in attrs.items():
            h5.attrs[key] = _attr(value)
    return path


def _attr(value: Any) -> Any:
    if value is None:
        return "null"
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, sort_keys=True)
    return value


def read_attrs(path: str | Path) -> dict[str, Any]:
    with h5py.File(path, "r") as h5:
        return {key: _plain(value) for key, value in h5.attrs.items()}


def _plain(value: Any) -> Any:
    return plain_attribute(value)


def load_features(path: str | Path, expect_encoder: str | None = None, expect_dim: int | None = None, *,
                  tile_mpp: float | None = None, tile_size_level0: float | None = None,
                  limits: ReadLimits = DEFAULT_LIMITS) -> FeatureFile:
    """Read a feature file (ours, TRIDENT, CLAM or hs2p) through `breastgpt.io` (typed errors for unreadable or
    hostile files); refuse it when its encoder or dimension is not the expected one. ``tile_mpp`` /
    ``tile_size_level0`` supply what a foreign file does not record (and must agree with what a file does record)."""
    path = Path(path)
    arrays = read_feature_file(path, limits=limits)
    if is_own_format(arrays.attrs):
        loaded = _own(path, arrays)
    else:
        foreign = read_foreign(path, arrays, tile_mpp=tile_mpp, tile_size_level0=tile_size_level0)
        loaded = FeatureFile(foreign.coords, foreign.features, foreign.attrs, None, None)
    _check_expected(path, loaded, expect_encoder, expect_dim)
    try:
        footprint = float(np.atleast_1d(loaded.attrs.get("footprint_level0") or [np.nan])[0])
        mpp = float(loaded.attrs.get("target_mpp") or np.nan)
    except (TypeError, ValueError) as exc:
        raise FeatureFileError(path, f"footprint_level0 / target_mpp are not numbers ({exc})", "re-extract it") from exc
    agree(path, "tile size in level-0 pixels", "--tile-size-level0", footprint, tile_size_level0)
    agree(path, "tile resolution in µm/px", "--tile-mpp", mpp, tile_mpp)
    return loaded


def is_own_format(attrs: dict[str, Any]) -> bool:
    """Written by `write_features`: it stores ``format_version`` and ``n_tiles`` as file attributes, which TRIDENT,
    CLAM and hs2p do not (files from before ``format_version`` hold ``n_tiles`` alone)."""
    return "format_version" in attrs or "n_tiles" in attrs


def _own(path: Path, arrays: FeatureArrays) -> FeatureFile:
    if arrays.attrs.get("n_tiles") != len(arrays.coords):
        raise FeatureMismatchError(path, f"{len(arrays.coords)} coords, {len(arrays.features)} features, n_tiles "
                                         f"{arrays.attrs.get('n_tiles')}; the file is inconsistent", "re-extract it")
    return FeatureFile(arrays.coords, arrays.features, arrays.attrs | {"source_format": "breastgpt"},
                       arrays.thumbnail, arrays.tissue_mask)


def _check_expected(path: Path, loaded: FeatureFile, expect_encoder: str | None, expect_dim: int | None) -> None:
    # Files from TRIDENT, CLAM and hs2p do not record their encoder: only their dimension can be checked.
    encoder = loaded.attrs.get("encoder")
    if expect_encoder is not None and encoder is not None and encoder != expect_encoder:
        raise FeatureMismatchError(path, f"features were made by encoder {encoder!r}, expected {expect_encoder!r}",
                                   f"re-extract with --encoder {expect_encoder}")
    if expect_dim is not None and loaded.features.shape[1] != expect_dim:
        raise FeatureMismatchError(path, f"features are {loaded.features.shape[1]}-d, expected {expect_dim}-d",
                                   "the slide encoder and the tile encoder disagree")


def verify_features(path: str | Path, request: dict[str, Any]) -> str | None:
    """None if `path` is a complete output for `request`, else the reason it is not."""
    path = Path(path)
    if not path.is_file():
        return "no feature file"
    try:
        with h5py.File(path, "r") as h5:
            attrs = {key: _plain(value) for key, value in h5.attrs.items()}
            n_coords, n_feats = h5["coords"].shape[0], h5["features"].shape
    except (OSError, KeyError) as exc:
        return f"unreadable feature file ({exc})"
    if n_feats[0] != n_coords or attrs.get("n_tiles") != n_coords or n_feats[1] != attrs.get("dim"):
        return "shapes disagree with attributes"
    for key in REQUEST_KEYS:
        if key in request and _plain(_attr(request[key])) != attrs.get(key):
            return f"attribute {key} is {attrs.get(key)!r}, requested {request[key]!r}"
    return None


__all__ = ["FORMAT_VERSION", "FeatureFile", "FeatureFileError", "FeatureMetadataMissingError", "FeatureMismatchError",
           "FeatureWriteError", "load_features", "read_attrs", "verify_features", "write_features"]
