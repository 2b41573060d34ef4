"""Safety limits applied before untrusted bytes are decoded."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ReadLimits:
    """Upper bounds checked against a file's declared geometry before any pixel is decoded.

    Defaults admit the largest real inputs of the field (a 4096×3328 16-bit tomosynthesis frame stack, a
    1000-slice CT, a 200k×200k slide read region by region) and refuse decompression bombs.
    """

    max_image_pixels: int = 300_000_000  # one 2-D frame or raster image (≈ 17k × 17k)
    max_total_pixels: int = 2_000_000_000  # all frames / slices of one object
    max_file_bytes: int = 8 * 1024**3  # raw file size for non-slide files
    max_frames: int = 4096
    max_region_pixels: int = 64_000_000  # one slide region read (≈ 8k × 8k)

    def __post_init__(self) -> None:
        for name in ("max_image_pixels", "max_total_pixels", "max_file_bytes", "max_frames", "max_region_pixels"):
            if getattr(self, name) <= 0:
                raise ValueError(f"ReadLimits.{name} must be positive")


DEFAULT_LIMITS = ReadLimits()
