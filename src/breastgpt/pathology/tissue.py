"""Tissue segmentation on a low-resolution rendering of a slide.

Stained tissue is saturated; glass, background and most scanner artefacts are not. The mask is HSV
saturation above an Otsu threshold (with a floor, so an almost empty slide does not threshold its own
noise), minus pen marks and dark debris, cleaned with closing/opening, small-component removal and hole
filling. Every size is in µm or µm², converted with the mask's own µm/px, so one configuration behaves the
same at any scan resolution.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from breastgpt.config import ConfigError, StrictConfig


@dataclass(frozen=True)
class TissueConfig(StrictConfig):
    """Parameters of `segment_tissue`. Unknown keys in `from_dict` are errors."""

    section = "TissueConfig"

    mask_mpp: float = 8.0  # µm/px of the rendering the mask is computed on (≈ 1.25× objective)
    saturation_threshold: float | None = None  # fixed threshold in [0, 1]; None → Otsu
    min_saturation: float = 0.07  # floor under the Otsu threshold
    close_radius_um: float = 32.0
    open_radius_um: float = 16.0
    min_component_um2: float = 50_000.0  # 0.05 mm²: smaller specks are dust or debris
    fill_holes: bool = True
    max_hole_um2: float | None = None  # fill only holes up to this area; None fills all
    remove_pen: bool = True
    remove_artefacts: bool = True
    dark_value: float = 0.2  # HSV value below this is ink, debris or a slide edge, never stained tissue

    def validate(self) -> None:
        if self.mask_mpp <= 0:
            raise ConfigError("TissueConfig.mask_mpp must be positive")
        if self.saturation_threshold is not None and not 0 < self.saturation_threshold < 1:
            raise ConfigError("TissueConfig.saturation_threshold must lie in (0, 1)")
        for name in ("close_radius_um", "open_radius_um", "min_component_um2"):
            if getattr(self, name) < 0:
                raise ConfigError(f"TissueConfig.{name} must be ≥ 0")

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)


@dataclass(frozen=True)
class TissueMask:
    """A boolean mask and how it maps onto level 0: mask pixel (r, c) covers level-0
    x ∈ [c·downsample_x, (c+1)·downsample_x), y likewise."""

    mask: np.ndarray
    downsample: tuple[float, float]
    mpp: float
    threshold: float
    config: TissueConfig

    @property
    def fraction(self) -> float:
        return float(self.mask.mean()) if self.mask.size else 0.0


def rgb_to_hsv(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hue in degrees [0, 360), saturation and value in [0, 1], for an H×W×3 uint8 image."""
    arr = rgb.astype(np.float32) / 255.0
    cmax = arr.max(axis=2)
    cmin = arr.min(axis=2)
    delta = cmax - cmin
    sat = np.where(cmax > 0, delta / np.maximum(cmax, 1e-6), 0.0)
    r, g, b = arr[..., 0], arr[..., 1], arr[..., 2]
    safe = np.maximum(delta, 1e-6)
    hue = np.select([cmax == r, cmax == g], [((g - b) / safe) % 6, (b - r) / safe + 2], (r - g) / safe + 4)
    hue = np.where(delta > 0, hue * 60.0, 0.0)
    return hue.astype(np.float32), sat.astype(np.float32), cmax.astype(np.float32)


def otsu_threshold(values: np.ndarray, bins: int = 256) -> float:
    """Otsu's threshold of values in [0, 1] (maximises between-class variance over a histogram)."""
    if values.size == 0:
        return 1.0
    hist, edges = np.histogram(values, bins=bins, range=(0.0, 1.0))
    return _otsu_from_histogram(hist.astype(np.float64), edges)


def _otsu_from_histogram(hist: np.ndarray, edges: np.ndarray) -> float:
    centres = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(hist)
    w1 = w0[-1] - w0
    m0 = np.cumsum(hist * centres)
    mean0 = m0 / np.maximum(w0, 1e-12)
    mean1 = (m0[-1] - m0) / np.maximum(w1, 1e-12)
    between = w0 * w1 * (mean0 - mean1) ** 2
    return float(edges[int(np.argmax(between)) + 1])


