"""Pixel access an adapter needs at discovery time (mask → box, image size), always through `breastgpt.io`.

Adapters read masks only to turn them into boxes in source pixel coordinates; everything else stays on disk
until `normalise_media`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from breastgpt.io.dicom import read_dicom_image
from breastgpt.io.errors import MedicalFileError, UnsupportedFormatError
from breastgpt.io.raster import read_raster

RASTER_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".pgm", ".bmp")


def read_pixels(path: Path) -> np.ndarray:
    """A 2-D image's stored values: DICOM through `read_dicom_image`, rasters through `read_raster`.
    Raises `MedicalFileError` subclasses."""
    if path.suffix.lower() in RASTER_SUFFIXES:
        return np.asarray(read_raster(path))
    return np.asarray(read_dicom_image(path).stored)


def mask_box(mask: np.ndarray, path: Path) -> list[int]:
    """The [x1, y1, x2, y2] pixel box (inclusive-exclusive) of a mask's non-zero pixels."""
    if mask.ndim == 3:
        mask = mask.max(axis=2)
    ys, xs = np.nonzero(mask > 0)
    if len(xs) == 0:
        raise UnsupportedFormatError(path, "mask is empty (no foreground pixels)", "check the annotation")
    return [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]


def box_from_mask_file(path: Path) -> list[int] | None:
    """The box of a mask file, or None when the mask is empty (e.g. BUSI 'normal' masks)."""
    try:
        return mask_box(read_pixels(path), path)
    except UnsupportedFormatError as exc:
        if "mask is empty" in exc.problem:
            return None
        raise


def image_shape(path: Path) -> tuple[int, int]:
    """(height, width) of an image file."""
    pixels = read_pixels(path)
    return int(pixels.shape[0]), int(pixels.shape[1])


__all__ = ["MedicalFileError", "box_from_mask_file", "image_shape", "mask_box", "read_pixels"]
