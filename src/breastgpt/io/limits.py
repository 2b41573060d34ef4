"""Safety limits applied before untrusted bytes are decoded."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from breastgpt.io.errors import LimitExceededError


@dataclass(frozen=True)
class ReadLimits:
    """Upper bounds checked against a file's declared geometry before any pixel is decoded.

    Defaults admit the largest real inputs of the field (a 60-frame 4096×3328 16-bit tomosynthesis stack,
    1.6 GiB; a 1000-slice CT, 0.5 GiB as int16 and 1 GiB as float32; a 200k×200k slide read region by region)
    and refuse decompression bombs.
    """

    max_image_pixels: int = 300_000_000  # one 2-D frame or raster image (≈ 17k × 17k)
    max_total_pixels: int = 2_000_000_000  # all frames / slices of one object
    max_file_bytes: int = 8 * 1024**3  # raw file size for non-slide files
    max_frames: int = 4096
    max_region_pixels: int = 64_000_000  # one slide region read (≈ 8k × 8k)
    # Bytes of the decoded array of one object (bytes per sample × samples × frames × rows × columns): what a
    # reader allocates, which a pixel count alone misjudges by up to 8× (float64) or 32× (RGBA float).
    max_decoded_bytes: int = 2 * 1024**3

    def __post_init__(self) -> None:
        for name in ("max_image_pixels", "max_total_pixels", "max_file_bytes", "max_frames", "max_region_pixels",
                     "max_decoded_bytes"):
            if getattr(self, name) <= 0:
                raise ValueError(f"ReadLimits.{name} must be positive")


DEFAULT_LIMITS = ReadLimits()


def check_decoded_bytes(path: str | Path, nbytes: int, what: str, limits: ReadLimits) -> None:
    """Refuse, before allocating it, an array of `nbytes` bytes above `limits.max_decoded_bytes`."""
    if nbytes > limits.max_decoded_bytes:
        raise LimitExceededError(path, f"{what} would decode to {nbytes:,} bytes, above the "
                                       f"{limits.max_decoded_bytes:,}-byte limit",
                                 "raise ReadLimits.max_decoded_bytes if the file is trusted")
