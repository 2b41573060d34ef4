"""Tile-feature files written by other tools: TRIDENT, CLAM and hs2p-based pipelines.

All three write HDF5 with a ``features`` dataset, ``(N, D)`` or ``(1, N, D)``, and ``coords`` ``(N, 2)``: the
top-left corner of each tile in level-0 pixels. They differ in where and under which names they record the tile
geometry:

* TRIDENT: attributes on the ``coords`` dataset — ``patch_size`` (px at the target magnification),
  ``patch_size_level0``, ``level0_magnification``, ``target_magnification``, ``overlap``, ``name``.
* CLAM: patch files carry ``patch_size`` and ``patch_level`` (and ``downsample``, the level's downsample) on
  ``coords``; the feature files of ``extract_features_fp.py`` usually carry no attributes at all.
* hs2p writes its tiling as ``.npy`` / ``.npz`` + JSON, not HDF5; feature files from pipelines built on it carry
  its names as attributes: ``tile_size_lv0`` (level-0 px), a target spacing in µm/px (``target_spacing_um``,
  ``target_spacing`` or ``requested_spacing_um``) and a tile size in px (``target_tile_size_px``,
  ``requested_tile_size_px``). hs2p's own coordinate files are not read here.

`read_foreign` turns such a file into the attributes BreastGPT's own files hold — ``footprint_level0`` (tile
side in level-0 px, which turns coordinates into a tile grid), ``target_mpp`` (µm/px of the tiles) and
``tile_size`` — from the file's attributes or, where the file lacks one, from the caller (``--tile-mpp``,
``--tile-size-level0``). A value that is neither raises `FeatureMetadataMissingError` naming it and its flag;
a caller value that contradicts the file raises `FeatureMismatchError` (`breastgpt.pathology.features`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from breastgpt.io.errors import MedicalFileError
from breastgpt.io.feature_file import FeatureArrays

# Attribute names per fact, in lookup order, as each tool writes them (one list per fact).
FOOTPRINT_KEYS = ("footprint_level0", "patch_size_level0", "tile_size_lv0")  # ours, TRIDENT, hs2p
MPP_KEYS = ("target_mpp", "mpp", "target_spacing_um", "target_spacing", "requested_spacing_um")  # ours/hs2p
MAGNIFICATION_KEYS = ("target_magnification", "magnification")  # TRIDENT, ours
TILE_PX_KEYS = ("tile_size", "patch_size", "target_tile_size_px", "requested_tile_size_px")
# Objective magnification -> µm/px, the convention the slide tools use (20x ~ 0.5 µm/px, 40x ~ 0.25 µm/px).
MAGNIFICATION_TIMES_MPP = 10.0
RELATIVE_TOLERANCE = 0.01


class FeatureFileError(MedicalFileError, ValueError):
    """A feature file that cannot be used as it is (base class for the feature-file errors)."""

    kind = "feature_file"


class FeatureMismatchError(FeatureFileError):
    """A feature file exists but was made with another encoder, dimension or request, or contradicts a flag."""

    kind = "feature_mismatch"


class FeatureMetadataMissingError(FeatureFileError):
    """A feature file from another tool lacks a value the model needs, and no flag supplied it."""

    kind = "missing_metadata"

    def __init__(self, path: Any, what: str, flag: str, looked_for: tuple[str, ...]):
        self.what, self.flag, self.looked_for = what, flag, tuple(looked_for)
        super().__init__(path, f"the file does not record the {what} (looked for attributes "
                               f"{', '.join(looked_for)} on the file, 'coords' and 'features')", f"pass {flag}")

    def __reduce__(self) -> tuple:
        return (type(self), (self.path, self.what, self.flag, self.looked_for))


@dataclass(frozen=True)
class ForeignFeatures:
    coords: np.ndarray
    features: np.ndarray
    attrs: dict[str, Any]


def collected_attrs(arrays: FeatureArrays) -> dict[str, Any]:
    """File attributes, then those on ``features`` and ``coords`` (the dataset TRIDENT and CLAM annotate) on top."""
    attrs = dict(arrays.attrs)
    for name in ("features", "coords"):
        attrs.update(arrays.dataset_attrs.get(name, {}))
    return attrs


def source_format(attrs: dict[str, Any]) -> str:
    if "patch_size_level0" in attrs or "level0_magnification" in attrs:
        return "trident"
    if "tile_size_lv0" in attrs or any(key in attrs for key in MPP_KEYS[2:]):
        return "hs2p"
    return "clam"


def read_foreign(path: Any, arrays: FeatureArrays, *, tile_mpp: float | None = None,
                 tile_size_level0: float | None = None) -> ForeignFeatures:
    """BreastGPT-style attributes for a TRIDENT / CLAM / hs2p file already read (and checked) by
    `breastgpt.io.feature_file.read_feature_file`."""
    coords, features = arrays.coords, arrays.features
    found = collected_attrs(arrays)
    try:
        footprint, footprint_source = _footprint(path, found, tile_size_level0)
        mpp, mpp_source = _mpp(path, found, tile_mpp)
        tile_px = _first(found, TILE_PX_KEYS)
        tile_size = None if tile_px is None else int(round(float(np.atleast_1d(tile_px)[0])))
    except (TypeError, ValueError, OverflowError) as exc:
        if isinstance(exc, FeatureFileError):
            raise
        raise FeatureFileError(path, f"a tile-geometry attribute is not a number ({exc})",
                               "fix the attribute or re-extract the features") from exc
    attrs = {**found, "source_format": source_format(found), "n_tiles": int(len(coords)), "dim": int(features.shape[1]),
             "footprint_level0": [footprint, footprint], "footprint_source": footprint_source,
             "target_mpp": mpp, "mpp_source": mpp_source}
    if tile_size is not None:
        attrs["tile_size"] = tile_size
    return ForeignFeatures(coords, features, attrs)


def _first(attrs: dict[str, Any], keys: tuple[str, ...]) -> Any:
    return next((attrs[key] for key in keys if attrs.get(key) not in (None, "null", "NA")), None)


def agree(path: Any, what: str, flag: str, recorded: float, given: float | None) -> None:
    """Refuse a caller's value that contradicts the file's (a NaN ``recorded`` means the file has none)."""
    if given is not None and not np.isnan(recorded) and abs(given - recorded) > RELATIVE_TOLERANCE * abs(recorded):
        raise FeatureMismatchError(path, f"{flag} {given} contradicts the file's {what} {recorded}",
                                   "drop the flag or use the file the features were extracted with")


def _footprint(path: Any, attrs: dict[str, Any], given: float | None) -> tuple[int, str]:
    """Tile side in level-0 px: recorded directly, or CLAM's patch_size at patch_level 0, or the caller's value."""
    recorded = _first(attrs, FOOTPRINT_KEYS)
    source = next((key for key in FOOTPRINT_KEYS if attrs.get(key) is not None), None)
    if recorded is None and attrs.get("patch_level") is not None and attrs.get("patch_size") is not None:
        downsample = attrs.get("downsample", 1.0 if int(attrs["patch_level"]) == 0 else None)
        if downsample is not None:  # CLAM: patch_size is at patch_level; coords are level 0
            recorded, source = float(attrs["patch_size"]) * float(np.atleast_1d(downsample)[0]), "patch_size×downsample"
    if recorded is None:
        if given is None:
            raise FeatureMetadataMissingError(path, "tile size in level-0 pixels", "--tile-size-level0",
                                              FOOTPRINT_KEYS + ("patch_size + patch_level",))
        return int(round(given)), "user"
    return int(round(float(np.atleast_1d(recorded)[0]))), source


def _mpp(path: Any, attrs: dict[str, Any], given: float | None) -> tuple[float, str]:
    """µm/px of the tiles: recorded, or derived from the target magnification, or the caller's value."""
    recorded = _first(attrs, MPP_KEYS)
    source = next((key for key in MPP_KEYS if attrs.get(key) is not None), None)
    if recorded is None:
        magnification = _first(attrs, MAGNIFICATION_KEYS)
        if magnification is not None and float(magnification) > 0:
            recorded = MAGNIFICATION_TIMES_MPP / float(magnification)
            source = next(key for key in MAGNIFICATION_KEYS if attrs.get(key) is not None)
    if recorded is None:
        if given is None:
            raise FeatureMetadataMissingError(path, "tile resolution in µm/px", "--tile-mpp",
                                              MPP_KEYS + MAGNIFICATION_KEYS)
        return float(given), "user"
    return float(np.atleast_1d(recorded)[0]), source


__all__ = ["FeatureFileError", "agree", "FeatureMetadataMissingError", "FeatureMismatchError", "ForeignFeatures",
           "collected_attrs", "read_foreign", "source_format"]
