"""Synthetic whole-slide images with known tissue: pyramidal TIFF, SVS-like TIFF and single-level JPEG.

The scene is analytic: tissue is a union of ellipses in level-0 pixel coordinates, nuclei sit on a jittered
grid whose jitter comes from an integer hash of the cell index, and grain comes from a hash of the pixel
position. Any tile of any level can therefore be rendered on its own, which keeps a 40,000 × 40,000 slide
writable tile by tile in bounded memory, and the ground-truth mask is available at any resolution.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from breastgpt.artifacts import atomic_path

BACKGROUND_RGB = (243, 241, 244)
STROMA_RGB = (226, 150, 190)
NUCLEUS_RGB = (105, 60, 150)
TUMOUR_NUCLEUS_RGB = (75, 35, 120)
PEN_RGB = (40, 70, 200)


@dataclass(frozen=True)
class Ellipse:
    """An axis-aligned ellipse in level-0 pixels."""

    cx: float
    cy: float
    rx: float
    ry: float

    def contains(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return ((x - self.cx) / self.rx) ** 2 + ((y - self.cy) / self.ry) ** 2 <= 1.0

    def bbox(self) -> tuple[float, float, float, float]:
        return self.cx - self.rx, self.cy - self.ry, self.cx + self.rx, self.cy + self.ry


@dataclass(frozen=True)
class SyntheticScene:
    """Geometry and appearance of one synthetic slide (level-0 pixels)."""

    width: int
    height: int
    mpp: float = 0.5
    seed: int = 0
    n_blobs: int = 3
    tumour: bool = True
    pen_mark: bool = False
    nucleus_spacing_um: float = 14.0
    blobs: tuple[Ellipse, ...] = field(default=(), repr=False)
    tumour_region: Ellipse | None = field(default=None, repr=False)
    pen_band: tuple[int, int, int, int] | None = field(default=None, repr=False)

    @classmethod
    def random(cls, width: int, height: int, *, mpp: float = 0.5, seed: int = 0, n_blobs: int = 3,
               tumour: bool = True, pen_mark: bool = False) -> SyntheticScene:
        """Place `n_blobs` tissue ellipses (and optionally a tumour ellipse inside the first) deterministically."""
        rng = np.random.default_rng(seed)
        blobs = []
        for i in range(n_blobs):
            # Blobs occupy separate vertical bands so they never cover the whole slide or each other entirely.
            band_w = width / n_blobs
            rx = band_w * rng.uniform(0.25, 0.4)
            ry = height * rng.uniform(0.2, 0.35)
            cx = band_w * (i + 0.5) + rng.uniform(-0.05, 0.05) * band_w
            cy = height * rng.uniform(0.4, 0.6)
            blobs.append(Ellipse(cx, cy, rx, ry))
        first = blobs[0]
        tumour_region = Ellipse(first.cx, first.cy, first.rx * 0.45, first.ry * 0.45) if tumour else None
        pen_band = None
        if pen_mark:
            # A horizontal stroke across the top margin, outside every blob.
            top = int(height * 0.04)
            pen_band = (int(width * 0.1), top, int(width * 0.9), top + max(4, int(height * 0.03)))
        return cls(width, height, mpp, seed, n_blobs, tumour, pen_mark, 14.0, tuple(blobs), tumour_region, pen_band)

    def tissue_at(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        inside = np.zeros(np.broadcast(x, y).shape, dtype=bool)
        for blob in self.blobs:
            inside |= blob.contains(x, y)
        return inside

    def tumour_at(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        if self.tumour_region is None:
            return np.zeros(np.broadcast(x, y).shape, dtype=bool)
        return self.tumour_region.contains(x, y) & self.tissue_at(x, y)

    def pen_at(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        if self.pen_band is None:
            return np.zeros(np.broadcast(x, y).shape, dtype=bool)
        x0, y0, x1, y1 = self.pen_band
        return (x >= x0) & (x < x1) & (y >= y0) & (y < y1)

    def truth_mask(self, downsample: float) -> np.ndarray:
        """Ground-truth tissue mask sampled at pixel centres of a grid `downsample` times coarser than level 0."""
        h = max(1, int(math.ceil(self.height / downsample)))
        w = max(1, int(math.ceil(self.width / downsample)))
        y, x = np.mgrid[0:h, 0:w].astype(np.float64)
        return self.tissue_at((x + 0.5) * downsample, (y + 0.5) * downsample)

    def truth_tumour_mask(self, downsample: float) -> np.ndarray:
        h = max(1, int(math.ceil(self.height / downsample)))
        w = max(1, int(math.ceil(self.width / downsample)))
        y, x = np.mgrid[0:h, 0:w].astype(np.float64)
        return self.tumour_at((x + 0.5) * downsample, (y + 0.5) * downsample)

    def intersects_anything(self, x0: float, y0: float, x1: float, y1: float) -> bool:
        boxes = [b.bbox() for b in self.blobs]
        if self.pen_band is not None:
            boxes.append(tuple(float(v) for v in self.pen_band))
        return any(bx0 < x1 and bx1 > x0 and by0 < y1 and by1 > y0 for bx0, by0, bx1, by1 in boxes)

    def render(self, x0: int, y0: int, w: int, h: int, downsample: float = 1.0) -> np.ndarray:
        """RGB uint8 pixels of the region whose top-left is level-0 (x0, y0), `w`×`h` pixels at `downsample`."""
        ys = y0 + (np.arange(h, dtype=np.float64) + 0.5) * downsample
        xs = x0 + (np.arange(w, dtype=np.float64) + 0.5) * downsample
        grain = _hash2(xs[None, :].astype(np.int64), ys[:, None].astype(np.int64), self.seed + 7)
        grain = (grain % 9).astype(np.int16) - 4
        extent = (x0, y0, x0 + w * downsample, y0 + h * downsample)
        if not self.intersects_anything(*extent):
            out = np.empty((h, w, 3), dtype=np.int16)
            out[:] = BACKGROUND_RGB
            return np.clip(out + grain[..., None] // 2, 0, 255).astype(np.uint8)
        x, y = np.meshgrid(xs, ys)
        return self._render_tissue(x, y, grain)

    def _render_tissue(self, x: np.ndarray, y: np.ndarray, grain: np.ndarray) -> np.ndarray:
        tissue = self.tissue_at(x, y)
        tumour = self.tumour_at(x, y)
        spacing = self.nucleus_spacing_um / self.mpp
        normal_nuclei = _nuclei(x, y, spacing, 0.22 * spacing, self.seed)
        tumour_nuclei = _nuclei(x, y, spacing * 0.7, 0.33 * spacing * 0.7, self.seed + 1)
        out = np.empty(x.shape + (3,), dtype=np.int16)
        out[:] = BACKGROUND_RGB
        out[tissue] = STROMA_RGB
        out[tissue & ~tumour & normal_nuclei] = NUCLEUS_RGB
        out[tumour & tumour_nuclei] = TUMOUR_NUCLEUS_RGB
        out[tumour & ~tumour_nuclei] = (205, 130, 185)
        out[self.pen_at(x, y)] = PEN_RGB
        amplitude = np.where(tissue, 3, 1)[..., None]
        return np.clip(out + grain[..., None] * amplitude, 0, 255).astype(np.uint8)


def _hash2(x: np.ndarray, y: np.ndarray, seed: int) -> np.ndarray:
    """A cheap integer hash of two coordinates (uint64 arithmetic wraps; that is the point)."""
    h = (x.astype(np.uint64) * np.uint64(0x9E3779B1)) ^ (y.astype(np.uint64) * np.uint64(0x85EBCA77))
    h ^= np.uint64(seed * 0x27D4EB2F + 0x165667B1)
    h ^= h >> np.uint64(15)
    h *= np.uint64(0x2C1B3C6D)
    h ^= h >> np.uint64(12)
    return (h & np.uint64(0xFFFF)).astype(np.int64)


def _nuclei(x: np.ndarray, y: np.ndarray, spacing: float, radius: float, seed: int) -> np.ndarray:
    """Round nuclei, one per grid cell, each jittered by a hash of its cell so tiles agree at their borders."""
    cx = np.floor(x / spacing).astype(np.int64)
    cy = np.floor(y / spacing).astype(np.int64)
    slack = max(0.0, spacing / 2 - radius)
    jx = (_hash2(cx, cy, seed) / 65535.0 - 0.5) * 2 * slack
    jy = (_hash2(cy, cx, seed + 3) / 65535.0 - 0.5) * 2 * slack
    dx = x - (cx + 0.5) * spacing - jx
    dy = y - (cy + 0.5) * spacing - jy
    return dx * dx + dy * dy <= radius * radius


# ------------------------------------------------------------------------------------------------ writers

@dataclass(frozen=True)
class SyntheticSlide:
    """A written synthetic slide and what is known about it."""

    path: Path
    scene: SyntheticScene
    level_downsamples: tuple[int, ...]


def _level_shapes(scene: SyntheticScene, downsamples: tuple[int, ...]) -> list[tuple[int, int]]:
    return [(max(1, scene.height // d), max(1, scene.width // d)) for d in downsamples]


def _tiles(scene: SyntheticScene, shape: tuple[int, int], downsample: int, tile: int) -> Iterator[np.ndarray]:
    """Tiles of one level in row-major order, edge tiles padded to full size as TIFF requires."""
    height, width = shape
    for ty in range(0, height, tile):
        for tx in range(0, width, tile):
            block = scene.render(tx * downsample, ty * downsample, tile, tile, float(downsample))
            yield block


def write_pyramidal_tiff(path: str | Path, scene: SyntheticScene, *, downsamples: tuple[int, ...] = (1, 4, 16),
                         tile: int = 256, compression: str = "jpeg", quality: int = 85,
                         resolution_tags: bool = True, svs_description: bool = False,
                         objective_power: int = 20) -> SyntheticSlide:
    """Write a tiled pyramidal TIFF, one IFD per level (OpenSlide's generic-TIFF and Aperio layouts).

    With `svs_description`, the first IFD carries an Aperio ImageDescription (MPP, AppMag) so OpenSlide reads
    it as an SVS; otherwise µm/px is stored in the resolution tags (centimetre unit) unless `resolution_tags`
    is False, which yields a slide without µm/px.
    """
    import tifffile

    path = Path(path)
    options: dict = {"compression": compression}
    if compression == "jpeg":
        options["compressionargs"] = {"level": quality}
    with atomic_path(path) as tmp, tifffile.TiffWriter(tmp, bigtiff=scene.width * scene.height > 2**31) as writer:
        for index, (shape, ds) in enumerate(zip(_level_shapes(scene, downsamples), downsamples, strict=True)):
            kwargs: dict = {"tile": (tile, tile), "photometric": "rgb", "subfiletype": 0 if index == 0 else 1,
                            "metadata": None}
            if resolution_tags:
                per_cm = 10_000.0 / (scene.mpp * ds)
                kwargs.update(resolution=(per_cm, per_cm), resolutionunit="CENTIMETER")
            if svs_description:
                kwargs["description"] = _aperio_description(scene, shape, ds, tile, objective_power)
            writer.write(_tiles(scene, shape, ds, tile), shape=(*shape, 3), dtype=np.uint8, **kwargs, **options)
    return SyntheticSlide(path, scene, downsamples)


def write_svs_like(path: str | Path, scene: SyntheticScene, *, downsamples: tuple[int, ...] = (1, 4, 16),
                   tile: int = 256, objective_power: int = 20) -> SyntheticSlide:
    """An Aperio-style SVS: JPEG tiles, MPP and AppMag in the ImageDescription, no resolution tags."""
    return write_pyramidal_tiff(path, scene, downsamples=downsamples, tile=tile, resolution_tags=False,
                                svs_description=True, objective_power=objective_power)


def _aperio_description(scene: SyntheticScene, shape: tuple[int, int], downsample: int, tile: int,
                        objective_power: int) -> str:
    height, width = shape
    head = f"Aperio Image Library v12.0.0\r\n{scene.width}x{scene.height} [0,0 {scene.width}x{scene.height}]"
    head += f" ({tile}x{tile}) JPEG/RGB Q=85"
    if downsample != 1:
        head += f" -> {width}x{height} - "
    return f"{head}|AppMag = {objective_power}|MPP = {scene.mpp:.4f}|Filename = synthetic|ScanScope ID = SYNTH"


def write_large_jpeg(path: str | Path, scene: SyntheticScene, *, quality: int = 90) -> SyntheticSlide:
    """A single-level JPEG of the whole scene (BCNB style): no µm/px inside, the user must supply it."""
    from PIL import Image

    path = Path(path)
    pixels = scene.render(0, 0, scene.width, scene.height)
    with atomic_path(path) as tmp:
        Image.fromarray(pixels).save(tmp, format="JPEG", quality=quality)
    return SyntheticSlide(path, scene, (1,))
