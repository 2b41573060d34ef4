"""DICOM reading: parse headers safely, decode pixels through declared plugins, render for display.

Only this module calls pydicom's parser. Everything returned is a plain pydicom `Dataset` or numpy array.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError
from pydicom.pixels import apply_color_lut, apply_modality_lut

from breastgpt.io.dicom_checks import (PixelGeometry, check_lut, check_pixel_data, check_rescale, header_floats,
                                       header_int, pixel_geometry, positive_floats, transfer_syntax, windows)
from breastgpt.io.errors import CorruptFileError, UnsupportedFormatError
from breastgpt.io.files import check_regular_file, read_head
from breastgpt.io.limits import DEFAULT_LIMITS, ReadLimits, check_decoded_bytes
from breastgpt.io.raster import pillow_pixel_limit
from breastgpt.io.voi import VoiChoice, colour_to_display, grey_to_display, require_voi

_FIX = "re-export the image, or correct the tag (e.g. with pydicom) and read it again"
DEFLATED_SYNTAX = "1.2.840.10008.1.2.1.99"


def read_dataset(path: str | Path, *, header_only: bool = False, limits: ReadLimits = DEFAULT_LIMITS) -> pydicom.Dataset:
    """Parse a DICOM file (Part 10, or a raw dataset with a recognisable header) without decoding pixels.

    With `header_only`, parsing stops before Pixel Data. Raises `UnsupportedFormatError` for non-DICOM bytes and
    `CorruptFileError` for truncated or malformed files, and for a file holding no data elements.
    """
    path = Path(path)
    check_regular_file(path, limits)
    raw = _is_raw_dataset(path)
    if not raw:
        _check_deflated_size(path, limits)
    try:
        dataset = pydicom.dcmread(path, stop_before_pixels=header_only, force=raw)
    except InvalidDicomError as exc:
        raise UnsupportedFormatError(path, "not a DICOM file (no DICM preamble)", "check the file type") from exc
    except Exception as exc:  # pydicom raises many types for malformed bytes
        raise CorruptFileError(path, f"malformed DICOM ({type(exc).__name__}: {exc})", "re-export or re-download it") from exc
    _force_parse(path, dataset)
    if len(dataset) == 0:
        raise CorruptFileError(path, "DICOM file holds no data elements (only its file meta information)",
                               "re-export or re-download it")
    return dataset


def _is_raw_dataset(path: Path) -> bool:
    """A dataset written without the Part 10 preamble starts with a group 0x0008 tag (either byte order)."""
    head = read_head(path, 132)
    if len(head) >= 132 and head[128:132] == b"DICM":
        return False
    return head[:2] in (b"\x08\x00", b"\x00\x08") and head[2:4] in (b"\x05\x00", b"\x00\x05", b"\x08\x00", b"\x00\x08",
                                                                  b"\x16\x00", b"\x00\x16", b"\x12\x00", b"\x00\x12")


def _check_deflated_size(path: Path, limits: ReadLimits) -> None:
    """pydicom inflates a Deflated Explicit VR dataset whole and unbounded: count the inflated bytes first."""
    start = _file_meta_end(path, DEFLATED_SYNTAX)
    if start is None:
        return
    inflater, total = zlib.decompressobj(-zlib.MAX_WBITS), 0
    try:
        with path.open("rb") as handle:
            handle.seek(start)
            while (chunk := handle.read(1024 * 1024)) and not inflater.eof:
                while chunk and not inflater.eof:
                    total += len(inflater.decompress(chunk, 16 * 1024 * 1024))
                    chunk = inflater.unconsumed_tail
                    check_decoded_bytes(path, total, "the deflated dataset", limits)
    except zlib.error as exc:
        raise CorruptFileError(path, f"deflated dataset is damaged ({exc})", "re-export or re-download it") from exc


def _file_meta_end(path: Path, syntax: str) -> int | None:
    """Where the file meta group (explicit VR little endian) ends, if its transfer syntax is `syntax`."""
    head = read_head(path, 64 * 1024)
    position, found = 132, False
    while position + 8 <= len(head) and head[position:position + 2] == b"\x02\x00":
        element, vr = head[position + 2:position + 4], head[position + 4:position + 6]
        if vr in (b"OB", b"OW", b"OF", b"SQ", b"UT", b"UN"):
            length, value_start = struct.unpack("<I", head[position + 8:position + 12].ljust(4, b"\0"))[0], position + 12
        else:
            length, value_start = struct.unpack("<H", head[position + 6:position + 8])[0], position + 8
        if element == b"\x10\x00":
            found = head[value_start:value_start + length].rstrip(b"\x00 ").decode("latin-1") == syntax
        position = value_start + length
    return position if found else None


def _force_parse(path: Path, dataset: pydicom.Dataset) -> None:
    """pydicom parses lazily; touch every element now so malformed values fail here, typed, not later."""
    try:
        for element in dataset.iterall():
            _ = element.value
    except Exception as exc:
        raise CorruptFileError(path, f"malformed DICOM element ({type(exc).__name__}: {exc})",
                               "re-export or re-download it") from exc


# --------------------------------------------------------------------------------------------------------------
# Pixel decoding
# --------------------------------------------------------------------------------------------------------------

# Declared decoder plugins per compressed transfer syntax, in order of preference. pydicom would otherwise pick
# whichever plugin happens to import first; naming them makes decoding reproducible and lets `doctor` report gaps.
DECODER_PLUGINS: dict[str, tuple[str, ...]] = {
    "1.2.840.10008.1.2.5": ("pylibjpeg", "pydicom"),  # RLE Lossless
    "1.2.840.10008.1.2.4.50": ("pylibjpeg", "pillow"),  # JPEG Baseline (8-bit)
    "1.2.840.10008.1.2.4.51": ("pylibjpeg", "pillow"),  # JPEG Extended (12-bit)
    "1.2.840.10008.1.2.4.57": ("pylibjpeg",),  # JPEG Lossless
    "1.2.840.10008.1.2.4.70": ("pylibjpeg",),  # JPEG Lossless SV1
    "1.2.840.10008.1.2.4.80": ("pylibjpeg",),  # JPEG-LS Lossless
    "1.2.840.10008.1.2.4.81": ("pylibjpeg",),  # JPEG-LS Near-Lossless
    "1.2.840.10008.1.2.4.90": ("pylibjpeg", "pillow"),  # JPEG 2000 Lossless
    "1.2.840.10008.1.2.4.91": ("pylibjpeg", "pillow"),  # JPEG 2000
    "1.2.840.10008.1.2.4.201": ("pylibjpeg",),  # HTJ2K Lossless
    "1.2.840.10008.1.2.4.202": ("pylibjpeg",),  # HTJ2K Lossless RPCL
    "1.2.840.10008.1.2.4.203": ("pylibjpeg",),  # HTJ2K
}


def decoder_status() -> dict[str, dict[str, object]]:
    """For each compressed transfer syntax: its name, declared plugins and which of them are usable here."""
    from pydicom.pixels import get_decoder
    from pydicom.uid import UID

    status = {}
    for uid, plugins in DECODER_PLUGINS.items():
        decoder = get_decoder(UID(uid))
        available = [name for name in plugins if name in decoder.available_plugins]
        status[uid] = {"name": UID(uid).name, "declared": list(plugins), "available": available}
    return status


def check_pixel_limits(path: str | Path, dataset: pydicom.Dataset, limits: ReadLimits = DEFAULT_LIMITS) -> tuple[int, int, int, int]:
    """Validate the declared geometry against the limits before any pixel is decoded; return (frames, rows, cols, spp)."""
    g = pixel_geometry(Path(path), dataset, limits)
    return g.frames, g.rows, g.columns, g.samples


def decode_pixels(path: str | Path, dataset: pydicom.Dataset, limits: ReadLimits = DEFAULT_LIMITS) -> np.ndarray:
    """Decode stored pixel values ((H,W), (F,H,W), (H,W,3) or (F,H,W,3); YBR converted to RGB) with declared plugins.

    Before decoding: the geometry is checked against the limits (pixels and decoded bytes), and the stored data
    against the geometry (native length; each compressed frame's own header).
    """
    path = Path(path)
    geometry = pixel_geometry(path, dataset, limits)
    check_pixel_data(path, dataset, geometry)
    syntax = str(dataset.file_meta.get("TransferSyntaxUID", "")) if hasattr(dataset, "file_meta") else ""
    plugins = DECODER_PLUGINS.get(syntax, ("",))
    last_error: Exception | None = None
    for plugin in plugins:
        try:
            dataset.pixel_array_options(decoding_plugin=plugin)
            with pillow_pixel_limit(geometry.rows * geometry.columns):  # Pillow is a fallback JPEG decoder
                array = dataset.pixel_array
            break
        except Exception as exc:  # plugin missing, or the codestream is damaged
            last_error = exc
        except BaseException as exc:  # the Rust RLE decoder panics (pyo3 PanicException, a BaseException)
            if isinstance(exc, (KeyboardInterrupt, SystemExit, GeneratorExit)):
                raise
            last_error = exc
    else:
        raise CorruptFileError(path, f"pixel data could not be decoded ({type(last_error).__name__}: {last_error})",
                               "check the file is complete; run `breastgpt doctor` to see available decoders") from last_error
    _check_decoded_shape(path, array, geometry)
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise CorruptFileError(path, "float pixel data holds NaN or infinity", "re-export the image")
    return array


def _check_decoded_shape(path: Path, array: np.ndarray, geometry: PixelGeometry) -> None:
    expected = (geometry.frames,) if geometry.frames > 1 else ()
    expected += (geometry.rows, geometry.columns) + ((geometry.samples,) if geometry.samples > 1 else ())
    if tuple(array.shape) != expected:
        raise CorruptFileError(path, f"decoded pixels are {array.shape}, header says {expected}", "re-export the image")


# --------------------------------------------------------------------------------------------------------------
# Normalised metadata and display-ready images
# --------------------------------------------------------------------------------------------------------------

VOLUME_MODALITIES = {"CT", "MR", "PT"}


def describe_dataset(dataset: pydicom.Dataset, path: str | Path | None = None) -> dict[str, object]:
    """Normalised, identifier-free metadata of one DICOM object (header only is enough).

    Every number it reports is checked (`dicom_checks`): text where a number belongs, NaN or infinity, a zero
    rescale slope, a spacing or window width that is not positive, or a broken LUT is a `CorruptFileError`.
    """
    path = Path(path or getattr(dataset, "filename", None) or "<dataset>")
    frames = header_int(path, dataset, "NumberOfFrames", 1)
    modality = str(dataset.get("Modality", "")) or None
    pixel_spacing = positive_floats(path, dataset, "PixelSpacing", 2)
    imager_spacing = positive_floats(path, dataset, "ImagerPixelSpacing", 2)
    rescale = check_rescale(path, dataset)
    _check_luts(path, dataset)
    return {
        "kind": "volume" if modality in VOLUME_MODALITIES and frames > 1 else "image",
        "format": "dicom",
        "modality": modality,
        "sop_class": _uid_name(dataset.get("SOPClassUID")),
        "dimensions": {"rows": header_int(path, dataset, "Rows"), "columns": header_int(path, dataset, "Columns"),
                       "frames": frames},
        "samples_per_pixel": header_int(path, dataset, "SamplesPerPixel"),
        "bits_stored": header_int(path, dataset, "BitsStored"),
        "photometric_interpretation": str(dataset.get("PhotometricInterpretation", "")) or None,
        "transfer_syntax": _syntax_description(transfer_syntax(dataset)),
        "pixel_spacing_mm": pixel_spacing,
        "imager_pixel_spacing_mm": imager_spacing,
        "spacing_source": "PixelSpacing" if pixel_spacing else "ImagerPixelSpacing" if imager_spacing else None,
        "slice_thickness_mm": header_floats(path, dataset, "SliceThickness"),
        "presentation_intent": str(dataset.get("PresentationIntentType", "")) or None,
        "vendor": str(dataset.get("Manufacturer", "")) or None,
        "model": str(dataset.get("ManufacturerModelName", "")) or None,
        "laterality": str(dataset.get("ImageLaterality", "") or dataset.get("Laterality", "")) or None,
        "view": str(dataset.get("ViewPosition", "")) or None,
        "body_part": str(dataset.get("BodyPartExamined", "")) or None,
        "windows": windows(path, dataset),
        "has_voi_lut_sequence": "VOILUTSequence" in dataset,
        "rescale": {"slope": rescale[0], "intercept": rescale[1]}
        if rescale and "RescaleSlope" in dataset and "RescaleIntercept" in dataset else None,
        "burned_in_annotation": str(dataset.get("BurnedInAnnotation", "")) or None,
    }


def _uid_name(uid: object) -> str | None:
    return getattr(uid, "name", None) if uid else None


def _syntax_description(syntax: pydicom.uid.UID | None) -> dict[str, object] | None:
    """uid, name and compression of a transfer syntax; an unknown UID is described, not fatal, until decoding."""
    if syntax is None:
        return None
    known = syntax.is_transfer_syntax
    return {"uid": str(syntax), "name": syntax.name if known else None,
            "compressed": bool(syntax.is_compressed) if known else None}


def _check_luts(path: Path, dataset: pydicom.Dataset) -> None:
    for keyword in ("VOILUTSequence", "ModalityLUTSequence"):
        for index, item in enumerate(dataset.get(keyword) or []):
            check_lut(path, item, f"{keyword} item {index}")


@dataclass
class DicomImage:
    """A decoded DICOM image: stored values, its header (pixel data dropped) and normalised metadata."""

    path: Path
    dataset: pydicom.Dataset
    stored: np.ndarray
    metadata: dict[str, object]

    @property
    def is_colour(self) -> bool:
        return (header_int(self.path, self.dataset, "SamplesPerPixel", 1) or 1) > 1 or self.is_palette

    @property
    def is_palette(self) -> bool:
        return str(self.dataset.get("PhotometricInterpretation", "")).upper() == "PALETTE COLOR"

    def modality_values(self) -> np.ndarray:
        """Stored values through the modality LUT / rescale (e.g. HU for CT), as float32."""
        if self.is_colour:
            return self.stored.astype(np.float32)
        values = self._with_tables(lambda: apply_modality_lut(self.stored, self.dataset).astype(np.float32))
        if not np.isfinite(values).all():
            raise CorruptFileError(self.path, "the modality LUT / rescale gives non-finite values", _FIX)
        return values

    def display(self, voi: VoiChoice = VoiChoice()) -> np.ndarray:
        """Display-ready uint8 image(s): VOI LUT or window (first by default), MONOCHROME1 inverted, RGB kept."""
        if self.is_palette:
            rgb = self._with_tables(lambda: apply_color_lut(self.stored, self.dataset))
            return colour_to_display(rgb, 8 if rgb.dtype == np.uint8 else 16)
        if self.is_colour:
            return colour_to_display(self.stored, header_int(self.path, self.dataset, "BitsStored", 8) or 8)
        require_voi(self.dataset, voi)
        return self._with_tables(lambda: grey_to_display(self.stored, self.dataset, voi))

    def _with_tables(self, render: Callable[[], np.ndarray]) -> np.ndarray:
        # pydicom's LUT functions raise these for tables that do not fit the pixels (checked ones still can:
        # a palette shorter than the stored values, a LUT whose first value lies beyond them).
        try:
            return render()
        except (ValueError, IndexError, KeyError, TypeError, OverflowError) as exc:
            raise CorruptFileError(self.path, f"the header's lookup tables cannot be applied "
                                              f"({type(exc).__name__}: {exc})", _FIX) from exc


def read_dicom_image(path: str | Path, *, limits: ReadLimits = DEFAULT_LIMITS) -> DicomImage:
    """Read and decode one DICOM image file (single- or multi-frame)."""
    path = Path(path)
    dataset = read_dataset(path, limits=limits)
    stored = decode_pixels(path, dataset, limits)
    metadata = describe_dataset(dataset, path)
    for keyword in ("PixelData", "FloatPixelData", "DoubleFloatPixelData"):
        dataset.pop(keyword, None)  # keep the header, release the encoded bytes
    return DicomImage(path=path, dataset=dataset, stored=stored, metadata=metadata)


def read_display_image(path: str | Path, *, voi: VoiChoice = VoiChoice(), limits: ReadLimits = DEFAULT_LIMITS) -> np.ndarray:
    """Shortcut: a DICOM file straight to its display-ready uint8 array."""
    return read_dicom_image(path, limits=limits).display(voi)
