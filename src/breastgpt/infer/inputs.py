"""Raw case files → message parts for the processor (SPEC §3.2 routing by content).

* image: a DICOM image (display pipeline: VOI, MONOCHROME1) or PNG/JPEG/TIFF/PGM/BMP → RGB uint8, prepared with
  the checkpoint's preprocessing settings (crop, masking, orientation, size: `breastgpt.preprocessing`)
* volume: NIfTI / NRRD / DICOM series folder → resampled, windowed three-channel frames (T even), with the same
  settings
* slide: a feature file (`slides extract`, TRIDENT, CLAM or hs2p output) or a slide tiled and encoded now with a
  named encoder
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from breastgpt.io import UnsupportedFormatError, inspect_path
from breastgpt.io.limits import DEFAULT_LIMITS, ReadLimits
from breastgpt.preprocessing import (IMAGE_MODALITIES, Preprocessing, dicom_image_modality, model_frames, model_image,
                                     prepare_image, prepare_volume, read_image_pixels)

HU_LIKE_MINIMUM = -500.0  # a volume whose minimum is below this is in Hounsfield units (air ≈ −1000)


def to_rgb8(array: np.ndarray) -> np.ndarray:
    """Any decoded 2-D image → (H, W, 3) uint8; 16-bit grey is scaled by its own range."""
    if array.ndim == 3 and array.shape[-1] == 3 and array.dtype == np.uint8:
        return array
    if array.ndim == 3 and array.shape[-1] in (3, 4):
        array = array[..., :3]
    grey = array.astype(np.float64)
    if array.dtype != np.uint8:
        low, high = float(grey.min()), float(grey.max())
        grey = (grey - low) / (high - low if high > low else 1.0) * 255.0
    grey = np.round(grey).clip(0, 255).astype(np.uint8)
    return grey if grey.ndim == 3 else np.repeat(grey[..., None], 3, axis=-1)


def image_modality(path: str | Path, given: str | None = None, *, limits: ReadLimits = DEFAULT_LIMITS) -> str:
    """The modality an image is prepared as: the one given, else the DICOM Modality tag (MG, US), else "other"
    (no crop or orientation: only the size limit, which leaves an already-normalised corpus image unchanged)."""
    if given is not None:
        if given not in IMAGE_MODALITIES:
            raise ValueError(f"image modality {given!r} is not one of {IMAGE_MODALITIES}")
        return given
    return dicom_image_modality(path, limits=limits) or "other"


def load_image(path: str | Path, *, limits: ReadLimits = DEFAULT_LIMITS, settings: Preprocessing | None = None,
               modality: str | None = None) -> np.ndarray:
    """A 2-D image file (DICOM or raster) as the model's RGB uint8 input. With `settings`, prepared exactly as
    `corpus build` prepares that file for training (`breastgpt.preprocessing.prepare_image`)."""
    path = Path(path)
    info = inspect_path(path, limits=limits)
    if info["kind"] != "image":
        raise UnsupportedFormatError(path, f"expected a 2-D image, found a {info['kind']}",
                                     f"pass it as --{info['kind']}")
    pixels = read_image_pixels(path, limits=limits)
    if settings is not None:
        pixels = prepare_image(pixels, image_modality(path, modality, limits=limits), settings).pixels
    return model_image(pixels)


def volume_modality(volume: Any) -> str:
    """CT (or HU-valued data) → "ct"; anything else → "mri" (intensities without a physical unit)."""
    modality = str(volume.metadata.get("modality") or "").upper()
    if modality == "CT" or (modality == "" and float(np.min(volume.array)) < HU_LIKE_MINIMUM):
        return "ct"
    return "mri"


def load_volume(path: str | Path, *, window: str | None = None, settings: Preprocessing | None = None,
                limits: ReadLimits = DEFAULT_LIMITS) -> tuple[np.ndarray, str]:
    """A volume as model-ready frames (T, H, W, 3) uint8 and the window preset used: resampled and windowed as
    `corpus build` does (`breastgpt.preprocessing.prepare_volume`) with `settings` (default: the documented
    defaults); `window` replaces the settings' window for this volume."""
    from dataclasses import replace

    from breastgpt.io.volume import read_volume

    settings = settings or Preprocessing()
    volume = read_volume(path, limits=limits)
    modality = volume_modality(volume)
    if window is not None:
        settings = replace(settings, **{"ct_preset" if modality == "ct" else "mri_preset": window})
    return model_frames(prepare_volume(volume, modality, settings)), settings.window_for(modality)


@dataclass
class SlideInput:
    """Tile features of one slide, ready for the processor, and where they came from."""

    features: np.ndarray
    coords: np.ndarray
    tile_size: int
    attrs: dict[str, Any]
    thumbnail: np.ndarray | None = None

    def part(self) -> dict[str, Any]:
        return {"type": "slide", "features": self.features, "coords": self.coords, "tile_size": self.tile_size}


def load_slide_features(path: str | Path, *, expect_dim: int | None = None, expect_encoder: str | None = None,
                        tile_mpp: float | None = None, tile_size_level0: float | None = None) -> SlideInput:
    """A feature file (`breastgpt slides extract`, TRIDENT, CLAM or hs2p), checked against what the model expects;
    ``tile_mpp`` / ``tile_size_level0`` supply what a file from another tool does not record."""
    from breastgpt.pathology.features import load_features

    loaded = load_features(path, expect_encoder=expect_encoder, expect_dim=expect_dim, tile_mpp=tile_mpp,
                           tile_size_level0=tile_size_level0)
    # Tile grid positions come from level-0 coordinates divided by the tile's level-0 footprint.
    footprint = loaded.attrs.get("footprint_level0") or [loaded.attrs.get("tile_size", 512)]
    footprint = int(round(float(np.atleast_1d(footprint)[0])))
    return SlideInput(np.asarray(loaded.features, dtype=np.float32), np.asarray(loaded.coords), footprint,
                      dict(loaded.attrs), loaded.thumbnail)


def encode_slide(path: str | Path, *, encoder: str, weights: str | None = None, mpp: float | None = None,
                 expect_dim: int | None = None, workdir: str | Path | None = None) -> SlideInput:
    """Tile and encode a slide now (same pipeline as `slides extract`), then load its features."""
    from breastgpt.pathology.extract import ExtractConfig, extract_slides

    with tempfile.TemporaryDirectory(dir=workdir) as folder:
        summary = extract_slides([Path(path)], folder, ExtractConfig(encoder=encoder, weights=weights, mpp=mpp))
        outcome = summary["slides"][0]
        if outcome["status"] == "quarantined":
            raise UnsupportedFormatError(path, f"slide could not be tiled: {outcome.get('error')}",
                                         "check it with `breastgpt inspect`")
        return load_slide_features(outcome["features"], expect_dim=expect_dim)
