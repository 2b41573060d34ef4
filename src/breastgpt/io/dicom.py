"""DICOM reading: parse headers safely, decode pixels through declared plugins, render for display.

Only this module calls pydicom's parser. Everything returned is a plain pydicom `Dataset` or numpy array.
"""

from __future__ import annotations

from pathlib import Path

import pydicom
from pydicom.errors import InvalidDicomError

from breastgpt.io.errors import CorruptFileError, LimitExceededError, UnsupportedFormatError
from breastgpt.io.limits import DEFAULT_LIMITS, ReadLimits


def read_dataset(path: str | Path, *, header_only: bool = False, limits: ReadLimits = DEFAULT_LIMITS) -> pydicom.Dataset:
    """Parse a DICOM file (Part 10, or a raw dataset with a recognisable header) without decoding pixels.

    With `header_only`, parsing stops before Pixel Data. Raises `UnsupportedFormatError` for non-DICOM bytes and
    `CorruptFileError` for truncated or malformed files.
    """
    path = Path(path)
    _check_file(path, limits)
    try:
        dataset = pydicom.dcmread(path, stop_before_pixels=header_only, force=False)
    except InvalidDicomError as exc:
        raise UnsupportedFormatError(path, "not a DICOM file (no DICM preamble)", "check the file type") from exc
    except Exception as exc:  # pydicom raises many types for malformed bytes
        raise CorruptFileError(path, f"malformed DICOM ({type(exc).__name__}: {exc})", "re-export or re-download it") from exc
    _force_parse(path, dataset)
    return dataset


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
