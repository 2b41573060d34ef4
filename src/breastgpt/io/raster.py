"""Ordinary raster images (PNG, JPEG, TIFF, PGM/PPM, BMP, WebP — an allowlist; nothing else is opened).

The declared size is checked against the limits before any pixel is decoded, so a decompression bomb is an
error, never an allocation; a truncated file is an error, never a silently grey-filled image.
"""

from __future__ import annotations

import struct
import threading
import warnings
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, UnidentifiedImageError

from breastgpt.io.errors import CorruptFileError, LimitExceededError, UnsupportedFormatError
from breastgpt.io.files import check_regular_file, read_head
from breastgpt.io.limits import DEFAULT_LIMITS, ReadLimits, check_decoded_bytes

ALLOWED_FORMATS = {"PNG": "png", "JPEG": "jpeg", "TIFF": "tiff", "PPM": "pnm", "BMP": "bmp", "WEBP": "webp"}
_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"II*\x00", b"MM\x00*", b"BM", b"P2", b"P3", b"P5", b"P6", b"RIFF")
# Bytes per pixel of the array each Pillow mode decodes to (Pillow stores "I;16" in 2 bytes, "I"/"F" in 4).
_MODE_BYTES = {"1": 1, "L": 1, "P": 1, "LA": 2, "PA": 2, "I;16": 2, "I;16B": 2, "I;16L": 2, "I;16N": 2, "RGB": 3,
               "YCbCr": 3, "LAB": 3, "HSV": 3, "RGBA": 4, "RGBX": 4, "RGBa": 4, "CMYK": 4, "I": 4, "F": 4}
# What Pillow's plugins raise for bad bytes (struct.error from short chunk headers, zlib.error from PNG data,
# TypeError/KeyError from TIFF IFDs lacking required tags).
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, KeyError, TypeError, zlib.error, struct.error)

ImageFile.LOAD_TRUNCATED_IMAGES = False  # never accept a partially decoded image
_PIL_LOCK = threading.Lock()


@contextmanager
def pillow_pixel_limit(pixels: int) -> Iterator[None]:
    """Pillow's decompression-bomb bound is process-global: set it to `pixels` for one call, and make its
    warning an error, so a codestream declaring more than its container refuses to decode."""
    with _PIL_LOCK:
        previous = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = max(int(pixels), 1)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                yield
        finally:
            Image.MAX_IMAGE_PIXELS = previous


def _open(path: Path, limits: ReadLimits) -> Image.Image:
    check_regular_file(path, limits)
    try:
        with pillow_pixel_limit(limits.max_image_pixels):
            image = Image.open(path, formats=list(ALLOWED_FORMATS))
    except UnidentifiedImageError as exc:
        if read_head(path, 8).startswith(_MAGIC):  # the format is ours; Pillow refused its header
            raise CorruptFileError(path, "malformed image header", "re-export or re-download it") from exc
        raise UnsupportedFormatError(path, "not a PNG, JPEG, TIFF, PGM/PPM, BMP or WebP image",
                                     "convert it, or use the DICOM/volume/slide readers") from exc
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise LimitExceededError(path, f"image declares too many pixels ({exc})", "raise ReadLimits.max_image_pixels") from exc
    except _DECODE_ERRORS as exc:
        raise CorruptFileError(path, f"malformed image header ({type(exc).__name__}: {exc})",
                               "re-export or re-download it") from exc
    try:
        _check_declared_size(path, image, limits)
    except BaseException:
        image.close()
        raise
    return image


def _check_declared_size(path: Path, image: Image.Image, limits: ReadLimits) -> None:
    width, height = image.size
    if width <= 0 or height <= 0:
        raise CorruptFileError(path, f"image declares {width}×{height} px", "re-export or re-download it")
    if width * height > limits.max_image_pixels:
        raise LimitExceededError(path, f"image declares {width}×{height} px, above {limits.max_image_pixels} px",
                                 "raise ReadLimits.max_image_pixels if the file is trusted, or open it as a slide")
    try:
        frames = int(getattr(image, "n_frames", 1))
    except _DECODE_ERRORS as exc:  # counting frames walks the file (TIFF IFDs, GIF blocks)
        raise CorruptFileError(path, f"malformed frame structure ({type(exc).__name__})", "re-export it") from exc
    if frames > limits.max_frames:
        raise LimitExceededError(path, f"image has {frames} frames", "raise ReadLimits.max_frames")
    # The first frame is decoded, then converted to at most 3 bytes per pixel (or kept at its own depth).
    check_decoded_bytes(path, width * height * max(_MODE_BYTES.get(image.mode, 8), 3), f"a {width}×{height} "
                        f"{image.mode} image", limits)


def raster_info(path: str | Path, *, limits: ReadLimits = DEFAULT_LIMITS) -> dict[str, object]:
    """Header-only description: format, size, mode, frames."""
    path = Path(path)
    image = _open(path, limits)
    try:
        return {"kind": "image", "format": ALLOWED_FORMATS[image.format], "mode": image.mode,
                "dimensions": {"width": image.size[0], "height": image.size[1],
                               "frames": int(getattr(image, "n_frames", 1))},
                "dpi": [float(v) for v in image.info["dpi"]] if "dpi" in image.info else None}
    finally:
        image.close()


def read_raster(path: str | Path, *, limits: ReadLimits = DEFAULT_LIMITS) -> np.ndarray:
    """Decode the first frame to a numpy array: (H, W) grey (8 or 16 bit), (H, W, 3) RGB; alpha is dropped."""
    path = Path(path)
    image = _open(path, limits)
    try:
        image.load()  # the declared size was checked by _open; decoding cannot exceed it
        array = _to_array(image)
    except _DECODE_ERRORS as exc:
        raise CorruptFileError(path, f"image data is truncated or malformed ({exc})", "re-export or re-download it") from exc
    finally:
        image.close()
    return array


def _to_array(image: Image.Image) -> np.ndarray:
    if image.mode in {"L", "I;16", "I;16B", "I;16L"}:
        return np.asarray(image)
    if image.mode in {"I", "F"}:
        return np.asarray(image)
    if image.mode == "1":
        return np.asarray(image.convert("L"))
    return np.asarray(image.convert("RGB"))
