"""Pixel generators whose content carries the labels: a model that learns these labels from pixels is learning
the drawn findings (shape, margin, density, echo pattern, enhancement, texture), not file names.

Every function takes a `numpy.random.Generator`, so a cohort is a pure function of its seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

DENSITY_FRACTION = {"A": 0.08, "B": 0.3, "C": 0.55, "D": 0.82}  # fibroglandular fraction of the breast area


@dataclass
class Finding:
    """One drawn lesion: its mask in image pixels and the box around it."""

    kind: str  # "mass" | "calcification" | "asymmetry" | "architectural_distortion"
    mask: np.ndarray
    box: list[int]  # [x1, y1, x2, y2], exclusive max


def mask_to_box(mask: np.ndarray) -> list[int]:
    ys, xs = np.nonzero(mask)
    return [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]


def smooth_noise(rng: np.random.Generator, shape: tuple[int, ...], sigma: float) -> np.ndarray:
    """Zero-mean, unit-variance smooth noise (cheap: drawn at low resolution then zoomed)."""
    factor = max(1, int(sigma // 2))
    small = rng.standard_normal(tuple(max(2, s // factor) for s in shape))
    small = ndimage.gaussian_filter(small, sigma / factor)
    if small.shape == tuple(shape):
        return (small - small.mean()) / (small.std() + 1e-6)
    noise = ndimage.zoom(small, [s / t for s, t in zip(shape, small.shape)], order=1)
    noise = noise[tuple(slice(0, s) for s in shape)]
    return (noise - noise.mean()) / (noise.std() + 1e-6)


def breast_mask(h: int, w: int, side: str) -> np.ndarray:
    """A half-ellipse breast with the chest wall on the image's left edge for 'L' and right edge for 'R'."""
    yy, xx = np.mgrid[0:h, 0:w]
    x0 = 0 if side == "L" else w - 1
    inside = ((xx - x0) / (0.78 * w)) ** 2 + ((yy - h / 2) / (0.46 * h)) ** 2 <= 1.0
    return inside


def lesion_mask(rng: np.random.Generator, h: int, w: int, centre: tuple[float, float], radius: float,
                shape: str) -> np.ndarray:
    """Round, oval, lobulated or irregular blob centred at (x, y)."""
    yy, xx = np.mgrid[0:h, 0:w]
    dx, dy = xx - centre[0], yy - centre[1]
    angle = np.arctan2(dy, dx)
    dist = np.hypot(dx, dy)
    if shape == "round":
        edge = np.full_like(angle, radius)
    elif shape == "oval":
        theta = rng.uniform(0, np.pi)
        a, b = radius * 1.35, radius * 0.7
        edge = a * b / np.sqrt((b * np.cos(angle - theta)) ** 2 + (a * np.sin(angle - theta)) ** 2)
    elif shape == "lobulated":
        edge = radius * (1 + 0.22 * np.cos(4 * angle + rng.uniform(0, 6.3)))
    else:  # irregular: several random harmonics
        edge = radius * (1 + sum(rng.uniform(0.08, 0.2) * np.cos(k * angle + rng.uniform(0, 6.3))
                                 for k in (3, 5, 7, 11)))
    return dist <= edge


def spicules(rng: np.random.Generator, h: int, w: int, centre: tuple[float, float], radius: float) -> np.ndarray:
    """Thin radiating lines from a mass edge (spiculated margin)."""
    out = np.zeros((h, w), bool)
    for angle in rng.uniform(0, 2 * np.pi, size=14):
        length = radius * rng.uniform(1.7, 2.6)
        steps = np.linspace(radius * 0.8, length, int(length * 2))
        xs = np.clip((centre[0] + steps * np.cos(angle)).astype(int), 0, w - 1)
        ys = np.clip((centre[1] + steps * np.sin(angle)).astype(int), 0, h - 1)
        out[ys, xs] = True
    return ndimage.binary_dilation(out, iterations=1)


