"""Whole-slide image reading: OpenSlide first, tiffslide as fallback, large JPEG/PNG as one-level slides.

Only this module opens slide files. Everything it returns is numpy (H×W×3 uint8, alpha composited on white)
or plain JSON-ready values. Slides are untrusted bytes: the TIFF structure is checked (tile offsets inside
the file) before a decoder sees it, every region read is bounded by `ReadLimits.max_region_pixels`, and
decoder failures surface as the typed errors of `breastgpt.io.errors`.
"""

from __future__ import annotations

import hashlib
import math
import re
from pathlib import Path
from typing import Any

import numpy as np

from breastgpt.io.errors import (CorruptFileError, LimitExceededError, MedicalFileError, MissingMetadataError,
                                 UnsupportedFormatError)
from breastgpt.io.files import check_regular_file, read_head
from breastgpt.io.limits import DEFAULT_LIMITS, ReadLimits, check_decoded_bytes
from breastgpt.io.raster import pillow_pixel_limit
from breastgpt.io.wsi_checks import TileCodestreamCheck, check_tiff_structure
from breastgpt.io.wsi_tiles import PAGE_LAYOUTS, StoredTileReader

READERS = ("openslide", "tiffslide")
# µm/px outside this range is a wrong tag (72-dpi defaults from image editors give ~353 µm/px), not a slide.
PLAUSIBLE_MPP = (0.05, 20.0)
_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
_VENDOR_FORMAT = {"aperio": "svs", "generic-tiff": "tiff", "hamamatsu": "ndpi", "leica": "scn", "mirax": "mrxs",
                  "philips": "tiff", "trestle": "tif", "ventana": "bif", "dicom": "dicom", "synthetic": "synthetic"}
# OpenSlide formats whose file is an index naming other files (Hamamatsu VMS lists JPEG paths): never opened.
_INDEX_FORMATS = {"hamamatsu", "mirax"}


def open_slide(path: str | Path, *, mpp: float | None = None, limits: ReadLimits = DEFAULT_LIMITS,
               readers: tuple[str, ...] = READERS, require_mpp: bool = True,
               stored_tiles: bool = True) -> SlideReader:
    """Open a whole-slide image and resolve its µm/px.

    `mpp` (µm per level-0 pixel) overrides the file's own value; it is required for JPEG/PNG slides, which
    carry none. `readers` orders the pyramidal backends tried (OpenSlide, then tiffslide). With
    `require_mpp=False` a slide without µm/px opens with `mpp=None` (for description only; tiling needs it).
    With `stored_tiles` (default), generic-TIFF and Aperio levels that OpenSlide opened are read by decoding the
    file's own tiles (`breastgpt.io.wsi_tiles`, the same pixels without OpenSlide's ARGB round trip);
    `stored_tiles=False` reads every pixel through the backend.
    Raises `UnsupportedFormatError`, `CorruptFileError`, `LimitExceededError` or `MissingMetadataError`.
    """
    path = Path(path)
    kind = _sniff(path, limits)
    if mpp is not None:
        _check_user_mpp(path, mpp)
    if kind in ("jpeg", "png"):
        if mpp is None:
            raise MissingMetadataError(path, f"a {kind.upper()} image carries no µm/px",
                                       "pass --mpp (µm per pixel of the scan) to use it as a one-level slide")
        backend = _RasterBackend(path, kind, limits)
        return SlideReader(path, backend, "raster", _pil_version(), kind, (mpp, mpp), "user", limits)
    sparse = check_tiff_structure(path, limits) if kind == "tiff" else 0
    backend, name, version = _open_pyramidal(path, kind, readers)
    file_mpp = _mpp_from_properties(backend.properties)
    resolved, source = ((mpp, mpp), "user") if mpp is not None else (file_mpp, "file")
    if resolved is None and require_mpp:
        backend.close()
        raise MissingMetadataError(path, "the slide declares no µm/px (no openslide/aperio MPP, no resolution tags)",
                                   "pass --mpp with the scanner's µm per pixel at level 0")
    vendor = _vendor_of(backend.properties, name)
    fmt = _VENDOR_FORMAT.get(str(vendor), kind)
    reader = SlideReader(path, backend, name, version, fmt, resolved, source if resolved else "none", limits,
                         file_mpp=file_mpp, empty_tiles=sparse)
    if stored_tiles and name == "openslide" and kind == "tiff" and vendor in PAGE_LAYOUTS:
        reader.attach_stored_tiles()
    return reader


