"""H&E-like slide regions: pink stroma with scattered nuclei, and a tumour region whose nuclear density,
size, arrangement and stain hue follow the labels (histologic type, receptor status, node burden)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from breastgpt.synth.render import smooth_noise


def render_slide(rng: np.random.Generator, h: int, w: int, *, histologic_type: str = "ductal",
                 her2: bool = False, er: bool = True, node_status: str = "n0", tumour_fraction: float = 0.3,
                 ) -> tuple[np.ndarray, np.ndarray]:
    """(RGB uint8 image, tumour mask) with white background around a tissue section."""
    tissue = smooth_noise(rng, (h, w), sigma=max(4.0, h / 12)) > -0.6
    tissue &= _disc(h, w, 0.46)
    tumour = (smooth_noise(rng, (h, w), sigma=max(4.0, h / 16)) > np.quantile(rng.standard_normal(4000),
                                                                              1 - tumour_fraction)) & tissue
    rgb = np.empty((h, w, 3), np.uint8)
    rgb[:] = (242, 240, 245)
    rgb[tissue] = (232, 170, 200)
    nuclei = _nuclei(rng, h, w, tumour, tissue, histologic_type, node_status)
    rgb[nuclei] = (95, 40, 150) if her2 else (70, 50, 130) if er else (120, 30, 110)
    jitter = rng.integers(-6, 7, size=(h, w, 1), dtype=np.int16)  # one grain per pixel keeps it cheap
    return (rgb.astype(np.int16) + jitter).clip(0, 255).astype(np.uint8), tumour


def _disc(h: int, w: int, r: float) -> np.ndarray:
    yy, xx = np.ogrid[0:h, 0:w]
    return ((yy - h / 2) / (r * h)) ** 2 + ((xx - w / 2) / (r * w)) ** 2 <= 1


def _nuclei(rng, h, w, tumour, tissue, histologic_type, node_status) -> np.ndarray:
    seeds = np.zeros((h, w), bool)
    background = rng.random((h, w)) < 0.002
    seeds |= background & tissue
    density = {"n0": 0.012, "n1_2": 0.02, "n3_plus": 0.03}.get(node_status, 0.015)
    if histologic_type == "lobular":  # single-file rows of cells
        rows = (np.arange(h)[:, None] % 9 == 0) & (rng.random((h, w)) < density * 6)
        seeds |= rows & tumour
    else:  # ductal-like: nests of crowded cells around lumens
        nests = (smooth_noise(rng, (h, w), 4.0) > 0.3) & (rng.random((h, w)) < density * 3)
        seeds |= nests & tumour
    size = 2 if histologic_type == "lobular" else 3
    return ndimage.binary_dilation(seeds, iterations=size // 2 + 1)
