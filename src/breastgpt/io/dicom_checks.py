"""Checks of a DICOM header against its own pixel data, before anything is decoded or displayed.

pydicom leaves malformed values as text (`NumberOfFrames = "abcd"`), decoders allocate what a codestream
declares, and a NaN rescale slope or a zero window width silently yields a black image. Every check here raises
the typed errors of `breastgpt.io.errors`: numbers must parse and be finite, geometry must be possible and within
`ReadLimits` (pixels and decoded bytes), stored pixel data must hold exactly the declared frames, and each
compressed frame's own header (JPEG SOF, JPEG 2000 SIZ, RLE segment table) must match the DICOM geometry.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from pathlib import Path

import pydicom
from pydicom.uid import UID

from breastgpt.io.codestreams import HEAD_BYTES, j2k_size, jpeg_size
from breastgpt.io.errors import CorruptFileError, LimitExceededError, UnsupportedFormatError
from breastgpt.io.limits import ReadLimits, check_decoded_bytes

_FIX = "re-export the image, or correct the tag (e.g. with pydicom) and read it again"
_JPEG_SYNTAXES = {"1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.57",
                  "1.2.840.10008.1.2.4.70", "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81"}
_J2K_SYNTAXES = {"1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91", "1.2.840.10008.1.2.4.201",
                 "1.2.840.10008.1.2.4.202", "1.2.840.10008.1.2.4.203"}
RLE_SYNTAX = "1.2.840.10008.1.2.5"
RLE_MAX_RATIO = 64  # PackBits: at best 2 stored bytes expand to 128


# ---------------------------------------------------------------------------------------------- numbers

def header_int(path: Path, dataset: pydicom.Dataset, keyword: str, default: int | None = None) -> int | None:
    """An integer tag as an int (`default` when absent or empty); text or a fraction is a typed error."""
    value = dataset.get(keyword)
    if value is None or value == "":
        return default
    if isinstance(value, (list, tuple, pydicom.multival.MultiValue)):
        if len(value) != 1:
            raise CorruptFileError(path, f"{keyword} holds {len(value)} values, expected one", _FIX)
        value = value[0]
    try:
        number = float(value)
    except (TypeError, ValueError) as exc:
        raise CorruptFileError(path, f"{keyword} is not a number ({str(value)[:40]!r})", _FIX) from exc
    if not math.isfinite(number) or number != int(number):
        raise CorruptFileError(path, f"{keyword} is not an integer ({str(value)[:40]!r})", _FIX)
    return int(number)


def header_floats(path: Path, dataset: pydicom.Dataset, keyword: str) -> list[float] | None:
    """A decimal tag as finite floats (None when absent or empty); text, NaN or infinity is a typed error."""
    value = dataset.get(keyword)
    if value is None or value == "":
        return None
    values = value if isinstance(value, (list, tuple, pydicom.multival.MultiValue)) else [value]
    try:
        numbers = [float(v) for v in values]
    except (TypeError, ValueError) as exc:
        raise CorruptFileError(path, f"{keyword} is not a number ({str(value)[:40]!r})", _FIX) from exc
    if not all(math.isfinite(n) for n in numbers):
        raise CorruptFileError(path, f"{keyword} is not finite ({str(value)[:40]!r})", _FIX)
    return numbers


def positive_floats(path: Path, dataset: pydicom.Dataset, keyword: str, count: int) -> list[float] | None:
    """A spacing-like tag: exactly `count` finite values, all > 0."""
    numbers = header_floats(path, dataset, keyword)
    if numbers is not None and (len(numbers) != count or min(numbers) <= 0):
        raise CorruptFileError(path, f"{keyword} {numbers[:4]} is not {count} positive number(s)", _FIX)
    return numbers


def check_rescale(path: Path, dataset: pydicom.Dataset) -> tuple[float, float] | None:
    """(slope, intercept) when present: finite, slope non-zero (a zero slope maps every pixel to one value)."""
    slope = header_floats(path, dataset, "RescaleSlope")
    intercept = header_floats(path, dataset, "RescaleIntercept")
    if slope is None and intercept is None:
        return None
    slope_value, intercept_value = (slope or [1.0])[0], (intercept or [0.0])[0]
    if slope_value == 0:
        raise CorruptFileError(path, "RescaleSlope is 0: every pixel would map to one value", _FIX)
    return slope_value, intercept_value


def windows(path: Path, dataset: pydicom.Dataset) -> list[dict[str, float]]:
    """The header's VOI windows; each centre and width finite, each width > 0 (PS3.3 C.11.2.1.2)."""
    centers, widths = header_floats(path, dataset, "WindowCenter"), header_floats(path, dataset, "WindowWidth")
    if not centers or not widths:
        return []
    for index, width in enumerate(widths):
        if width <= 0:
            raise CorruptFileError(path, f"WindowWidth #{index} is {width}: a window must be wider than 0",
                                   "correct or remove the WindowCenter/WindowWidth tags (e.g. with pydicom) and read it again")
    return [{"center": c, "width": w} for c, w in zip(centers, widths)]


