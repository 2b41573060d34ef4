"""Burned-in text policy: which images may carry text in their pixels, and cleaning them by keep regions.

Detection is by declaration and image kind, not by reading the pixels (no OCR): an image is at risk when it says
Burned In Annotation = YES, when it is ultrasound, secondary capture or "other" (US / SC / OT), or when its Image
Type contains SECONDARY (screenshots, exports, reformatted key images). An image at risk is only released after
every pixel outside the regions the user said to keep has been overwritten with black.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset

from breastgpt.io.dicom import decode_pixels
from breastgpt.io.errors import UnsupportedFormatError
from breastgpt.io.limits import DEFAULT_LIMITS, ReadLimits

RISKY_MODALITIES = frozenset({"US", "SC", "OT"})


@dataclass(frozen=True)
class Rect:
    """A pixel rectangle to keep: columns x0..x1-1, rows y0..y1-1 (half-open, origin top-left)."""

    x0: int
    y0: int
    x1: int
    y1: int

    def __post_init__(self) -> None:
        if min(self.x0, self.y0) < 0 or self.x1 <= self.x0 or self.y1 <= self.y0:
            raise ValueError(f"keep region {self} is empty or negative; need 0 <= x0 < x1 and 0 <= y0 < y1")


@dataclass(frozen=True)
class BurnedInPolicy:
    """How images at risk of burned-in text are cleaned; with neither field set they are quarantined."""

    keep_regions: tuple[Rect, ...] = ()
    use_ultrasound_regions: bool = False  # keep the imaging regions of SequenceOfUltrasoundRegions (US only)

    def __post_init__(self) -> None:
        if not all(isinstance(region, Rect) for region in self.keep_regions):
            raise TypeError("BurnedInPolicy.keep_regions must be a tuple of Rect")

    @property
    def can_clean(self) -> bool:
        return bool(self.keep_regions) or self.use_ultrasound_regions


@dataclass(frozen=True)
class PixelCleaning:
    """Outcome of blacking out: pixels overwritten (outside every keep region) and how many values changed."""

    blanked_pixels: int
    changed_values: int
    regions: tuple[Rect, ...]


def burned_in_risk(dataset: Dataset) -> str | None:
    """Why this image may carry burned-in text, or None when nothing suggests it."""
    if str(dataset.get("BurnedInAnnotation", "")).strip().upper() == "YES":
        return "Burned In Annotation is YES"
    modality = str(dataset.get("Modality", "")).strip().upper()
    if modality in RISKY_MODALITIES:
        return f"modality {modality} often carries burned-in text"
    image_type = [str(part).strip().upper() for part in (dataset.get("ImageType") or [])]
    if "SECONDARY" in image_type:
        return "Image Type contains SECONDARY"
    return None


def keep_regions_for(dataset: Dataset, policy: BurnedInPolicy) -> tuple[Rect, ...]:
    """The regions to keep for this image under the policy (explicit ones, then ultrasound regions)."""
    regions = list(policy.keep_regions)
    if policy.use_ultrasound_regions:
        regions.extend(ultrasound_regions(dataset))
    return tuple(regions)


def ultrasound_regions(dataset: Dataset) -> tuple[Rect, ...]:
    """Imaging regions declared in SequenceOfUltrasoundRegions (max coordinates there are inclusive)."""
    regions = []
    for item in dataset.get("SequenceOfUltrasoundRegions") or []:
        try:
            x0, y0 = int(item.RegionLocationMinX0), int(item.RegionLocationMinY0)
            x1, y1 = int(item.RegionLocationMaxX1) + 1, int(item.RegionLocationMaxY1) + 1
        except AttributeError:
            continue
        if 0 <= x0 < x1 and 0 <= y0 < y1:
            regions.append(Rect(x0, y0, x1, y1))
    return tuple(regions)


def black_out_outside(dataset: Dataset, regions: tuple[Rect, ...], path: Path,
                      limits: ReadLimits = DEFAULT_LIMITS) -> PixelCleaning:
    """Overwrite every pixel outside `regions` with black, in every frame, and store the pixels uncompressed.

    Raises `UnsupportedFormatError` when the regions leave nothing to black out (the image would be released
    unchanged) or keep nothing of the image.
    """
    pixels = decode_pixels(path, dataset, limits)
    rows, columns = int(dataset.Rows), int(dataset.Columns)
    keep = _keep_mask(rows, columns, regions)
    blanked = int((~keep).sum())
    if blanked == 0:
        raise UnsupportedFormatError(path, "keep regions cover the whole image, nothing would be blacked out",
                                     "give keep regions that exclude the text areas")
    if not keep.any():
        raise UnsupportedFormatError(path, "keep regions lie outside the image", "check the region coordinates")
    cleaned = pixels.copy()
    frame_mask = _broadcast_mask(~keep, cleaned, int(dataset.get("NumberOfFrames", 1) or 1),
                                 int(dataset.get("SamplesPerPixel", 1)))
    cleaned[frame_mask] = _black_value(dataset, cleaned.dtype)
    changed = int((cleaned != pixels).sum())
    _store_pixels(dataset, cleaned)
    return PixelCleaning(blanked_pixels=blanked, changed_values=changed, regions=regions)


def _keep_mask(rows: int, columns: int, regions: tuple[Rect, ...]) -> np.ndarray:
    keep = np.zeros((rows, columns), dtype=bool)
    for region in regions:
        keep[region.y0:min(region.y1, rows), region.x0:min(region.x1, columns)] = True
    return keep


def _broadcast_mask(blank: np.ndarray, pixels: np.ndarray, frames: int, samples: int) -> np.ndarray:
    """The (rows, columns) mask shaped like pydicom's array: [frames,] rows, columns [, samples]."""
    mask = blank
    if samples > 1:
        mask = np.repeat(mask[:, :, None], samples, axis=2)
    if frames > 1:
        mask = np.broadcast_to(mask, (frames, *mask.shape))
    if mask.shape != pixels.shape:
        raise ValueError(f"pixel array shape {pixels.shape} does not match the header geometry {mask.shape}")
    return mask


def _black_value(dataset: Dataset, dtype: np.dtype) -> int:
    """Black is the lowest value, except for MONOCHROME1 where the highest stored value displays black."""
    bits = int(dataset.get("BitsStored", np.iinfo(dtype).bits))
    signed = int(dataset.get("PixelRepresentation", 0)) == 1
    if str(dataset.get("PhotometricInterpretation", "")).strip() != "MONOCHROME1":
        return -(1 << (bits - 1)) if signed else 0
    return (1 << (bits - 1)) - 1 if signed else (1 << bits) - 1


def _store_pixels(dataset: Dataset, pixels: np.ndarray) -> None:
    """Write the array back uncompressed (pydicom returns YBR data converted to RGB, so label it RGB)."""
    photometric = str(dataset.PhotometricInterpretation).strip()
    if photometric.startswith("YBR"):
        photometric = "RGB"
    bits_stored = int(dataset.get("BitsStored", pixels.dtype.itemsize * 8))
    # The SOP Instance UID was already replaced by its keyed pseudonym; a random new one would break linkage.
    dataset.set_pixel_data(pixels, photometric, bits_stored, generate_instance_uid=False)
