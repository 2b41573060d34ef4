"""Tile grids at a physical resolution, and batched tile reading in worker processes.

A tile is `tile_size` pixels at `target_mpp` µm/px, i.e. `tile_size × target_mpp` µm on a side whatever the
scanner. Its level-0 footprint comes from the slide's own µm/px; pixels are read from the coarsest pyramid
level that is still at least as fine as the target and resized to `tile_size` when that level is not an
exact match. Coordinates are level-0 top-left corners, (N, 2) int64, in row-major grid order.
"""

from __future__ import annotations

import contextlib
import math
import multiprocessing
import os
import tempfile
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from breastgpt.config import ConfigError, StrictConfig
from breastgpt.io import errors as io_errors
from breastgpt.io.limits import DEFAULT_LIMITS, ReadLimits
from breastgpt.io.wsi import READERS, SlideReader, open_slide
from breastgpt.pathology.tissue import TissueMask, tile_tissue_fraction

# A level within 1 % of the target µm/px is read as is: resampling a 0.499 µm/px scan to 0.5 would blur
# every tile for a 0.2 % size change.
EXACT_TOLERANCE = 0.01


@dataclass(frozen=True)
class TilingConfig(StrictConfig):
    section = "TilingConfig"

    target_mpp: float = 0.5
    tile_size: int = 512
    min_tissue_fraction: float = 0.25

    def validate(self) -> None:
        if not 0.05 <= self.target_mpp <= 20:
            raise ConfigError(f"TilingConfig.target_mpp {self.target_mpp} outside 0.05–20 µm/px")
        if not 16 <= self.tile_size <= 4096:
            raise ConfigError(f"TilingConfig.tile_size {self.tile_size} outside 16–4096 px")
        if not 0 <= self.min_tissue_fraction <= 1:
            raise ConfigError("TilingConfig.min_tissue_fraction must lie in [0, 1]")


@dataclass(frozen=True)
class TileGrid:
    """Tiles kept on one slide and how to read them."""

    coords: np.ndarray  # (N, 2) int64 level-0 top-left (x, y)
    tissue_fraction: np.ndarray  # (N,) float32
    footprint: tuple[int, int]  # level-0 pixels per tile side (x, y)
    level: int
    read_size: tuple[int, int]  # pixels read at `level` before resizing to tile_size
    tile_size: int
    target_mpp: float
    effective_mpp: tuple[float, float]  # µm per output pixel actually delivered
    slide_mpp: tuple[float, float]
    grid_shape: tuple[int, int]  # (columns, rows) of the full grid before tissue filtering

    @property
    def resized(self) -> bool:
        return self.read_size != (self.tile_size, self.tile_size)

    @property
    def tile_um(self) -> tuple[float, float]:
        """Physical side in µm (x, y) of the pixels a tile holds (the grid step is `footprint`)."""
        return self.effective_mpp[0] * self.tile_size, self.effective_mpp[1] * self.tile_size


def plan_level(reader: SlideReader, footprint: tuple[int, int], config: TilingConfig) -> tuple[int, tuple[int, int]]:
    """The coarsest level whose µm/px is ≤ the target (within tolerance), and the read size there."""
    assert reader.mpp is not None
    best = 0
    for level in range(reader.level_count):
        level_mpp = reader.mpp[0] * reader.level_downsamples[level]
        if level_mpp <= config.target_mpp * (1 + EXACT_TOLERANCE):
            best = level
    ds = reader.level_downsamples[best]
    read = (max(1, int(round(footprint[0] / ds))), max(1, int(round(footprint[1] / ds))))
    if abs(read[0] - config.tile_size) <= config.tile_size * EXACT_TOLERANCE and read[0] == read[1]:
        read = (config.tile_size, config.tile_size)
    return best, read


