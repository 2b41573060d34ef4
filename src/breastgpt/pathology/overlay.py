"""Pictures and annotations of a tiling: QC thumbnail, QuPath-compatible GeoJSON, score heatmap."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np


def _scale_coords(coords: np.ndarray, footprint: tuple[int, int], downsample: tuple[float, float]) -> np.ndarray:
    """Level-0 tile boxes → thumbnail pixel boxes (x0, y0, x1, y1)."""
    x0 = coords[:, 0] / downsample[0]
    y0 = coords[:, 1] / downsample[1]
    return np.stack([x0, y0, x0 + footprint[0] / downsample[0], y0 + footprint[1] / downsample[1]], axis=1)


def qc_overlay(thumbnail: np.ndarray, mask: np.ndarray | None, coords: np.ndarray, footprint: tuple[int, int],
               downsample: tuple[float, float]) -> np.ndarray:
    """Thumbnail with the tissue mask tinted green and every kept tile outlined in blue."""
    from PIL import Image, ImageDraw

    image = thumbnail.astype(np.float32).copy()
    if mask is not None:
        m = np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize(
            (thumbnail.shape[1], thumbnail.shape[0]), Image.Resampling.NEAREST)) > 0
        image[m] = image[m] * 0.7 + np.array([0, 160, 0]) * 0.3
    canvas = Image.fromarray(image.clip(0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(canvas)
    for x0, y0, x1, y1 in _scale_coords(coords, footprint, downsample):
        draw.rectangle([x0, y0, max(x0, x1 - 1), max(y0, y1 - 1)], outline=(30, 60, 220))
    return np.asarray(canvas)


def heatmap_overlay(thumbnail: np.ndarray, coords: np.ndarray, scores: np.ndarray, footprint: tuple[int, int],
                    downsample: tuple[float, float], alpha: float = 0.5) -> np.ndarray:
    """Scores (min–max scaled) painted over their tiles with matplotlib's `inferno` colour map."""
    from matplotlib import colormaps

    scores = np.asarray(scores, dtype=np.float64)
    span = np.ptp(scores) if len(scores) else 0.0
    scaled = (scores - scores.min()) / span if span > 0 else np.full(len(scores), 0.5)
    colours = colormaps["inferno"](scaled)[:, :3] * 255
    image = thumbnail.astype(np.float32).copy()
    h, w = image.shape[:2]
    for (x0, y0, x1, y1), colour in zip(_scale_coords(coords, footprint, downsample), colours, strict=True):
        r0, r1 = int(np.clip(np.floor(y0), 0, h)), int(np.clip(np.ceil(y1), 0, h))
        c0, c1 = int(np.clip(np.floor(x0), 0, w)), int(np.clip(np.ceil(x1), 0, w))
        image[r0:r1, c0:c1] = image[r0:r1, c0:c1] * (1 - alpha) + colour * alpha
    return image.clip(0, 255).astype(np.uint8)


def tiles_geojson(coords: np.ndarray, footprint: tuple[int, int], indices: np.ndarray,
                  scores: np.ndarray | None = None, name: str = "tile") -> dict[str, Any]:
    """A GeoJSON FeatureCollection of tile squares in level-0 pixels, as QuPath imports them (closed rings,
    `objectType` and `classification` properties, scores as `measurements`)."""
    features = []
    for index in np.asarray(indices, dtype=np.int64):
        x, y = (int(v) for v in coords[index])
        w, h = footprint
        ring = [[x, y], [x + w, y], [x + w, y + h], [x, y + h], [x, y]]
        properties: dict[str, Any] = {"objectType": "annotation", "name": f"{name} {int(index)}",
                                      "classification": {"name": name, "color": [30, 60, 220]},
                                      "tile_index": int(index)}
        if scores is not None:
            properties["measurements"] = {"score": float(scores[index])}
        features.append({"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [ring]},
                         "properties": properties})
    return {"type": "FeatureCollection", "features": features}


def write_png(path: str | Path, pixels: np.ndarray) -> Path:
    from PIL import Image

    path = Path(path)
    with atomic_path(path) as tmp:
        Image.fromarray(pixels).save(tmp, format="PNG")
    return path




def read_scores(path: str | Path, n_tiles: int) -> np.ndarray:
    """Per-tile scores from JSON (a list, or {"scores": [...]}) or text/CSV with one number per line."""
    path = Path(path)
    text = path.read_text()
    if path.suffix == ".json":
        payload = json.loads(text)
        values = payload["scores"] if isinstance(payload, dict) else payload
    else:
        values = [line.split(",")[-1] for line in text.splitlines() if line.strip()]
        if values and not _is_number(values[0]):
            values = values[1:]  # a header line
    scores = np.asarray([float(v) for v in values], dtype=np.float64)
    if len(scores) != n_tiles or not np.isfinite(scores).all():
        raise ValueError(f"{path}: expected {n_tiles} finite scores (one per tile), got {len(scores)}")
    return scores


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
from breastgpt.artifacts import atomic_path, atomic_write_json as write_json
