"""Regions of a tiled pyramidal TIFF read by decoding the file's own stored tiles (tifffile + imagecodecs).

OpenSlide reads a generic-TIFF or Aperio level one stored tile at a time into premultiplied ARGB, which is then
un-premultiplied, converted to RGBA and copied to RGB. For those two layouts a pyramid level *is* a TIFF page,
so the same pixels come from decoding the page's tiles directly into RGB (libjpeg-turbo in both cases; the
tests compare every pixel with OpenSlide's). Levels this module cannot reproduce exactly — JPEG 2000 (another
decoder), planar or non-8-bit samples, stripped pages, non-integer level positions — are left to OpenSlide
(`covers` says which).

Every stored tile's codestream header is checked against the tile grid before it is decoded
(`TileCodestreamCheck`), as for tiffslide. Decoded tiles are kept in a small byte-bounded cache, because tile
grids at a physical size (513 px steps on 240 px stored tiles) make neighbouring reads share stored tiles.
"""

from __future__ import annotations

import math
import os
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from breastgpt.io.errors import CorruptFileError
from breastgpt.io.wsi_checks import TileCodestreamCheck

# OpenSlide layouts whose levels are plain tiled TIFF pages (no overlaps, offsets or stitching).
PAGE_LAYOUTS = ("generic-tiff", "aperio")
# Compressions decoded here: none, LZW, deflate (both tags), JPEG. JPEG 2000 is not: OpenSlide and imagecodecs
# disagree by a few grey levels on it.
DECODED_COMPRESSIONS = (1, 5, 8, 32946, 7)
CACHE_BYTES = 48 * 1024**2