def check_lut(path: Path, item: pydicom.Dataset, what: str) -> None:
    """A LUT item (VOI or modality): descriptor of 3 numbers, 1–16 output bits, data of the declared length."""
    descriptor = item.get("LUTDescriptor")
    data = item.get("LUTData")
    if descriptor is None or data is None or len(descriptor) != 3:
        raise CorruptFileError(path, f"{what} has no valid LUTDescriptor/LUTData", _FIX)
    entries, bits = int(descriptor[0]) or 65536, int(descriptor[2])
    if not 1 <= bits <= 16:
        raise CorruptFileError(path, f"{what} declares {bits}-bit output (valid: 1–16)", _FIX)
    # OW data holds 16-bit entries; some writers pack 8-bit ones, so a byte per entry is the least accepted.
    stored = len(data) if isinstance(data, (bytes, list, tuple, pydicom.multival.MultiValue)) else 1
    if stored < entries:
        raise CorruptFileError(path, f"{what} declares {entries} entries but holds {stored}", _FIX)


def transfer_syntax(dataset: pydicom.Dataset) -> UID | None:
    meta = getattr(dataset, "file_meta", None)
    syntax = meta.get("TransferSyntaxUID") if meta is not None else None
    return UID(str(syntax)) if syntax else None


# ---------------------------------------------------------------------------------------------- geometry

