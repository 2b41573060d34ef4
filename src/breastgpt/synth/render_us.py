"""Breast ultrasound frames: speckle inside an imaging region framed by dark margins and burnt-in marks, with
one lesion whose shape, margin, echo pattern, halo, shadowing, calcifications and Doppler flow follow its labels."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from breastgpt.synth.render import lesion_mask, mask_to_box, smooth_noise

ECHO_LEVEL = {"anechoic": 8.0, "hypoechoic": 45.0, "isoechoic": 105.0, "hyperechoic": 190.0,
              "complex": 60.0, "heterogeneous": 75.0}


def render_ultrasound(rng: np.random.Generator, h: int, w: int, *, lesion: bool = True, us_shape: str = "oval",
                      us_margin: str = "circumscribed", us_echo: str = "hypoechoic", us_boundary: str = "abrupt",
                      us_calcification: bool = False, us_blood_flow: str = "none", shadowing: bool = False,
                      ) -> tuple[np.ndarray, np.ndarray, tuple[int, int, int, int]]:
    """(RGB uint8 frame, lesion mask, imaging region (x1,y1,x2,y2)); the mask is empty without a lesion."""
    region = (int(w * 0.12), int(h * 0.08), int(w * 0.9), int(h * 0.94))
    x1, y1, x2, y2 = region
    rh, rw = y2 - y1, x2 - x1
    tissue = 105 + 25 * smooth_noise(rng, (rh, rw), sigma=max(2.0, rh / 25))
    tissue *= rng.rayleigh(0.8, (rh, rw))
    mask_local = np.zeros((rh, rw), bool)
    if lesion:
        centre = (rw * rng.uniform(0.35, 0.65), rh * rng.uniform(0.3, 0.5))
        radius = rh * rng.uniform(0.17, 0.24)  # large enough to read at ~100 px (the CPU demo's size)
        shape = "irregular" if us_margin == "not_circumscribed" and us_shape == "oval" else us_shape
        mask_local = lesion_mask(rng, rh, rw, centre, radius, shape)
        tissue = _paint_lesion(rng, tissue, mask_local, us_echo, us_boundary, us_calcification, shadowing)
    frame = np.zeros((h, w), float)
    frame[y1:y2, x1:x2] = tissue
    frame[int(h * 0.02):int(h * 0.04), int(w * 0.02):int(w * 0.2)] = 200  # burnt-in annotation outside region
    rgb = np.repeat(np.clip(frame, 0, 255)[..., None], 3, axis=2)
    mask = np.zeros((h, w), bool)
    mask[y1:y2, x1:x2] = mask_local
    if lesion and us_blood_flow != "none":
        _paint_flow(rng, rgb, mask, us_blood_flow)
    return rgb.astype(np.uint8), mask, region


def _paint_lesion(rng, tissue, mask, echo, boundary, calcification, shadowing) -> np.ndarray:
    level = ECHO_LEVEL[echo]
    inside = np.full(tissue.shape, level) * rng.rayleigh(0.8, tissue.shape)
    if echo in ("complex", "heterogeneous"):
        inside = np.where(smooth_noise(rng, tissue.shape, 3.0) > 0, 15.0, 150.0) * rng.rayleigh(0.8, tissue.shape)
    out = np.where(mask, inside, tissue)
    if boundary == "echogenic_halo":
        ring = ndimage.binary_dilation(mask, iterations=4) & ~mask
        out[ring] = 225
    if shadowing:
        ys, xs = np.nonzero(mask)
        below = np.zeros_like(mask)
        for x in np.unique(xs):
            below[ys[xs == x].max():, x] = True
        out[below & ~mask] *= 0.3
    if calcification:
        ys, xs = np.nonzero(ndimage.binary_erosion(mask, iterations=3))
        pick = rng.choice(len(ys), size=min(6, len(ys)), replace=False) if len(ys) else []
        for i in pick:
            out[max(0, ys[i] - 1):ys[i] + 2, max(0, xs[i] - 1):xs[i] + 2] = 250
    return out


def _paint_flow(rng, rgb, mask, flow) -> None:
    region = mask if flow == "internal" else (ndimage.binary_dilation(mask, iterations=3) & ~mask)
    ys, xs = np.nonzero(region)
    if len(ys) == 0:
        return
    pick = rng.choice(len(ys), size=max(1, len(ys) // 12), replace=False)
    rgb[ys[pick], xs[pick]] = [220, 30, 30]


def lesion_box(mask: np.ndarray) -> list[int] | None:
    return mask_to_box(mask) if mask.any() else None
