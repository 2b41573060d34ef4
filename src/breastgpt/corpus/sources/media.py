"""Pixel access of source adapters (mask → box, image size), always through `breastgpt.io`.

Adapters name ROI masks at discovery (`SourceSample.box_masks`); `resolve_boxes` decodes them into boxes in
source pixel coordinates in the build's item workers, before `normalise_media`.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

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


def resolve_boxes(sample: Any) -> Any:
    """`sample` with its `box_masks` decoded into `labels["boxes"]` (and "roi_mask" added to `missing` when a
    required box is lacking), following its `box_policy`; unchanged when it names no masks and needs none.
    Raises `MedicalFileError` for a mask that cannot be read."""
    if not sample.box_masks and not sample.box_required:
        return sample
    boxes: list[dict[str, Any]] | None = []
    for mask in sample.box_masks:
        box = box_from_mask_file(mask.path)
        if box is not None:
            boxes.append({"box": box, "label": mask.label})
        elif sample.box_policy == "all":
            boxes = None
            break
    labels, missing = dict(sample.labels), list(sample.missing)
    if sample.box_required and not boxes:
        labels.pop("boxes", None)
        missing += [] if "roi_mask" in missing else ["roi_mask"]
    elif boxes is not None:
        labels["boxes"] = boxes
    return replace(sample, labels=labels, missing=missing, box_masks=[], box_required=False)


def image_shape(path: Path) -> tuple[int, int]:
    """(height, width) of an image file."""
    pixels = read_pixels(path)
    return int(pixels.shape[0]), int(pixels.shape[1])


__all__ = ["MedicalFileError", "box_from_mask_file", "image_shape", "mask_box", "read_pixels", "resolve_boxes"]