def calc_cluster(rng: np.random.Generator, h: int, w: int, centre: tuple[float, float], radius: float,
                 distribution: str, dot: int = 1) -> np.ndarray:
    """Small bright dots (dilated `dot` times), grouped in a disc or along a line/segment."""
    n = int(rng.integers(10, 18))
    if distribution in ("linear", "segmental"):
        angle = rng.uniform(0, np.pi)
        t = rng.uniform(-1.6, 1.6, n) * radius
        xs, ys = centre[0] + t * np.cos(angle), centre[1] + t * np.sin(angle)
        xs, ys = xs + rng.normal(0, 1.5, n), ys + rng.normal(0, 1.5, n)
    else:
        spread = radius * (0.5 if distribution == "grouped" else 1.2)
        xs, ys = centre[0] + rng.normal(0, spread, n), centre[1] + rng.normal(0, spread, n)
    out = np.zeros((h, w), bool)
    out[np.clip(ys.astype(int), 0, h - 1), np.clip(xs.astype(int), 0, w - 1)] = True
    return ndimage.binary_dilation(out, iterations=dot)


def render_mammogram(rng: np.random.Generator, h: int, w: int, side: str, density: str,
                     abnormality: str = "none", mass_shape: str = "oval", mass_margin: str = "circumscribed",
                     calc_distribution: str = "grouped") -> tuple[np.ndarray, list[Finding]]:
    """A 12-bit mammogram (0 = air) with density as fibroglandular fraction and at most one finding."""
    breast = breast_mask(h, w, side)
    texture = smooth_noise(rng, (h, w), sigma=max(3.0, h / 60))
    threshold = np.quantile(texture[breast], 1 - DENSITY_FRACTION[density])
    image = np.where(breast, 700.0, 40.0) + np.where(breast & (texture > threshold), 900.0, 0.0)
    image += rng.normal(0, 25, (h, w))
    findings: list[Finding] = []
    if abnormality != "none":
        findings.append(_draw_finding(rng, image, breast, side, abnormality, mass_shape, mass_margin,
                                      calc_distribution))
    return np.clip(image, 0, 4095).astype(np.uint16), findings


def _draw_finding(rng, image, breast, side, abnormality, mass_shape, mass_margin, calc_distribution) -> Finding:
    h, w = image.shape
    # Findings are drawn large (10-15 % of the short side) and brighter than dense tissue, so that they stay
    # visible after normalisation to the ~100 px images a CPU demo trains on.
    radius = max(6.0, min(h, w) * rng.uniform(0.10, 0.15))
    cx = w * rng.uniform(0.22, 0.42) if side == "L" else w * rng.uniform(0.58, 0.78)
    centre = (cx, h * rng.uniform(0.38, 0.62))
    if abnormality == "calcification":
        mask = calc_cluster(rng, h, w, centre, radius, calc_distribution, dot=max(1, min(h, w) // 100)) & breast
        image[mask] += 2400
        return Finding("calcification", mask, mask_to_box(mask))
    shape = mass_shape if abnormality == "mass" else "irregular"
    mask = lesion_mask(rng, h, w, centre, radius, shape)
    layer = mask.astype(float)
    if mass_margin in ("indistinct", "obscured", "microlobulated") or abnormality != "mass":
        layer = ndimage.gaussian_filter(layer, radius / 4)
    if mass_margin == "spiculated" or abnormality == "architectural_distortion":
        lines = spicules(rng, h, w, centre, radius)
        layer = np.maximum(layer, 0.8 * lines)
        mask = mask | lines
    gain = {"mass": 1900.0, "asymmetry": 700.0, "architectural_distortion": 600.0}.get(abnormality, 1000.0)
    image += gain * layer * breast
    mask &= breast
    return Finding(abnormality, mask, mask_to_box(mask))


def size_phrase(mask: np.ndarray, mm_per_px: float) -> str:
    """'measuring W x H mm', measured on the rendered lesion mask (2-D; a volume uses its largest slice).

    Real reports carry such measurements; they also make every synthetic report differ, so the corpus audit's
    repeated-text check is not tripped by templated synthetic text.
    """
    if mask.ndim == 3:
        mask = mask[int(np.argmax(mask.reshape(mask.shape[0], -1).sum(axis=1)))]
    if not mask.any():
        return ""
    x1, y1, x2, y2 = mask_to_box(mask)
    return f"measuring {(x2 - x1) * mm_per_px:.0f} x {(y2 - y1) * mm_per_px:.0f} mm"


def clock_phrase(rng: np.random.Generator) -> str:
    """A clock-face position and distance from the nipple, as breast reports state them."""
    return f"at {int(rng.integers(1, 13))} o'clock, {int(rng.integers(1, 9))} cm from the nipple"
