"""Server settings: every limit a hardened OpenAI-compatible endpoint needs, with safe defaults."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

API_KEY_ENV = "BREASTGPT_API_KEY"


@dataclass(frozen=True)
class ServeConfig:
    model_dir: Path
    api_keys: tuple[str, ...] = ()
    host: str = "127.0.0.1"  # loopback unless told otherwise
    port: int = 8000
    media_root: Path | None = None  # file:// references are allowed only below this folder
    allow_remote_urls: bool = False  # http(s) media URLs are refused unless enabled
    max_body_bytes: int = 64 * 1024 * 1024
    max_media_per_request: int = 32  # images, volumes and feature files; video clients send 8-32 frames
    max_decoded_pixels: int = 60_000_000  # per decoded image; the processor then resizes to ≤ 1024·32·32 px
    max_decoded_voxels: int = 300_000_000  # per volume (a 512×512×1000 CT is 262 M), refused before decoding
    max_tokens: int = 1024
    max_messages: int = 32
    max_message_chars: int = 32_000
    max_queue: int = 64  # requests waiting or running; more → 429
    max_batch: int = 8
    decode_workers: int = 2  # threads parsing bodies and decoding media at once; each may hold a large volume
    batch_window_ms: float = 10.0
    request_timeout_s: float = 300.0
    served_model_name: str = "breastgpt"
    device: str | None = None
    extra: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.api_keys:
            raise ValueError(f"no API key: set {API_KEY_ENV} (comma-separated for several) or pass --api-key-file")
        if any(len(key) < 16 for key in self.api_keys):
            raise ValueError("API keys must be at least 16 characters")
        if self.media_root is not None and not Path(self.media_root).is_dir():
            raise ValueError(f"--media-root {self.media_root} is not a folder")
        for name in ("max_body_bytes", "max_media_per_request", "max_tokens", "max_messages", "max_queue",
                     "max_batch", "decode_workers", "max_decoded_pixels", "max_decoded_voxels"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")


def keys_from_env_or_file(key_file: Path | None) -> tuple[str, ...]:
    """API keys from a file (one per line) or the BREASTGPT_API_KEY environment variable (comma-separated)."""
    if key_file is not None:
        lines = Path(key_file).read_text().splitlines()
        return tuple(line.strip() for line in lines if line.strip() and not line.startswith("#"))
    return tuple(key.strip() for key in os.environ.get(API_KEY_ENV, "").split(",") if key.strip())
