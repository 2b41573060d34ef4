"""Helpers shared by the slide tests: small synthetic slides and ways to damage them."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from breastgpt.pathology.synthetic import SyntheticScene, SyntheticSlide, write_pyramidal_tiff

from tests.conftest import REALDATA

WSI = REALDATA / "wsi"
CMU = WSI / "CMU-1-Small-Region.svs"
TCGA = WSI / "tcga-cr-7395-01a-01-ts1.svs"


def small_slide(path: Path, *, seed: int = 0, width: int = 2048, height: int = 1536, mpp: float = 0.5,
                **kwargs: object) -> SyntheticSlide:
    scene = SyntheticScene.random(width, height, mpp=mpp, seed=seed)
    return write_pyramidal_tiff(path, scene, **kwargs)  # type: ignore[arg-type]


def tile_index_at(path: Path, x: int, y: int, page: int = 0) -> int:
    import tifffile

    with tifffile.TiffFile(path) as tif:
        p = tif.pages[page]
        across = -(-p.imagewidth // p.tilewidth)
        return (y // p.tilelength) * across + (x // p.tilewidth)


def garble_tile(path: Path, tile_index: int, page: int = 0, seed: int = 0) -> None:
    """Overwrite one tile's compressed bytes with noise (its offset stays valid)."""
    import tifffile

    with tifffile.TiffFile(path) as tif:
        offset = int(tif.pages[page].dataoffsets[tile_index])
        count = int(tif.pages[page].databytecounts[tile_index])
    noise = np.random.default_rng(seed).integers(0, 256, count, dtype=np.uint8).tobytes()
    with path.open("r+b") as handle:
        handle.seek(offset)
        handle.write(noise)


def break_tile_offsets(path: Path, page: int = 0) -> None:
    """Point every tile of one IFD past the end of the file (a damaged tile table)."""
    import tifffile

    with tifffile.TiffFile(path) as tif:
        tag = tif.pages[page].tags["TileOffsets"]
        position, count, byteorder = tag.valueoffset, tag.count, tif.byteorder
        width = 8 if tag.dtype == 16 else 4
    fmt = byteorder + ("Q" if width == 8 else "I")
    with path.open("r+b") as handle:
        handle.seek(position)
        for i in range(count):
            handle.write(struct.pack(fmt, 0xFFFF0000 + i))