def build_grid(reader: SlideReader, mask: TissueMask | None, config: TilingConfig = TilingConfig()) -> TileGrid:
    """All non-overlapping tiles whose tissue fraction reaches `config.min_tissue_fraction`."""
    if reader.mpp is None:
        raise ValueError(f"{reader.path}: µm/px unknown; open the slide with mpp=")
    mpp_x, mpp_y = reader.mpp
    side_um = config.tile_size * config.target_mpp
    footprint = (max(1, int(round(side_um / mpp_x))), max(1, int(round(side_um / mpp_y))))
    width, height = reader.dimensions
    cols, rows = math.ceil(width / footprint[0]), math.ceil(height / footprint[1])
    ys, xs = np.mgrid[0:rows, 0:cols]
    coords = np.stack([xs.ravel() * footprint[0], ys.ravel() * footprint[1]], axis=1).astype(np.int64)
    if mask is not None:
        fraction = tile_tissue_fraction(mask, coords, footprint)
    else:
        fraction = np.ones(len(coords), dtype=np.float32)
    keep = fraction >= config.min_tissue_fraction
    if config.min_tissue_fraction == 0:
        keep[:] = True
    level, read = plan_level(reader, footprint, config)
    ds = reader.level_downsamples[level]
    effective = (read[0] * ds * mpp_x / config.tile_size, read[1] * ds * mpp_y / config.tile_size)
    return TileGrid(coords[keep], fraction[keep], footprint, level, read, config.tile_size, config.target_mpp,
                    effective, (mpp_x, mpp_y), (cols, rows))


def read_tiles(reader: SlideReader, grid: TileGrid, coords: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Read and (if needed) resize the tiles at `coords`; (B, T, T, 3) uint8, written into `out` when given."""
    from PIL import Image

    if out is None:
        out = np.empty((len(coords), grid.tile_size, grid.tile_size, 3), dtype=np.uint8)
    if not grid.resized:
        return reader.read_regions(coords, grid.level, grid.read_size, out=out)
    for i, (x, y) in enumerate(coords):
        pixels = reader.read_region((int(x), int(y)), grid.level, grid.read_size)
        out[i] = np.asarray(Image.fromarray(pixels).resize((grid.tile_size, grid.tile_size),
                                                           Image.Resampling.BILINEAR))
    return out


# ------------------------------------------------------------------------------------ worker processes

@dataclass(frozen=True)
class SlideSource:
    """What a worker needs to open its own reader (readers are not shared across processes)."""

    path: str
    mpp: float | None = None
    readers: tuple[str, ...] = READERS
    limits: ReadLimits = DEFAULT_LIMITS
    stored_tiles: bool = True  # see `open_slide`

    def open(self) -> SlideReader:
        return open_slide(self.path, mpp=self.mpp, limits=self.limits, readers=self.readers,
                          stored_tiles=self.stored_tiles)


_WORKER: dict[str, Any] = {}


def _worker_init(source: SlideSource, grid: TileGrid, slot_paths: list[str], batch_size: int) -> None:
    _WORKER["source"] = source
    _WORKER["grid"] = grid
    _WORKER["reader"] = None
    _WORKER["slots"] = [_map_slot(path, grid, batch_size) for path in slot_paths]


def _map_slot(path: str, grid: TileGrid, batch_size: int) -> np.ndarray:
    """A batch-shaped view of a slot file mapped shared (the parent creates and removes the files)."""
    shape = (batch_size, grid.tile_size, grid.tile_size, 3)
    return np.memmap(path, dtype=np.uint8, mode="r+", shape=shape)


def _worker_read(coords: np.ndarray, slot: int) -> tuple[str, Any]:
    # Tiles travel through a shared-memory slot, not the result pipe: pickling a batch (25 MB at 32 × 512²) and
    # pushing it through a pipe in 64 kB pieces cost about as much CPU as decoding it. Typed errors carry three
    # constructor arguments, which default exception pickling loses, so they travel as their record.
    try:
        if _WORKER["reader"] is None:
            _WORKER["reader"] = _WORKER["source"].open()
        read_tiles(_WORKER["reader"], _WORKER["grid"], coords, out=_WORKER["slots"][slot][:len(coords)])
        return "ok", len(coords)
    except io_errors.MedicalFileError as exc:
        return "error", exc.as_record() | {"class": type(exc).__name__}


def _raise_record(record: dict[str, str]) -> None:
    cls = getattr(io_errors, record.get("class", ""), io_errors.MedicalFileError)
    if not (isinstance(cls, type) and issubclass(cls, io_errors.MedicalFileError)):
        cls = io_errors.MedicalFileError
    raise cls(record["path"], record["problem"], record.get("hint", ""))


def iter_tile_batches(source: SlideSource, grid: TileGrid, *, batch_size: int = 32, workers: int = 1,
                      prefetch: int = 2, start_method: str | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield (coords, pixels) batches in grid order. `workers=0` reads in this process; otherwise each of
    `workers` processes opens its own reader and up to `workers × prefetch` batches are in flight.

    The default start method is `forkserver` (`spawn` where unavailable): forking a process that already
    holds CUDA or threaded decoder state is unsafe, and the fork server, started clean with the reading
    modules preloaded, makes each worker cheap to start."""
    if batch_size <= 0:
        raise ValueError("batch_size must be positive")
    batches = [grid.coords[i:i + batch_size] for i in range(0, len(grid.coords), batch_size)]
    if not batches:
        return
    if workers <= 0:
        with source.open() as reader:
            for coords in batches:
                yield coords, read_tiles(reader, grid, coords)
        return
    in_flight = max(1, workers * prefetch)
    with _Slots(in_flight, grid, batch_size) as slots:
        context = _context(start_method)
        with ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_worker_init,
                                 initargs=(source, grid, slots.paths, batch_size)) as pool:
            yield from _ordered(pool, batches, slots)