class StoredTileReader:
    """Pixel access to the levels of one tiled TIFF whose pages can be decoded exactly; see `covers`."""

    def __init__(self, path: Path, level_dimensions: tuple[tuple[int, int], ...],
                 level_downsamples: tuple[float, ...], cache_bytes: int = CACHE_BYTES) -> None:
        import tifffile

        self._path = path
        self._tif = tifffile.TiffFile(path)
        try:
            self._pages = _pages_by_level(self._tif, level_dimensions)
            self._check = TileCodestreamCheck(path, self._tif, level_dimensions, self._pages)
        except Exception:
            self._tif.close()
            raise
        self._fd = os.open(path, os.O_RDONLY)
        self._downsamples = level_downsamples
        self._cache: OrderedDict[tuple[int, int], np.ndarray] = OrderedDict()
        self._cache_used = 0
        self._cache_bytes = cache_bytes
        self._colorspaces: dict[int, tuple[Any, Any]] = {}
        self.decoder = _decoder_version()

    @property
    def levels(self) -> tuple[int, ...]:
        """Levels read here (the others go to OpenSlide)."""
        return tuple(level for level, page in enumerate(self._pages) if page is not None)

    def covers(self, level: int, location_level0: tuple[int, int]) -> bool:
        """Whether a read at this level and level-0 position lands on whole level pixels of a decodable page."""
        if level >= len(self._pages) or self._pages[level] is None:
            return False
        ds = self._downsamples[level]
        return level == 0 or all(math.floor(v / ds) * ds == v for v in location_level0)

    def read(self, level: int, x: int, y: int, width: int, height: int, out: np.ndarray | None = None) -> np.ndarray:
        """Level pixels [y, y+height) × [x, x+width), all inside the level; H×W×3 uint8 (written into `out`)."""
        page = self._pages[level]
        assert page is not None
        if out is None:
            out = np.empty((height, width, 3), dtype=np.uint8)
        self._check.check_region(level, x, y, width, height)
        tw, th = int(page.tilewidth), int(page.tilelength)
        across = -(-int(page.imagewidth) // tw)
        if (x % tw, y % th, width, height) == (0, 0, tw, th) and out.flags.c_contiguous:
            # A read that is exactly one stored tile (grids aligned with the file's tiles) decodes in place:
            # no intermediate array, no cache entry (aligned grids never revisit a tile).
            index = (y // th) * across + x // tw
            if (level, index) not in self._cache:
                self._decode(page, index, out)
                return out
        for row in range(y // th, (y + height - 1) // th + 1):
            for col in range(x // tw, (x + width - 1) // tw + 1):
                tile = self._tile(level, page, row * across + col)
                ty0, tx0 = row * th, col * tw
                sy0, sy1 = max(y, ty0), min(y + height, ty0 + th)
                sx0, sx1 = max(x, tx0), min(x + width, tx0 + tw)
                out[sy0 - y:sy1 - y, sx0 - x:sx1 - x] = tile[sy0 - ty0:sy1 - ty0, sx0 - tx0:sx1 - tx0]
        return out

    def _tile(self, level: int, page: Any, index: int) -> np.ndarray:
        key = (level, index)
        cached = self._cache.get(key)
        if cached is not None:
            self._cache.move_to_end(key)
            return cached
        tile = self._decode(page, index, np.empty((int(page.tilelength), int(page.tilewidth), 3), dtype=np.uint8))
        if tile.nbytes <= self._cache_bytes:
            self._cache[key] = tile
            self._cache_used += tile.nbytes
            while self._cache_used > self._cache_bytes:
                _, dropped = self._cache.popitem(last=False)
                self._cache_used -= dropped.nbytes
        return tile

    def _decode(self, page: Any, index: int, out: np.ndarray) -> np.ndarray:
        """Decode stored tile `index` of `page` into `out` (tile height × width × 3 uint8, C-contiguous)."""
        th, tw = int(page.tilelength), int(page.tilewidth)
        offset, count = int(page.dataoffsets[index]), int(page.databytecounts[index])
        if count <= 0:  # sparse tile: OpenSlide paints it transparent, which is white after compositing
            out[...] = 255
            return out
        data = os.pread(self._fd, count, offset)
        try:
            if int(page.compression) == 7:
                import imagecodecs

                colorspace, outcolorspace = self._jpeg_colorspace(page)
                imagecodecs.jpeg_decode(data, tables=page.jpegtables, colorspace=colorspace,
                                        outcolorspace=outcolorspace, shape=(th, tw), out=out)
                return out
            segment, _, _ = page.decode(data, index, jpegtables=page.jpegtables)
        except Exception as exc:  # codecs raise many types for bad bytes; all mean the same to the caller
            raise CorruptFileError(self._path, f"cannot decode stored tile {index} ({type(exc).__name__}: {exc})",
                                   "re-export or re-scan the slide; it will be quarantined") from exc
        pixels = np.asarray(segment)
        if pixels.shape != (1, th, tw, 3) or pixels.dtype != np.uint8:
            raise CorruptFileError(self._path, f"stored tile {index} decoded to {pixels.shape} {pixels.dtype}, "
                                               f"expected (1, {th}, {tw}, 3) uint8", "re-export the slide")
        out[...] = pixels[0]
        return out

    def _jpeg_colorspace(self, page: Any) -> tuple[Any, Any]:
        """tifffile's JPEG colour-space choice for this page (what its own decoder passes to imagecodecs)."""
        key = id(page)
        if key not in self._colorspaces:
            from tifffile.tifffile import jpeg_decode_colorspace

            self._colorspaces[key] = jpeg_decode_colorspace(page.photometric, page.planarconfig,
                                                                     page.extrasamples, page.is_jfif)
        return self._colorspaces[key]

    def close(self) -> None:
        self._cache.clear()
        self._check.close()
        self._tif.close()
        os.close(self._fd)


def _pages_by_level(tif: Any, level_dimensions: tuple[tuple[int, int], ...]) -> list[Any | None]:
    """The decodable tiled page of each level, matched by size (None: read that level with OpenSlide)."""
    by_size: dict[tuple[int, int], list[Any]] = {}
    for page in tif.pages:
        by_size.setdefault((int(page.imagewidth), int(page.imagelength)), []).append(page)
    pages: list[Any | None] = []
    for dims in level_dimensions:
        found = by_size.get(tuple(dims), [])
        pages.append(found[0] if len(found) == 1 and _decodable(found[0]) else None)
    return pages


def _decodable(page: Any) -> bool:
    compression = int(page.compression)
    photometric = int(page.photometric)
    return (bool(page.is_tiled) and compression in DECODED_COMPRESSIONS and int(page.samplesperpixel) == 3
            and int(page.bitspersample) == 8 and int(page.planarconfig) == 1 and int(page.sampleformat) == 1
            and int(page.imagedepth) == 1 and int(page.tiledepth) == 1
            and (photometric == 2 or (photometric == 6 and compression == 7)))


def _decoder_version() -> str:
    import imagecodecs
    import tifffile

    return f"tifffile {tifffile.__version__}, imagecodecs {imagecodecs.__version__}"
