"""Checks of a slide's TIFF structure before a decoder sees it, and of each tile's codestream before tiffslide
decodes it.

OpenSlide compares a JPEG tile's own size with the tile grid; tifffile (under tiffslide) allocates whatever
the codestream declares, so a 30000×30000 SOF in a 256×256 tile costs 2.7 GB. Here: tile offsets must lie in
the file, a tile of zero bytes must be a sparse tile (offset 0 too) and a page must hold data, one tile or strip
must fit `max_image_pixels` and `max_decoded_bytes`, and before tiffslide reads a region, the JPEG / JPEG 2000
headers of the tiles it touches must declare the tile size.
"""

from __future__ import annotations

import math
import threading
from pathlib import Path
from typing import Any

import numpy as np

from breastgpt.io.codestreams import HEAD_BYTES, j2k_size, jpeg_size
from breastgpt.io.errors import CorruptFileError, LimitExceededError
from breastgpt.io.limits import ReadLimits

MAX_IFDS_CHECKED = 256
_JPEG_COMPRESSIONS = {7}
_J2K_COMPRESSIONS = {33003, 33004, 33005, 34712}
_REEXPORT = "the file is truncated or its tile table is damaged; re-copy or re-export it"


def check_tiff_structure(path: Path, limits: ReadLimits) -> int:
    """Parse the IFDs without decoding; refuse impossible tile tables. Returns the number of sparse tiles."""
    import tifffile

    size = path.stat().st_size
    sparse = 0
    try:
        with tifffile.TiffFile(path) as tif:
            for index, page in enumerate(tif.pages):
                if index >= MAX_IFDS_CHECKED:
                    break
                sparse += _check_page(path, page, index, size, limits)
    except (CorruptFileError, LimitExceededError):
        raise
    except Exception as exc:  # tifffile raises several types for malformed IFDs
        raise CorruptFileError(path, f"malformed TIFF structure ({type(exc).__name__}: {exc})",
                               "re-export or re-download the slide") from exc
    return sparse


def _check_page(path: Path, page: Any, index: int, size: int, limits: ReadLimits) -> int:
    offsets = np.asarray(page.dataoffsets, dtype=np.int64)
    counts = np.asarray(page.databytecounts, dtype=np.int64)
    if offsets.shape != counts.shape:
        raise CorruptFileError(path, f"IFD {index}: {offsets.size} tile offsets but {counts.size} byte counts",
                               "re-export the slide")
    bad = (counts > 0) & ((offsets < 0) | (offsets + counts > size))
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise CorruptFileError(path, f"IFD {index}: {int(bad.sum())} tile(s) point past the end of the "
                                     f"{size}-byte file (first: tile {first}, offset {int(offsets[first])})", _REEXPORT)
    empty = counts <= 0
    if (empty & (offsets != 0)).any():
        raise CorruptFileError(path, f"IFD {index}: {int((empty & (offsets != 0)).sum())} tile(s) have data "
                                     "offsets but zero bytes", _REEXPORT)
    if empty.size and empty.all():
        raise CorruptFileError(path, f"IFD {index}: every tile is empty (0 bytes)", _REEXPORT)
    _check_chunk_size(path, page, index, limits)
    return int(empty.sum())


def _check_chunk_size(path: Path, page: Any, index: int, limits: ReadLimits) -> None:
    """One tile or strip is decoded whole, whatever region is asked for: it must fit the image and byte limits."""
    if page.is_tiled:
        width, height = int(page.tilewidth), int(page.tilelength)
    else:
        width, height = int(page.imagewidth), min(int(page.rowsperstrip or page.imagelength), int(page.imagelength))
    nbytes = width * height * int(page.samplesperpixel) * max(1, math.ceil(int(page.bitspersample) / 8))
    if width * height > limits.max_image_pixels or nbytes > limits.max_decoded_bytes:
        raise LimitExceededError(path, f"IFD {index}: one {'tile' if page.is_tiled else 'strip'} of {width}×{height} "
                                       f"px ({nbytes:,} bytes) exceeds the limits",
                                 "raise ReadLimits.max_image_pixels / max_decoded_bytes if the file is trusted")


class TileCodestreamCheck:
    """Before tiffslide reads a region: every JPEG / JPEG 2000 tile it touches declares the tile's size."""

    def __init__(self, path: Path, tif: Any, level_dimensions: tuple[tuple[int, int], ...],
                 pages: list[Any | None] | None = None) -> None:
        self._path = path
        self._handle = path.open("rb")  # its own handle: tiffslide's reads may run on other threads
        self._lock = threading.Lock()
        if pages is None:
            levels = tif.series[0].levels if tif.series else []
            by_size = {(int(lv.keyframe.imagewidth), int(lv.keyframe.imagelength)): lv.keyframe for lv in levels}
            pages = [by_size.get(tuple(dims)) for dims in level_dimensions]
        self._pages = pages
        self._checked: set[tuple[int, int]] = set()

    def check_region(self, level: int, x: int, y: int, width: int, height: int) -> None:
        page = self._pages[level] if level < len(self._pages) else None
        if page is None:
            raise CorruptFileError(self._path, f"level {level} matches no TIFF page", "re-export the slide")
        compression = int(page.compression)
        if compression not in _JPEG_COMPRESSIONS | _J2K_COMPRESSIONS or not page.is_tiled:
            return  # other codecs decode into a buffer of the tile's size
        for tile in self._tiles(page, x, y, width, height):
            if (level, tile) not in self._checked:
                self._check_tile(page, tile, compression)
                self._checked.add((level, tile))

    @staticmethod
    def _tiles(page: Any, x: int, y: int, width: int, height: int) -> list[int]:
        tw, th = int(page.tilewidth), int(page.tilelength)
        across, down = -(-int(page.imagewidth) // tw), -(-int(page.imagelength) // th)
        columns = range(max(x, 0) // tw, min(-(-(x + width) // tw), across))
        rows = range(max(y, 0) // th, min(-(-(y + height) // th), down))
        return [r * across + c for r in rows for c in columns]

    def _check_tile(self, page: Any, tile: int, compression: int) -> None:
        offset, count = int(page.dataoffsets[tile]), int(page.databytecounts[tile])
        if count <= 0:
            return  # sparse tile: nothing is decoded
        with self._lock:
            self._handle.seek(offset)
            head = self._handle.read(min(count, HEAD_BYTES))
        size = jpeg_size(head) if compression in _JPEG_COMPRESSIONS else j2k_size(head)
        expected = (int(page.tilelength), int(page.tilewidth))
        if size is None or size[:2] != expected:
            declared = f"declares {size[0]}×{size[1]}" if size else "has no readable header"
            raise CorruptFileError(self._path, f"cannot decode tile {tile}: its codestream {declared}, the tile grid "
                                               f"says {expected[0]}×{expected[1]}", "re-export the slide")

    def close(self) -> None:
        self._handle.close()