@dataclass(frozen=True)
class PixelGeometry:
    """Declared pixel layout, each value validated."""

    frames: int
    rows: int
    columns: int
    samples: int
    bits_allocated: int

    @property
    def pixels(self) -> int:
        return self.frames * self.rows * self.columns

    @property
    def decoded_bytes(self) -> int:
        """Bytes of the decoded array (1-bit data unpacks to one byte per sample)."""
        return self.pixels * self.samples * max(1, self.bits_allocated // 8)


def pixel_geometry(path: Path, dataset: pydicom.Dataset, limits: ReadLimits) -> PixelGeometry:
    """Rows, columns, frames, samples and bits of an image header, checked against the limits (header only)."""
    rows, columns = header_int(path, dataset, "Rows"), header_int(path, dataset, "Columns")
    if rows is None or columns is None:
        raise UnsupportedFormatError(path, "DICOM object has no image (no Rows/Columns; e.g. a report, structure "
                                           "set or DICOMDIR, whose referenced files are never followed)",
                                     "pass an image, not a non-image DICOM object")
    geometry = PixelGeometry(frames=header_int(path, dataset, "NumberOfFrames", 1), rows=rows, columns=columns,
                             samples=header_int(path, dataset, "SamplesPerPixel", 1),
                             bits_allocated=header_int(path, dataset, "BitsAllocated", 0))  # type: ignore[arg-type]
    _check_layout(path, dataset, geometry)
    _check_limits(path, geometry, limits)
    return geometry


def _check_layout(path: Path, dataset: pydicom.Dataset, g: PixelGeometry) -> None:
    if g.rows <= 0 or g.columns <= 0 or g.frames <= 0:
        raise CorruptFileError(path, f"invalid image geometry {g.frames}×{g.rows}×{g.columns}", _FIX)
    if g.samples not in (1, 3):
        raise CorruptFileError(path, f"SamplesPerPixel is {g.samples} (valid: 1, 3)", _FIX)
    if g.bits_allocated not in (1, 8, 16, 32, 64):
        raise CorruptFileError(path, f"BitsAllocated is {g.bits_allocated} (valid: 1, 8, 16, 32, 64)", _FIX)
    stored = header_int(path, dataset, "BitsStored", g.bits_allocated)
    if stored is None or not 1 <= stored <= g.bits_allocated:
        raise CorruptFileError(path, f"BitsStored {stored} does not fit BitsAllocated {g.bits_allocated}", _FIX)


def _check_limits(path: Path, g: PixelGeometry, limits: ReadLimits) -> None:
    if g.rows * g.columns > limits.max_image_pixels:
        raise LimitExceededError(path, f"frame of {g.rows}×{g.columns} px exceeds {limits.max_image_pixels} px",
                                 "raise ReadLimits.max_image_pixels if the file is trusted")
    if g.frames > limits.max_frames or g.pixels > limits.max_total_pixels:
        raise LimitExceededError(path, f"{g.frames} frames of {g.rows}×{g.columns} px exceed the configured limits",
                                 "raise ReadLimits.max_frames / max_total_pixels if the file is trusted")
    check_decoded_bytes(path, g.decoded_bytes, f"{g.frames} frame(s) of {g.rows}×{g.columns}×{g.samples} at "
                                               f"{g.bits_allocated} bits", limits)


# ---------------------------------------------------------------------------------------------- pixel data

def check_pixel_data(path: Path, dataset: pydicom.Dataset, geometry: PixelGeometry) -> None:
    """The stored pixel data must hold the declared frames: exact length for native data, and for encapsulated
    data one fragment set per frame whose codestream header matches the DICOM geometry."""
    syntax = transfer_syntax(dataset)
    if syntax is not None and not syntax.is_transfer_syntax:
        raise UnsupportedFormatError(path, f"transfer syntax {str(syntax)[:64]} is not one we can decode",
                                     "convert the file to a standard transfer syntax")
    keyword = next((k for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData") if k in dataset), None)
    if keyword is None:
        raise UnsupportedFormatError(path, "DICOM object has no pixel data (e.g. a report or structure set)",
                                     "pass an image, not a non-image DICOM object")
    data = dataset[keyword].value
    if not isinstance(data, (bytes, bytearray)):
        raise CorruptFileError(path, f"{keyword} is not a byte string", _FIX)
    if syntax is not None and syntax.is_encapsulated and keyword == "PixelData":
        _check_encapsulated(path, bytes(data), geometry, str(syntax))
    else:
        _check_native_length(path, dataset, len(data), geometry)


def _check_native_length(path: Path, dataset: pydicom.Dataset, length: int, g: PixelGeometry) -> None:
    samples = 2 if str(dataset.get("PhotometricInterpretation", "")).upper() == "YBR_FULL_422" else g.samples
    frame_bits = g.rows * g.columns * samples * g.bits_allocated
    expected = math.ceil(g.frames * frame_bits / 8)
    if length < expected:
        raise CorruptFileError(path, f"pixel data is truncated: {length:,} bytes for the {expected:,} declared "
                                     f"({g.frames}×{g.rows}×{g.columns})", "re-export or re-download it")
    if length - expected >= max(2, math.ceil(frame_bits / 8)):
        raise CorruptFileError(path, f"pixel data holds {length:,} bytes but the declared geometry "
                                     f"{g.frames}×{g.rows}×{g.columns} accounts for {expected:,}: Rows, Columns or "
                                     "NumberOfFrames is wrong", _FIX)


def _check_encapsulated(path: Path, data: bytes, g: PixelGeometry, syntax: str) -> None:
    from pydicom.encaps import generate_frames

    count = 0
    try:
        for frame in generate_frames(data, number_of_frames=g.frames):
            count += 1
            if count > g.frames:
                break
            _check_codestream(path, frame, g, syntax, count)
    except CorruptFileError:
        raise
    except Exception as exc:  # pydicom raises several types for a broken item structure
        raise CorruptFileError(path, f"encapsulated pixel data is malformed ({type(exc).__name__}: {exc})",
                               "re-export or re-download it") from exc
    if count < g.frames:
        raise CorruptFileError(path, f"encapsulated pixel data holds {count} of {g.frames} declared frames",
                               "re-export or re-download it")


def _check_codestream(path: Path, frame: bytes, g: PixelGeometry, syntax: str, number: int) -> None:
    if syntax in _JPEG_SYNTAXES:
        size = jpeg_size(frame[:HEAD_BYTES])
    elif syntax in _J2K_SYNTAXES:
        size = j2k_size(frame[:HEAD_BYTES])
    elif syntax == RLE_SYNTAX:
        _check_rle(path, frame, g, number)
        return
    else:
        return  # other syntaxes (video, deflate) are decoded by pydicom to the declared size or refused
    if size is None:
        raise CorruptFileError(path, f"frame {number}: no readable codestream header", "re-export or re-download it")
    if size != (g.rows, g.columns, g.samples):
        raise CorruptFileError(path, f"frame {number}: the codestream is {size[0]}×{size[1]} with {size[2]} "
                                     f"component(s), the header says {g.rows}×{g.columns} with {g.samples}", _FIX)


def _check_rle(path: Path, frame: bytes, g: PixelGeometry, number: int) -> None:
    """The RLE header's segment count must match the geometry, and each segment must be long enough to expand
    to a full plane (PackBits expands at most 64-fold)."""
    if len(frame) < 64:
        raise CorruptFileError(path, f"frame {number}: RLE header is truncated", "re-export or re-download it")
    header = struct.unpack("<16I", frame[:64])
    segments = header[0]
    if not 1 <= segments <= 15 or segments != g.samples * max(1, g.bits_allocated // 8):
        raise CorruptFileError(path, f"frame {number}: {segments} RLE segments, the header geometry needs "
                                     f"{g.samples * max(1, g.bits_allocated // 8)}", _FIX)
    offsets, plane = [*header[1:segments + 1], len(frame)], g.rows * g.columns
    for index in range(segments):
        length = offsets[index + 1] - offsets[index]
        if offsets[index] < 64 or length <= 0 or length * RLE_MAX_RATIO < plane:
            raise CorruptFileError(path, f"frame {number}: RLE segment {index} cannot hold a {g.rows}×{g.columns} "
                                         "plane (truncated data or wrong Rows/Columns)", "re-export or re-download it")
