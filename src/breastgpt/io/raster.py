"""Ordinary raster images (PNG, JPEG, TIFF, PGM/PPM, BMP — an allowlist; nothing else is opened).

The declared size is checked against the limits before any pixel is decoded, so a decompression bomb is an
error, never an allocation; a truncated file is an error, never a silently grey-filled image.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, UnidentifiedImageError

from breastgpt.io.errors import CorruptFileError, LimitExceededError, UnsupportedFormatError
from breastgpt.io.limits import DEFAULT_LIMITS, ReadLimits

ALLOWED_FORMATS = {"PNG": "png", "JPEG": "jpeg", "TIFF": "tiff", "PPM": "pnm", "BMP": "bmp"}

ImageFile.LOAD_TRUNCATED_IMAGES = False  # never accept a partially decoded image


def _open(path: Path, limits: ReadLimits) -> Image.Image:
    if not path.is_file():
        raise UnsupportedFormatError(path, "no such file", "check the path")
    if path.stat().st_size == 0:
        raise CorruptFileError(path, "file is empty (0 bytes)", "re-export or re-download it")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(path, formats=list(ALLOWED_FORMATS))
    except UnidentifiedImageError as exc:
        raise UnsupportedFormatError(path, "not a PNG, JPEG, TIFF, PGM/PPM or BMP image",
                                     "convert it, or use the DICOM/volume/slide readers") from exc
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise LimitExceededError(path, f"image declares too many pixels ({exc})", "raise ReadLimits.max_image_pixels") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise CorruptFileError(path, f"malformed image header ({exc})", "re-export or re-download it") from exc
    width, height = image.size
    frames = int(getattr(image, "n_frames", 1))
    if width * height > limits.max_image_pixels:
        image.close()
        raise LimitExceededError(path, f"image declares {width}×{height} px, above {limits.max_image_pixels} px",
                                 "raise ReadLimits.max_image_pixels if the file is trusted, or open it as a slide")
    if frames > limits.max_frames:
        image.close()
        raise LimitExceededError(path, f"image has {frames} frames", "raise ReadLimits.max_frames")
    return image


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
        image.load()
        array = _to_array(image)
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
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
