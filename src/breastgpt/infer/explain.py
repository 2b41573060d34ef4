"""Which visual tokens the model kept: per input, the grid positions selected, and for slides the tiles.

Selection is training-free and (with text conditioning off, the default) depends only on the visual input,
so one prefill pass reproduces exactly the selection `generate` uses.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from breastgpt.infer.engine import Conversation, Engine
from breastgpt.infer.inputs import SlideInput

# A volume is selected frame group by frame group (its budget is split over the frames), so its entries are
# per frame group, in order; images and slides have one entry each.
KIND_NAMES = {"image": "images", "video": "volume_frames", "slide": "slides"}


def selected_indices(engine: Engine, conversation: Conversation) -> dict[str, list[dict[str, list[int]]]]:
    """{"images": [{"rows", "cols"}], "volume_frames": [...], "slides": [...]}: kept grid positions, in input order."""
    inner = engine.model.model
    recorded: dict[str, list[dict[str, list[int]]]] = {name: [] for name in KIND_NAMES.values()}
    original = inner.select

    def recording(cand: Any, kind: str, text_tokens: Any) -> Any:
        kept = original(cand, kind, text_tokens)
        recorded[KIND_NAMES[kind]].append({"rows": kept.block.rows.tolist(), "cols": kept.block.cols.tolist()})
        return kept

    inputs = engine._inputs([conversation])  # noqa: SLF001 — same encoding as generation
    inner.select = recording
    try:
        with torch.inference_mode():
            engine.model(**inputs)
    finally:
        del inner.select  # back to the class method
    return recorded


def slide_tile_indices(slide: SlideInput, selection: dict[str, list[int]]) -> np.ndarray:
    """Map kept (row, col) grid positions back to indices into the slide's feature rows."""
    grid = np.floor(np.asarray(slide.coords, dtype=np.float64) / float(slide.tile_size)).astype(np.int64)
    grid -= grid.min(axis=0)
    lookup = {(int(col), int(row)): index for index, (col, row) in enumerate(grid)}
    return np.array([lookup[(col, row)] for row, col in zip(selection["rows"], selection["cols"])], dtype=np.int64)


def write_slide_overlay(slide: SlideInput, selection: dict[str, list[int]], out: Path) -> None:
    """GeoJSON (QuPath) of the chosen tiles, and a heatmap PNG when the feature file holds a thumbnail."""
    from breastgpt.pathology.overlay import heatmap_overlay, tiles_geojson, write_png

    indices = slide_tile_indices(slide, selection)
    coords = np.asarray(slide.coords)
    footprint = (slide.tile_size, slide.tile_size)
    (out / "selected_tiles.json").write_text(json.dumps({"tile_indices": indices.tolist()}, indent=2) + "\n")
    (out / "selected_tiles.geojson").write_text(json.dumps(tiles_geojson(coords, footprint, indices)) + "\n")
    downsample = slide.attrs.get("thumbnail_downsample")
    if slide.thumbnail is not None and downsample is not None:
        chosen = np.zeros(len(coords))
        chosen[indices] = 1.0
        write_png(out / "selected_tiles.png", heatmap_overlay(slide.thumbnail, coords, chosen, footprint,
                                                              tuple(float(v) for v in downsample)))
