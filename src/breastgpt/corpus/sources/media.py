"""Pixel access an adapter needs at discovery time (mask → box, image size), always through `breastgpt.io`.

Adapters read masks only to turn them into boxes in source pixel coordinates; everything else stays on disk
until `normalise_media`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from breastgpt.io.errors import MedicalFileError, UnsupportedFormatError

RASTER_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".pgm", ".bmp")


def read_pixels(path: Path) -> np.ndarray:
    """A 2-D image as an array: DICOM through `read_dicom_image` (modality LUT applied), rasters through
    `read_raster`. Raises `MedicalFileError` subclasses."""
    if path.suffix.lower() in RASTER_SUFFIXES:
        try:
            from breastgpt.io.raster import read_raster
        except ImportError:  # io.raster not landed yet in this checkout
            return _fallback_raster(path)
        return np.asarray(read_raster(path))
    try:
        from breastgpt.io.dicom import read_dicom_image
    except ImportError:  # io.dicom.read_dicom_image not landed yet in this checkout
        return _fallback_dicom(path)
    return np.asarray(read_dicom_image(path).pixels)


def _fallback_raster(path: Path) -> np.ndarray:
    """Stand-in used only while `breastgpt.io.raster` is absent: PIL with its decompression-bomb guard."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            return np.asarray(image)
    except FileNotFoundError as exc:
        raise UnsupportedFormatError(path, "no such file", "check the path") from exc
    except Exception as exc:
        raise UnsupportedFormatError(path, f"unreadable image ({type(exc).__name__})", "re-export it") from exc


def _fallback_dicom(path: Path) -> np.ndarray:
    """Stand-in used only while `read_dicom_image` is absent: the parsed dataset's stored values."""
    from breastgpt.io.dicom import read_dataset

    dataset = read_dataset(path)
    try:
        return np.asarray(dataset.pixel_array)
    except Exception as exc:
        raise UnsupportedFormatError(path, f"cannot decode pixels ({type(exc).__name__})", "re-export it") from exc


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