def _saturation_table() -> np.ndarray:
    """Saturation of every (max, min) pair of uint8 channels, flattened as max·256 + min, computed with exactly
    `rgb_to_hsv`'s float32 operations (x/255 is monotonic, so max and min commute with it)."""
    scaled = np.arange(256, dtype=np.float32) / 255.0
    cmax, cmin = scaled[:, None], scaled[None, :]
    delta = cmax - cmin
    sat = np.where(cmax > 0, delta / np.maximum(cmax, 1e-6), 0.0).astype(np.float32)
    return sat.ravel()


_SATURATION = _saturation_table()
_VALUE = np.arange(256, dtype=np.float32) / 255.0
# Pen hues matter only where blue or green ink is possible (see pen_mask): hue is computed there alone.
_HUE_MIN_SAT, _HUE_MIN_VAL = 0.25, 0.15


def saturation_value(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """HSV saturation and value (float32, equal to `rgb_to_hsv`'s) and the (max, min) pair code of each pixel,
    from integer channel max/min and a 65,536-entry table instead of float HSV of the whole image."""
    # Pairwise maximum over channel views is several times faster than a reduction over a length-3 last axis.
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    cmax = np.maximum(np.maximum(r, g), b)
    cmin = np.minimum(np.minimum(r, g), b)
    code = (cmax.astype(np.uint16) << 8) | cmin
    return _SATURATION[code], _VALUE[cmax], code


def pen_mask(hue: np.ndarray, sat: np.ndarray, val: np.ndarray) -> np.ndarray:
    """Strong blue, green and black marker ink. H&E hues are pink to purple (≈ 260–350°); blue ink sits at
    ≈ 190–250°, green at 70–170°, black ink is dark and unsaturated."""
    blue = (hue >= 190) & (hue <= 250) & (sat > 0.35) & (val > 0.25)
    green = (hue >= 70) & (hue <= 170) & (sat > 0.25) & (val > 0.15)
    black = (val < 0.25) & (sat < 0.35)
    return blue | green | black


def disk(radius: int) -> np.ndarray:
    y, x = np.mgrid[-radius:radius + 1, -radius:radius + 1]
    return x * x + y * y <= radius * radius


def segment_tissue(rgb: np.ndarray, mpp: float, config: TissueConfig = TissueConfig(),
                   downsample: tuple[float, float] = (1.0, 1.0)) -> TissueMask:
    """Tissue mask of an H×W×3 uint8 rendering whose pixels are `mpp` µm wide."""
    sat, val, code = saturation_value(rgb)
    excluded = np.zeros(sat.shape, dtype=bool)
    if config.remove_pen:
        # Dilate so the anti-aliased rim of a stroke goes with it.
        excluded |= ndimage.binary_dilation(_pen_mask_of(rgb, sat, val, code), structure=disk(1))
    if config.remove_artefacts:
        excluded |= val < config.dark_value
    threshold = config.saturation_threshold
    if threshold is None:
        threshold = max(_otsu_of_codes(code[~excluded]), config.min_saturation)
    mask = (sat > threshold) & ~excluded
    mask = _clean(mask, mpp, config)
    return TissueMask(mask, downsample, mpp, float(threshold), config)


def _pen_mask_of(rgb: np.ndarray, sat: np.ndarray, val: np.ndarray, code: np.ndarray) -> np.ndarray:
    """`pen_mask` with hue computed (by `rgb_to_hsv` itself) only where blue or green ink is possible: saturated
    enough, and red not the largest channel (`rgb_to_hsv` then takes the red branch, hue in [0, 60] ∪ [300, 360),
    which is neither ink; most H&E pixels are such)."""
    black = (val < 0.25) & (sat < 0.35)
    candidates = (sat > _HUE_MIN_SAT) & (val > _HUE_MIN_VAL) & (rgb[..., 0] < (code >> 8))
    if candidates.any():
        hue, csat, cval = rgb_to_hsv(rgb[candidates][None])
        black[candidates] |= pen_mask(hue, csat, cval)[0]
    return black


def _otsu_of_codes(codes: np.ndarray) -> float:
    """`otsu_threshold` of the saturations of these (max, min) codes: the histogram of the 65,536 table values
    weighted by how often each code occurs holds the same counts."""
    if codes.size == 0:
        return 1.0
    counts = np.bincount(codes.ravel(), minlength=65536).astype(np.float64)
    hist, edges = np.histogram(_SATURATION, bins=256, range=(0.0, 1.0), weights=counts)
    return _otsu_from_histogram(hist, edges)


def _clean(mask: np.ndarray, mpp: float, config: TissueConfig) -> np.ndarray:
    close_r = int(round(config.close_radius_um / mpp))
    open_r = int(round(config.open_radius_um / mpp))
    if close_r > 0:
        # Pad so closing does not erode tissue that touches the slide border.
        padded = np.pad(mask, close_r, mode="edge")
        mask = ndimage.binary_closing(padded, structure=disk(close_r))[close_r:-close_r, close_r:-close_r]
    if open_r > 0:
        mask = ndimage.binary_opening(mask, structure=disk(open_r))
    mask = remove_small_components(mask, config.min_component_um2 / (mpp * mpp))
    if config.fill_holes:
        mask = fill_holes(mask, None if config.max_hole_um2 is None else config.max_hole_um2 / (mpp * mpp))
    return mask


def remove_small_components(mask: np.ndarray, min_pixels: float) -> np.ndarray:
    if min_pixels <= 1 or not mask.any():
        return mask
    labels, count = ndimage.label(mask)
    sizes = np.bincount(labels.ravel(), minlength=count + 1)
    keep = sizes >= min_pixels
    keep[0] = False
    return keep[labels]


def fill_holes(mask: np.ndarray, max_hole_pixels: float | None) -> np.ndarray:
    filled = ndimage.binary_fill_holes(mask)
    if max_hole_pixels is None:
        return filled
    holes = filled & ~mask
    return mask | (holes & ~remove_small_components(holes, max_hole_pixels + 1))


def tissue_mask_for_slide(reader: Any, config: TissueConfig = TissueConfig()) -> tuple[TissueMask, np.ndarray]:
    """Render the slide at about `config.mask_mpp` µm/px and segment it; returns the mask and the rendering."""
    if reader.mpp is None:
        raise ValueError(f"{reader.path}: µm/px unknown; open the slide with mpp=")
    downsample = max(1.0, config.mask_mpp / reader.mpp[0])
    rendering = reader.read_downscaled(downsample)
    height, width = rendering.shape[:2]
    actual = (reader.dimensions[0] / width, reader.dimensions[1] / height)
    mask = segment_tissue(rendering, reader.mpp[0] * actual[0], config, actual)
    return mask, rendering


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Sørensen–Dice overlap of two boolean masks of the same shape (1.0 when both are empty)."""
    if a.shape != b.shape:
        raise ValueError(f"mask shapes differ: {a.shape} vs {b.shape}")
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int((a & b).sum()) / total


def tile_tissue_fraction(mask: TissueMask, coords: np.ndarray, footprint: tuple[int, int]) -> np.ndarray:
    """Fraction of each level-0 tile (top-left `coords`, size `footprint`) covered by the mask, via an
    integral image so the cost does not grow with tile count × tile area."""
    m = mask.mask.astype(np.float64)
    integral = np.zeros((m.shape[0] + 1, m.shape[1] + 1))
    integral[1:, 1:] = m.cumsum(0).cumsum(1)
    dsx, dsy = mask.downsample
    x0 = np.clip(np.floor(coords[:, 0] / dsx + 0.5), 0, m.shape[1]).astype(np.int64)
    y0 = np.clip(np.floor(coords[:, 1] / dsy + 0.5), 0, m.shape[0]).astype(np.int64)
    x1 = np.clip(np.floor((coords[:, 0] + footprint[0]) / dsx + 0.5), 0, m.shape[1]).astype(np.int64)
    y1 = np.clip(np.floor((coords[:, 1] + footprint[1]) / dsy + 0.5), 0, m.shape[0]).astype(np.int64)
    x1, y1 = np.maximum(x1, np.minimum(x0 + 1, m.shape[1])), np.maximum(y1, np.minimum(y0 + 1, m.shape[0]))
    covered = integral[y1, x1] - integral[y0, x1] - integral[y1, x0] + integral[y0, x0]
    # The denominator is the tile's full area in mask pixels, so tiles hanging off the slide edge count
    # their outside part as background.
    area = (footprint[0] / dsx) * (footprint[1] / dsy)
    return (covered / max(area, 1e-9)).clip(0, 1).astype(np.float32)
