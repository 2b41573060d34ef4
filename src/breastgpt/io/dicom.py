"""DICOM reading: parse headers safely, decode pixels through declared plugins, render for display.

Only this module calls pydicom's parser. Everything returned is a plain pydicom `Dataset` or numpy array.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError
from pydicom.pixels import apply_color_lut, apply_modality_lut

from breastgpt.io.errors import CorruptFileError, LimitExceededError, UnsupportedFormatError
from breastgpt.io.limits import DEFAULT_LIMITS, ReadLimits
from breastgpt.io.voi import VoiChoice, colour_to_display, grey_to_display


def read_dataset(path: str | Path, *, header_only: bool = False, limits: ReadLimits = DEFAULT_LIMITS) -> pydicom.Dataset:
    """Parse a DICOM file (Part 10, or a raw dataset with a recognisable header) without decoding pixels.

    With `header_only`, parsing stops before Pixel Data. Raises `UnsupportedFormatError` for non-DICOM bytes and
    `CorruptFileError` for truncated or malformed files.
    """
    path = Path(path)
    _check_file(path, limits)
    try:
        dataset = pydicom.dcmread(path, stop_before_pixels=header_only, force=_is_raw_dataset(path))
    except InvalidDicomError as exc:
        raise UnsupportedFormatError(path, "not a DICOM file (no DICM preamble)", "check the file type") from exc
    except Exception as exc:  # pydicom raises many types for malformed bytes
        raise CorruptFileError(path, f"malformed DICOM ({type(exc).__name__}: {exc})", "re-export or re-download it") from exc
    _force_parse(path, dataset)
    return dataset


def _is_raw_dataset(path: Path) -> bool:
    """A dataset written without the Part 10 preamble starts with a group 0x0008 tag (either byte order)."""
    with path.open("rb") as handle:
        head = handle.read(132)
    if len(head) >= 132 and head[128:132] == b"DICM":
        return False
    return head[:2] in (b"\x08\x00", b"\x00\x08") and head[2:4] in (b"\x05\x00", b"\x00\x05", b"\x08\x00", b"\x00\x08",
                                                                  b"\x16\x00", b"\x00\x16", b"\x12\x00", b"\x00\x12")


def _check_file(path: Path, limits: ReadLimits) -> None:
    if not path.is_file():
        raise UnsupportedFormatError(path, "no such file", "check the path")
    size = path.stat().st_size
    if size == 0:
        raise CorruptFileError(path, "file is empty (0 bytes)", "re-export or re-download it")
    if size > limits.max_file_bytes:
        raise LimitExceededError(path, f"file is {size} bytes, above the {limits.max_file_bytes}-byte limit",
                                 "raise ReadLimits.max_file_bytes if the file is trusted")


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
    if "PixelData" not in dataset and "FloatPixelData" not in dataset and "DoubleFloatPixelData" not in dataset:
        raise UnsupportedFormatError(path, "DICOM object has no pixel data (e.g. a report or structure set)",
                                     "pass an image, not a non-image DICOM object")
    try:
        rows, cols = int(dataset.Rows), int(dataset.Columns)
        frames = int(dataset.get("NumberOfFrames", 1) or 1)
        samples = int(dataset.get("SamplesPerPixel", 1) or 1)
    except (AttributeError, TypeError, ValueError) as exc:
        raise CorruptFileError(path, f"image geometry tags missing or invalid ({exc})", "re-export the image") from exc
    if rows <= 0 or cols <= 0 or frames <= 0:
        raise CorruptFileError(path, f"invalid image geometry {frames}×{rows}×{cols}", "re-export the image")
    if rows * cols > limits.max_image_pixels:
        raise LimitExceededError(path, f"frame of {rows}×{cols} px exceeds {limits.max_image_pixels} px",
                                 "raise ReadLimits.max_image_pixels if the file is trusted")
    if frames > limits.max_frames or rows * cols * frames > limits.max_total_pixels:
        raise LimitExceededError(path, f"{frames} frames of {rows}×{cols} px exceed the configured limits",
                                 "raise ReadLimits.max_frames / max_total_pixels if the file is trusted")
    return frames, rows, cols, samples


def decode_pixels(path: str | Path, dataset: pydicom.Dataset, limits: ReadLimits = DEFAULT_LIMITS) -> np.ndarray:
    """Decode stored pixel values ((H,W), (F,H,W), (H,W,3) or (F,H,W,3); YBR converted to RGB) with declared plugins."""
    check_pixel_limits(path, dataset, limits)
    syntax = str(dataset.file_meta.get("TransferSyntaxUID", "")) if hasattr(dataset, "file_meta") else ""
    plugins = DECODER_PLUGINS.get(syntax, ("",))
    last_error: Exception | None = None
    for plugin in plugins:
        try:
            dataset.pixel_array_options(decoding_plugin=plugin)
            array = dataset.pixel_array
            break
        except Exception as exc:  # plugin missing, or the codestream is damaged
            last_error = exc
    else:
        raise CorruptFileError(path, f"pixel data could not be decoded ({type(last_error).__name__}: {last_error})",
                               "check the file is complete; run `breastgpt doctor` to see available decoders") from last_error
    _check_decoded_shape(path, array, dataset)
    return array


def _check_decoded_shape(path: str | Path, array: np.ndarray, dataset: pydicom.Dataset) -> None:
    rows, cols = int(dataset.Rows), int(dataset.Columns)
    spatial = array.shape[-3:-1] if int(dataset.get("SamplesPerPixel", 1) or 1) > 1 else array.shape[-2:]
    if tuple(spatial) != (rows, cols):
        raise CorruptFileError(path, f"decoded pixels are {array.shape}, header says {rows}×{cols}", "re-export the image")


# --------------------------------------------------------------------------------------------------------------
# Normalised metadata and display-ready images
# --------------------------------------------------------------------------------------------------------------

VOLUME_MODALITIES = {"CT", "MR", "PT"}


def _floats(value: object) -> list[float] | None:
    if value is None or value == "":
        return None
    values = value if isinstance(value, (list, tuple, pydicom.multival.MultiValue)) else [value]
    return [float(v) for v in values]


def describe_dataset(dataset: pydicom.Dataset) -> dict[str, object]:
    """Normalised, identifier-free metadata of one DICOM object (header only is enough)."""
    meta = getattr(dataset, "file_meta", pydicom.Dataset())
    syntax = meta.get("TransferSyntaxUID")
    frames = int(dataset.get("NumberOfFrames", 1) or 1)
    modality = str(dataset.get("Modality", "")) or None
    pixel_spacing = _floats(dataset.get("PixelSpacing"))
    imager_spacing = _floats(dataset.get("ImagerPixelSpacing"))
    return {
        "kind": "volume" if modality in VOLUME_MODALITIES and frames > 1 else "image",
        "format": "dicom",
        "modality": modality,
        "sop_class": getattr(dataset.get("SOPClassUID"), "name", None),
        "dimensions": {"rows": _int_or_none(dataset.get("Rows")), "columns": _int_or_none(dataset.get("Columns")),
                       "frames": frames},
        "samples_per_pixel": _int_or_none(dataset.get("SamplesPerPixel")),
        "bits_stored": _int_or_none(dataset.get("BitsStored")),
        "photometric_interpretation": str(dataset.get("PhotometricInterpretation", "")) or None,
        "transfer_syntax": {"uid": str(syntax), "name": syntax.name, "compressed": bool(syntax.is_compressed)}
        if syntax else None,
        "pixel_spacing_mm": pixel_spacing,
        "imager_pixel_spacing_mm": imager_spacing,
        "spacing_source": "PixelSpacing" if pixel_spacing else "ImagerPixelSpacing" if imager_spacing else None,
        "slice_thickness_mm": _floats(dataset.get("SliceThickness")),
        "presentation_intent": str(dataset.get("PresentationIntentType", "")) or None,
        "vendor": str(dataset.get("Manufacturer", "")) or None,
        "model": str(dataset.get("ManufacturerModelName", "")) or None,
        "laterality": str(dataset.get("ImageLaterality", "") or dataset.get("Laterality", "")) or None,
        "view": str(dataset.get("ViewPosition", "")) or None,
        "body_part": str(dataset.get("BodyPartExamined", "")) or None,
        "windows": _window_list(dataset),
        "has_voi_lut_sequence": "VOILUTSequence" in dataset,
        "rescale": {"slope": float(dataset.RescaleSlope), "intercept": float(dataset.RescaleIntercept)}
        if "RescaleSlope" in dataset and "RescaleIntercept" in dataset else None,
        "burned_in_annotation": str(dataset.get("BurnedInAnnotation", "")) or None,
    }


def _int_or_none(value: object) -> int | None:
    return None if value in (None, "") else int(value)


def _window_list(dataset: pydicom.Dataset) -> list[dict[str, float]]:
    centers, widths = _floats(dataset.get("WindowCenter")), _floats(dataset.get("WindowWidth"))
    if not centers or not widths:
        return []
    return [{"center": c, "width": w} for c, w in zip(centers, widths)]


@dataclass
class DicomImage:
    """A decoded DICOM image: stored values, its header (pixel data dropped) and normalised metadata."""

    path: Path
    dataset: pydicom.Dataset
    stored: np.ndarray
    metadata: dict[str, object]

    @property
    def is_colour(self) -> bool:
        return int(self.dataset.get("SamplesPerPixel", 1) or 1) > 1 or self.is_palette

    @property
    def is_palette(self) -> bool:
        return str(self.dataset.get("PhotometricInterpretation", "")).upper() == "PALETTE COLOR"

    def modality_values(self) -> np.ndarray:
        """Stored values through the modality LUT / rescale (e.g. HU for CT), as float32."""
        if self.is_colour:
            return self.stored.astype(np.float32)
        return apply_modality_lut(self.stored, self.dataset).astype(np.float32)

    def display(self, voi: VoiChoice = VoiChoice()) -> np.ndarray:
        """Display-ready uint8 image(s): VOI LUT or window (first by default), MONOCHROME1 inverted, RGB kept."""
        if self.is_palette:
            rgb = apply_color_lut(self.stored, self.dataset)
            return colour_to_display(rgb, 8 if rgb.dtype == np.uint8 else 16)
        if self.is_colour:
            return colour_to_display(self.stored, int(self.dataset.get("BitsStored", 8)))
        return grey_to_display(self.stored, self.dataset, voi)


def read_dicom_image(path: str | Path, *, limits: ReadLimits = DEFAULT_LIMITS) -> DicomImage:
    """Read and decode one DICOM image file (single- or multi-frame)."""
    path = Path(path)
    dataset = read_dataset(path, limits=limits)
    stored = decode_pixels(path, dataset, limits)
    metadata = describe_dataset(dataset)
    del dataset.PixelData  # keep the header, release the encoded bytes
    return DicomImage(path=path, dataset=dataset, stored=stored, metadata=metadata)


def read_display_image(path: str | Path, *, voi: VoiChoice = VoiChoice(), limits: ReadLimits = DEFAULT_LIMITS) -> np.ndarray:
    """Shortcut: a DICOM file straight to its display-ready uint8 array."""
    return read_dicom_image(path, limits=limits).display(voi)