class SlideReader:
    """One open slide: geometry, µm/px, bounded region reads. Use as a context manager or call `close()`."""

    def __init__(self, path: Path, backend: Any, reader: str, reader_version: str, fmt: str,
                 mpp: tuple[float, float] | None, mpp_source: str, limits: ReadLimits,
                 file_mpp: tuple[float, float] | None = None, empty_tiles: int = 0) -> None:
        self.path = path
        self.reader = reader
        self.reader_version = reader_version
        self.format = fmt
        self.mpp = mpp
        self.mpp_source = mpp_source
        self.file_mpp = file_mpp
        self.limits = limits
        self.empty_tiles = empty_tiles  # sparse tiles (offset and size 0) in the checked IFDs: decoded as background
        self._backend = backend
        self._stored: StoredTileReader | None = None
        try:
            self._read_geometry(backend, reader)
        except Exception as exc:  # backends raise assorted types for a damaged level table
            backend.close()
            raise CorruptFileError(path, f"the slide's level table is unreadable ({type(exc).__name__}: {exc})",
                                   "re-export or re-download it") from exc

    def _read_geometry(self, backend: Any, reader: str) -> None:
        self.dimensions: tuple[int, int] = tuple(int(v) for v in backend.dimensions)  # type: ignore[assignment]
        self.level_count: int = int(backend.level_count)
        self.level_dimensions: tuple[tuple[int, int], ...] = tuple(
            (int(w), int(h)) for w, h in backend.level_dimensions)
        self.level_downsamples: tuple[float, ...] = tuple(float(d) for d in backend.level_downsamples)
        if (self.level_count < 1 or len(self.level_dimensions) != self.level_count
                or min(min(d) for d in self.level_dimensions) <= 0
                or not all(math.isfinite(d) and d >= 1 for d in self.level_downsamples)):
            raise ValueError(f"{self.level_count} levels {self.level_dimensions[:4]}, downsamples "
                             f"{self.level_downsamples[:4]}")
        props = backend.properties
        self.vendor: str | None = _vendor_of(props, reader)
        self.objective_power: float | None = _objective_power(props)
        self.associated_images: tuple[str, ...] = tuple(sorted(_associated_names(backend)))

    # ------------------------------------------------------------------ lifecycle
    def __enter__(self) -> SlideReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def attach_stored_tiles(self) -> None:
        """Read the levels `StoredTileReader` decodes exactly from the file's own tiles; others stay with the backend."""
        try:
            stored = StoredTileReader(self.path, self.level_dimensions, self.level_downsamples)
        except MedicalFileError:
            self.close()
            raise
        except Exception as exc:  # tifffile raises several types for a damaged IFD chain
            self.close()
            raise CorruptFileError(self.path, f"cannot index the slide's stored tiles ({type(exc).__name__}: {exc})",
                                   "re-export or re-download it") from exc
        if stored.levels:
            self._stored = stored
        else:
            stored.close()

    @property
    def stored_tile_levels(self) -> tuple[int, ...]:
        """Levels whose pixels are decoded from the file's own tiles rather than by the backend."""
        return self._stored.levels if self._stored is not None else ()

    def close(self) -> None:
        if self._stored is not None:
            self._stored.close()
            self._stored = None
        if self._backend is not None:
            self._backend.close()
            self._backend = None

    # ------------------------------------------------------------------ geometry
    def level_mpp(self, level: int) -> tuple[float, float] | None:
        """µm/px of a pyramid level (level-0 µm/px times the level's downsample)."""
        if self.mpp is None:
            return None
        ds = self.level_downsamples[level]
        return self.mpp[0] * ds, self.mpp[1] * ds

    def best_level_for_downsample(self, downsample: float) -> int:
        """The finest level whose downsample does not exceed `downsample` (with a 1 % tolerance)."""
        best = 0
        for level, ds in enumerate(self.level_downsamples):
            if ds <= downsample * 1.01:
                best = level
        return best

    # ------------------------------------------------------------------ pixels
    def read_region(self, location_level0: tuple[int, int], level: int, size: tuple[int, int],
                    out: np.ndarray | None = None) -> np.ndarray:
        """Pixels of `size` (w, h) at `level`, top-left at level-0 `location_level0`; H×W×3 uint8, written into
        `out` when given (an H×W×3 uint8 array, e.g. one slot of a batch).

        Parts outside the slide are white. Raises `LimitExceededError` above `ReadLimits.max_region_pixels`
        and `CorruptFileError` when the decoder fails.
        """
        backend = self._require_open()
        w, h = int(size[0]), int(size[1])
        if not 0 <= level < self.level_count:
            raise ValueError(f"level {level} out of range 0..{self.level_count - 1} for {self.path}")
        if w <= 0 or h <= 0:
            raise ValueError(f"region size must be positive, got {size}")
        if w * h > self.limits.max_region_pixels:
            raise LimitExceededError(self.path, f"a {w}×{h} region exceeds {self.limits.max_region_pixels} pixels",
                                     "read smaller regions or raise ReadLimits.max_region_pixels")
        if out is None:
            out = np.empty((h, w, 3), dtype=np.uint8)
        elif out.shape != (h, w, 3) or out.dtype != np.uint8:
            raise ValueError(f"out must be a {h}×{w}×3 uint8 array, got {out.shape} {out.dtype}")
        ds = self.level_downsamples[level]
        lw, lh = self.level_dimensions[level]
        lx, ly = int(math.floor(location_level0[0] / ds)), int(math.floor(location_level0[1] / ds))
        x0, y0, x1, y1 = max(lx, 0), max(ly, 0), min(lx + w, lw), min(ly + h, lh)
        if (x0, y0, x1, y1) == (lx, ly, lx + w, ly + h):
            self._decode(backend, (int(location_level0[0]), int(location_level0[1])), level, (w, h), out)
            return out
        out[...] = 255
        if x1 <= x0 or y1 <= y0:
            return out
        inner_loc = (int(location_level0[0]) + int(round((x0 - lx) * ds)),
                     int(location_level0[1]) + int(round((y0 - ly) * ds)))
        self._decode(backend, inner_loc, level, (x1 - x0, y1 - y0), out[y0 - ly:y1 - ly, x0 - lx:x1 - lx])
        return out

    def read_regions(self, locations_level0: np.ndarray, level: int, size: tuple[int, int],
                     out: np.ndarray | None = None) -> np.ndarray:
        """`read_region` for each of `locations_level0` ((B, 2) level-0 corners) into one (B, h, w, 3) uint8 array."""
        locations = np.asarray(locations_level0).reshape(-1, 2)
        w, h = int(size[0]), int(size[1])
        if out is None:
            out = np.empty((len(locations), h, w, 3), dtype=np.uint8)
        for i, (x, y) in enumerate(locations):
            self.read_region((int(x), int(y)), level, (w, h), out=out[i])
        return out

    def _decode(self, backend: Any, location: tuple[int, int], level: int, size: tuple[int, int],
                out: np.ndarray) -> None:
        stored = self._stored
        if stored is not None and stored.covers(level, location):
            ds = self.level_downsamples[level]
            stored.read(level, int(math.floor(location[0] / ds)), int(math.floor(location[1] / ds)),
                        size[0], size[1], out)
            return
        try:
            region = backend.read_region(location, level, size)
        except MedicalFileError:
            raise
        except Exception as exc:  # decoders raise many types for bad bytes; all mean the same to the caller
            raise CorruptFileError(self.path, f"cannot decode region {size} at {location}, level {level} "
                                              f"({type(exc).__name__}: {exc})",
                                   "re-export or re-scan the slide; it will be quarantined") from exc
        array = np.asarray(region)
        if array.ndim == 3 and array.shape[2] == 4 and array[..., 3].min() == 255:
            out[...] = array[: size[1], : size[0], :3]  # opaque RGBA: one copy straight into place
        else:
            out[...] = _to_rgb(array)[: size[1], : size[0]]

    def read_downscaled(self, downsample: float) -> np.ndarray:
        """The whole slide at 1/`downsample` of level 0, read in strips so memory stays bounded."""
        if downsample < 1:
            raise ValueError("downsample must be ≥ 1")
        from PIL import Image

        level = self.best_level_for_downsample(downsample)
        lds = self.level_downsamples[level]
        lw, lh = self.level_dimensions[level]
        out_w = max(1, int(round(self.dimensions[0] / downsample)))
        out_h = max(1, int(round(self.dimensions[1] / downsample)))
        factor = lh / out_h
        rows_per_strip = max(1, int(self.limits.max_region_pixels // max(lw, 1) / max(factor, 1.0)) - 2)
        strips = []
        for r0 in range(0, out_h, rows_per_strip):
            r1 = min(out_h, r0 + rows_per_strip)
            sy0, sy1 = int(math.floor(r0 * factor)), min(lh, max(int(math.ceil(r1 * factor)), int(r0 * factor) + 1))
            strip = self.read_region((0, int(round(sy0 * lds))), level, (lw, sy1 - sy0))
            resized = Image.fromarray(strip).resize((out_w, r1 - r0), Image.Resampling.BOX)
            strips.append(np.asarray(resized))
        return np.concatenate(strips, axis=0)

    def thumbnail(self, max_side: int) -> np.ndarray:
        """The whole slide scaled so its longer side is at most `max_side` pixels."""
        if max_side <= 0:
            raise ValueError("max_side must be positive")
        return self.read_downscaled(max(1.0, max(self.dimensions) / max_side))

    # ------------------------------------------------------------------ description
    def describe(self) -> dict[str, Any]:
        """JSON-ready geometry and provenance. No properties are copied: labels, barcodes and scanner user names
        live there, and the label/macro images are listed by name only, never their contents."""
        return {
            "kind": "slide",
            "format": self.format,
            "reader": self.reader,
            "reader_version": self.reader_version,
            "vendor": self.vendor,
            "dimensions": list(self.dimensions),
            "levels": [{"dimensions": list(d), "downsample": ds}
                       for d, ds in zip(self.level_dimensions, self.level_downsamples, strict=True)],
            "mpp": list(self.mpp) if self.mpp else None,
            "mpp_source": self.mpp_source,
            "objective_power": self.objective_power,
            "associated_images": list(self.associated_images),
            "empty_tiles": self.empty_tiles,
            "stored_tile_levels": list(self.stored_tile_levels),
            "stored_tile_decoder": self._stored.decoder if self._stored is not None else None,
        }

    def _require_open(self) -> Any:
        if self._backend is None:
            raise ValueError(f"{self.path}: slide is closed")
        return self._backend


# ---------------------------------------------------------------------------------------------- opening

def _sniff(path: Path, limits: ReadLimits) -> str:
    # Slides are read region by region, so the whole-file size limit does not apply to them.
    check_regular_file(path, ReadLimits(max_file_bytes=2**62, max_decoded_bytes=limits.max_decoded_bytes))
    head = read_head(path, 132)
    if head[128:132] == b"DICM":
        return "dicom"  # checked first: a DICOM preamble may itself look like a TIFF header
    if head[:4] in _TIFF_MAGIC:
        return "tiff"
    if head[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if head[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    return "other"


def _check_user_mpp(path: Path, mpp: float) -> None:
    if not (isinstance(mpp, (int, float)) and PLAUSIBLE_MPP[0] <= mpp <= PLAUSIBLE_MPP[1]):
        raise ValueError(f"{path}: --mpp {mpp!r} is not a plausible µm/px (expected {PLAUSIBLE_MPP[0]}–"
                         f"{PLAUSIBLE_MPP[1]}; 0.25 ≈ 40×, 0.5 ≈ 20×)")


def _open_pyramidal(path: Path, kind: str, readers: tuple[str, ...]) -> tuple[Any, str, str]:
    failures: list[str] = []
    corrupt = False
    for name in readers:
        if name not in READERS:
            raise ValueError(f"unknown slide reader {name!r}; choose from {READERS}")
        if name == "tiffslide" and kind != "tiff":
            continue
        try:
            return _open_with(name, path)
        except _IndexFormat as exc:
            raise UnsupportedFormatError(path, f"a {exc} index file names other files by path; files named inside a "
                                               "file are never read", "convert the slide to a pyramidal TIFF") from exc
        except _Unsupported as exc:
            failures.append(f"{name}: {exc}")
        except Exception as exc:  # backend-specific error types
            corrupt = True
            failures.append(f"{name}: {type(exc).__name__}: {exc}")
    detail = "; ".join(failures) or "no reader accepts this file type"
    if corrupt and kind == "tiff":
        raise CorruptFileError(path, f"the slide cannot be opened ({detail})", "re-export or re-download it")
    raise UnsupportedFormatError(path, f"not a whole-slide format OpenSlide or tiffslide can read ({detail})",
                                 "convert it to a tiled pyramidal TIFF, or pass a JPEG/PNG with --mpp")


class _Unsupported(Exception):
    pass


class _IndexFormat(Exception):
    """An OpenSlide format whose file lists other files by path."""


def _is_tiff(path: Path) -> bool:
    return read_head(path, 4) in _TIFF_MAGIC


def _open_with(name: str, path: Path) -> tuple[Any, str, str]:
    if name == "openslide":
        import openslide

        vendor = openslide.OpenSlide.detect_format(str(path))
        if vendor is None:
            raise _Unsupported("format not recognised")
        if vendor in _INDEX_FORMATS and not _is_tiff(path):
            raise _IndexFormat(vendor)
        try:
            backend = openslide.OpenSlide(str(path))
        except openslide.OpenSlideUnsupportedFormatError as exc:
            raise _Unsupported(str(exc)) from exc
        return backend, "openslide", f"{openslide.__version__} (library {openslide.__library_version__})"
    import tiffslide

    return _TiffSlideBackend(path, tiffslide.TiffSlide(str(path))), "tiffslide", tiffslide.__version__


class _TiffSlideBackend:
    """tiffslide with array output, so the RGB path skips a PIL round-trip."""

    def __init__(self, path: Path, slide: Any) -> None:
        self._slide = slide
        self.dimensions = slide.dimensions
        self.level_count = slide.level_count
        self.level_dimensions = slide.level_dimensions
        self.level_downsamples = slide.level_downsamples
        self.properties = slide.properties
        self._tiles = TileCodestreamCheck(path, slide.ts_tifffile, tuple(slide.level_dimensions))

    @property
    def associated_images(self) -> Any:
        return self._slide.associated_images

    def read_region(self, location: tuple[int, int], level: int, size: tuple[int, int]) -> np.ndarray:
        ds = self.level_downsamples[level]
        x, y = int(math.floor(location[0] / ds)), int(math.floor(location[1] / ds))
        self._tiles.check_region(level, x, y, size[0], size[1])
        return self._slide.read_region(location, level, size, as_array=True)

    def close(self) -> None:
        self._tiles.close()
        self._slide.close()


class _RasterBackend:
    """A JPEG/PNG decoded once, on first read, after its declared size passed the pixel limit."""

    level_count = 1
    level_downsamples = (1.0,)

    def __init__(self, path: Path, kind: str, limits: ReadLimits) -> None:
        self._path = path
        self._limits = limits
        self._pixels: np.ndarray | None = None
        from PIL import Image

        try:
            with pillow_pixel_limit(limits.max_image_pixels), Image.open(path) as image:
                width, height = image.size
        except Exception as exc:
            if isinstance(exc, (Image.DecompressionBombError, Image.DecompressionBombWarning)):
                raise LimitExceededError(path, f"image declares too many pixels ({exc})",
                                         "raise ReadLimits.max_image_pixels if the file is trusted") from exc
            raise CorruptFileError(path, f"unreadable {kind.upper()} header ({type(exc).__name__}: {exc})",
                                   "re-export the image") from exc
        if width * height > limits.max_image_pixels:
            raise LimitExceededError(path, f"{width}×{height} image exceeds {limits.max_image_pixels} pixels",
                                     "raise ReadLimits.max_image_pixels if the file is trusted")
        check_decoded_bytes(path, width * height * 4, f"a {width}×{height} image decoded as RGBA", limits)
        self.dimensions = (width, height)
        self.level_dimensions = ((width, height),)
        self.properties: dict[str, str] = {}
        self.associated_images: dict[str, Any] = {}

    def read_region(self, location: tuple[int, int], level: int, size: tuple[int, int]) -> np.ndarray:
        pixels = self._load()
        x, y = location
        return pixels[y:y + size[1], x:x + size[0]]

    def _load(self) -> np.ndarray:
        if self._pixels is None:
            from PIL import Image

            with pillow_pixel_limit(self._limits.max_image_pixels), Image.open(self._path) as image:
                image.load()
                self._pixels = _to_rgb(np.asarray(image.convert("RGBA" if "A" in image.mode else "RGB")))
        return self._pixels

    def close(self) -> None:
        self._pixels = None


def _pil_version() -> str:
    import PIL

    return f"pillow {PIL.__version__}"


# ---------------------------------------------------------------------------------------------- metadata

def _to_rgb(array: np.ndarray) -> np.ndarray:
    """RGBA (straight alpha) → RGB on white; grey → RGB."""
    if array.ndim == 2:
        return np.repeat(array[..., None], 3, axis=2).astype(np.uint8)
    if array.shape[2] == 4:
        if array[..., 3].min() == 255:  # the common, fully opaque case: no arithmetic needed
            return np.ascontiguousarray(array[..., :3])
        rgb = array[..., :3].astype(np.uint32)
        alpha = array[..., 3:4].astype(np.uint32)
        return ((rgb * alpha + 255 * (255 - alpha) + 127) // 255).astype(np.uint8)
    return np.ascontiguousarray(array[..., :3], dtype=np.uint8)


def _float_or_none(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) and number > 0 else None


def _plausible(mpp: float | None) -> bool:
    return mpp is not None and PLAUSIBLE_MPP[0] <= mpp <= PLAUSIBLE_MPP[1]


def _mpp_from_properties(props: Any) -> tuple[float, float] | None:
    """µm/px from, in order: the backend's normalised mpp, Aperio `MPP =`, TIFF resolution tags."""
    for prefix in ("openslide", "tiffslide"):
        x, y = _float_or_none(props.get(f"{prefix}.mpp-x")), _float_or_none(props.get(f"{prefix}.mpp-y"))
        if _plausible(x):
            return (x, y if _plausible(y) else x)  # type: ignore[return-value]
    description = str(props.get("tiff.ImageDescription", "") or props.get("openslide.comment", "") or "")
    match = re.search(r"\|\s*MPP\s*=\s*([0-9.eE+-]+)", description)
    if match and _plausible(_float_or_none(match.group(1))):
        value = float(match.group(1))
        return value, value
    return _mpp_from_resolution(props)


def _mpp_from_resolution(props: Any) -> tuple[float, float] | None:
    unit = str(props.get("tiff.ResolutionUnit", "")).lower()
    scale = {"centimeter": 10_000.0, "inch": 25_400.0}.get(unit)
    x = _float_or_none(props.get("tiff.XResolution"))
    y = _float_or_none(props.get("tiff.YResolution"))
    if scale is None or x is None:
        return None
    mx, my = scale / x, scale / (y or x)
    return (mx, my) if _plausible(mx) and _plausible(my) else None


def _objective_power(props: Any) -> float | None:
    for key in ("openslide.objective-power", "tiffslide.objective-power", "aperio.AppMag"):
        value = _float_or_none(props.get(key))
        if value is not None:
            return value
    return None


def _vendor_of(props: Any, reader: str) -> str | None:
    for key in ("openslide.vendor", "tiffslide.vendor"):
        if props.get(key):
            return str(props.get(key))
    return "raster" if reader == "raster" else None


def _associated_names(backend: Any) -> list[str]:
    try:
        return [str(name) for name in backend.associated_images.keys()]
    except Exception:  # a damaged associated image must not stop the main image from being read
        return []


def slide_fingerprint(path: str | Path, *, full_hash_max_bytes: int = 2 * 1024**3,
                      chunk: int = 16 * 1024**2) -> dict[str, Any]:
    """Identify a slide's bytes: sha256 of the whole file up to `full_hash_max_bytes`; above it, sha256 of
    the size plus the first, middle and last `chunk` bytes (`method: "partial-sha256"`), because hashing a
    multi-gigabyte slide on every resume costs minutes of I/O. The partial hash changes with any edit to
    the header, tile table or file length, which is what re-extraction must notice."""
    path = Path(path)
    size = path.stat().st_size
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        if size <= full_hash_max_bytes:
            for block in iter(lambda: handle.read(1024 * 1024), b""):
                digest.update(block)
            return {"method": "sha256", "sha256": digest.hexdigest(), "size": size}
        digest.update(str(size).encode())
        for start in (0, max(0, size // 2 - chunk // 2), max(0, size - chunk)):
            handle.seek(start)
            digest.update(handle.read(chunk))
    return {"method": "partial-sha256", "sha256": digest.hexdigest(), "size": size}
