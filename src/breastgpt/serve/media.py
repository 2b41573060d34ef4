"""Turn request content parts into processor parts, reading every byte through `breastgpt.io` with limits.

Media arrive as data URLs (decoded to a per-request temporary folder) or as file:// paths, which must resolve
inside the configured media root. Remote http(s) URLs are refused unless the server enables them.
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote, urlparse

from breastgpt.infer.inputs import load_image, load_slide_features, load_volume
from breastgpt.io import MedicalFileError, ReadLimits
from breastgpt.preprocessing import Preprocessing
from breastgpt.serve.config import ServeConfig
from breastgpt.serve.schemas import ChatMessage, ImagePart, SlideFeaturesPart, TextPart, VolumePart

DATA_URL_HEADER = re.compile(r"data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?P<params>(;[\w-]+=[\w.-]+)*)(?P<b64>;base64)?")
MAX_HEADER_CHARS = 512
# Base64 is decoded a megabyte at a time: each C call holds the interpreter lock, and one call over a 60 MB
# payload would hold it (and stall the event loop, /health included) for a few hundred milliseconds.
BASE64_CHUNK_CHARS = 1 << 20
SUFFIX_BY_MIME = {"image/png": ".png", "image/jpeg": ".jpg", "application/dicom": ".dcm", "image/tiff": ".tif",
                  "image/webp": ".webp", "image/bmp": ".bmp",
                  "application/x-hdf5": ".h5", "application/gzip": ".nii.gz", "application/octet-stream": ".bin"}

MEDIA_KINDS = {ImagePart: "image", VolumePart: "volume", SlideFeaturesPart: "slide feature file"}
log = logging.getLogger("breastgpt.serve")


def _base64_chunks(text: str | memoryview, start: int) -> Iterator[bytes]:
    """Strict base64 (no whitespace, padding only at the very end) from `text[start:]`, decoded piecewise."""
    for offset in range(start, max(len(text), start + 1), BASE64_CHUNK_CHARS):
        piece = text[offset:offset + BASE64_CHUNK_CHARS]
        piece = bytes(piece) if isinstance(piece, memoryview) else piece
        pad = b"=" if isinstance(piece, bytes) else "="
        if pad in piece[:-2] or (offset + BASE64_CHUNK_CHARS < len(text) and pad in piece):
            raise MediaError("data URL payload is not valid base64")
        try:
            yield base64.b64decode(piece, validate=True)
        except (binascii.Error, ValueError) as error:  # ValueError: characters outside ASCII
            raise MediaError("data URL payload is not valid base64") from error


class MediaError(ValueError):
    """A media reference the server will not or cannot read; answered with 400 (or 403 for forbidden)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class MediaResolver:
    config: ServeConfig
    workdir: Path
    expect_slide_dim: int | None = None
    expect_slide_encoder: str | None = None  # the checkpoint's tile encoder: feature files made by another refused
    # The served checkpoint's preprocessing: DICOM images are prepared by their Modality tag (MG, US), rasters and
    # other images only size-limited (so a corpus image sent by `bench run` arrives unchanged); volumes are
    # resampled and windowed as the corpus was, unless the part names its own window.
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    long_strings: dict[str, memoryview] = field(default_factory=dict)  # data URLs kept as the body's bytes

    def __post_init__(self) -> None:
        self.count = 0
        self.limits = ReadLimits(max_image_pixels=self.config.max_decoded_pixels,
                                 max_total_pixels=self.config.max_decoded_voxels)

    def resolve(self, url: str, kind: str) -> Path:
        """A local path for the URL (decoded data URL, or an allowed file path)."""
        self.count += 1
        if self.count > self.config.max_media_per_request:
            raise MediaError(f"more than {self.config.max_media_per_request} media items in one request")
        if url.startswith("data:"):
            return self._from_data_url(url)
        parsed = urlparse(url)
        if parsed.scheme in ("http", "https"):
            raise MediaError("remote media URLs are refused by this server; send a data URL", status=403)
        if parsed.scheme == "file":
            return self._from_file(Path(unquote(parsed.path)))
        raise MediaError(f"unsupported {kind} URL scheme {parsed.scheme!r}: use a data URL or file:// path")

    def _from_data_url(self, url: str) -> Path:
        payload: str | memoryview = self.long_strings.get(url, url)
        head = bytes(payload[:MAX_HEADER_CHARS]).decode("ascii") if isinstance(payload, memoryview) else url
        comma = head.find(",", 0, MAX_HEADER_CHARS)
        match = DATA_URL_HEADER.fullmatch(head, 0, comma) if comma > 0 else None
        if not match or not match.group("b64"):
            raise MediaError("malformed data URL: expected data:<mime>;base64,<payload>")
        suffix = SUFFIX_BY_MIME.get(match.group("mime") or "", ".bin")
        path = self.workdir / f"media{self.count}{suffix}"
        with path.open("wb") as out:
            for chunk in _base64_chunks(payload, comma + 1):
                out.write(chunk)
        return path

    def _from_file(self, path: Path) -> Path:
        root = self.config.media_root
        if root is None:
            raise MediaError("file:// media are disabled on this server (no --media-root)", status=403)
        resolved = path.resolve()
        if not resolved.is_relative_to(Path(root).resolve()):
            raise MediaError("file path is outside the server's media root", status=403)
        if not resolved.exists():
            raise MediaError("file path does not exist under the media root")
        return resolved

    def part(self, part: Any) -> dict[str, Any]:
        if isinstance(part, TextPart):
            return {"type": "text", "text": part.text}
        kind = MEDIA_KINDS.get(type(part))
        if kind is None:
            raise MediaError(f"unsupported content part {type(part).__name__}")
        try:
            return self._decode(part)
        except MediaError:
            raise
        except MedicalFileError as error:
            raise MediaError(f"{error.kind}: {self._scrub(error.problem)}") from error
        except ValueError as error:  # feature-file mismatch, unknown window preset
            raise MediaError(self._scrub(str(error))) from error
        except MemoryError as error:
            raise MediaError(f"the {kind} is too large to decode on this server", status=413) from error
        except Exception as error:  # noqa: BLE001 — a reader failing in a way it does not declare: still a 400
            log.warning("%s reader failed with %s", kind, type(error).__name__)
            raise MediaError(f"the {kind} could not be read: damaged or not a supported format") from error

    def _scrub(self, message: str) -> str:
        """The reader's message without the server's own folders (a data URL's temporary path, the media root)."""
        folders = [self.workdir] + ([Path(self.config.media_root)] if self.config.media_root else [])
        for folder in folders:
            message = message.replace(str(Path(folder).resolve()), "<media>").replace(str(folder), "<media>")
        return message

    def _decode(self, part: ImagePart | VolumePart | SlideFeaturesPart) -> dict[str, Any]:
        if isinstance(part, ImagePart):
            return {"type": "image", "image": load_image(self.resolve(part.image_url.url, "image"),
                                                         limits=self.limits, settings=self.preprocessing)}
        if isinstance(part, VolumePart):
            frames, _ = load_volume(self.resolve(part.volume_url.url, "volume"), window=part.window,
                                    settings=self.preprocessing, limits=self.limits)
            return {"type": "volume", "volume": frames}
        slide = load_slide_features(self.resolve(part.slide_features_url.url, "slide"),
                                    expect_dim=self.expect_slide_dim, expect_encoder=self.expect_slide_encoder)
        return slide.part()

    def messages(self, messages: list[ChatMessage]) -> list[dict[str, Any]]:
        converted = []
        for message in messages:
            if isinstance(message.content, str):
                content: Any = message.content
            else:
                content = [self.part(part) for part in message.content]
            converted.append({"role": message.role, "content": content})
        return converted