class _Slots:
    """Batch buffers shared with the workers, one per batch in flight: files in /dev/shm (memory) where it exists,
    else in the temporary folder, mapped by the parent and every worker, removed on exit."""

    def __init__(self, count: int, grid: TileGrid, batch_size: int) -> None:
        self._count, self._grid, self._batch_size = count, grid, batch_size
        self.paths: list[str] = []
        self.arrays: list[np.ndarray] = []

    def __enter__(self) -> _Slots:
        folder = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
        nbytes = self._batch_size * self._grid.tile_size * self._grid.tile_size * 3
        try:
            for _ in range(self._count):
                handle, path = tempfile.mkstemp(prefix="breastgpt-tiles-", dir=folder)
                self.paths.append(path)
                os.ftruncate(handle, nbytes)
                os.close(handle)
                self.arrays.append(_map_slot(path, self._grid, self._batch_size))
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.arrays = []
        for path in self.paths:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        self.paths = []


def _context(start_method: str | None) -> multiprocessing.context.BaseContext:
    if start_method is None:
        start_method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
    context = multiprocessing.get_context(start_method)
    if start_method == "forkserver":
        # The decoders too: imported once in the fork server instead of in every worker on its first read.
        context.set_forkserver_preload(["breastgpt.pathology.tiling", "tifffile", "imagecodecs", "openslide"])
    return context


def _ordered(pool: ProcessPoolExecutor, batches: list[np.ndarray],
             slots: _Slots) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    pending: deque[tuple[np.ndarray, int, Future]] = deque()
    free = deque(range(len(slots.arrays)))
    try:
        for coords in batches:
            if not free:
                yield _take(pending, slots, free)
            slot = free.popleft()
            pending.append((coords, slot, pool.submit(_worker_read, coords, slot)))
        while pending:
            yield _take(pending, slots, free)
    finally:
        for _, _, future in pending:
            future.cancel()
        for _, _, future in pending:  # a running read must finish before its slot is unmapped
            if not future.cancelled():
                future.exception()


def _take(pending: deque[tuple[np.ndarray, int, Future]], slots: _Slots,
          free: deque[int]) -> tuple[np.ndarray, np.ndarray]:
    coords, slot, future = pending.popleft()
    status, payload = future.result()
    if status == "error":
        free.append(slot)
        _raise_record(payload)
    pixels = np.array(slots.arrays[slot][:payload])  # the caller may keep batches; the slot is reused
    free.append(slot)
    return coords, pixels


def describe_grid(grid: TileGrid) -> dict[str, Any]:
    """JSON-ready summary of a grid (no coordinates)."""
    return {
        "n_tiles": int(len(grid.coords)),
        "grid_shape": list(grid.grid_shape),
        "footprint_level0": list(grid.footprint),
        "level": grid.level,
        "read_size": list(grid.read_size),
        "tile_size": grid.tile_size,
        "target_mpp": grid.target_mpp,
        "effective_mpp": list(grid.effective_mpp),
        "tile_um": list(grid.tile_um),
        "resized": grid.resized,
    }
