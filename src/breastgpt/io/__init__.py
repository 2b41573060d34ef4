"""The only code that parses outside files: DICOM, volumes, rasters and slides, behind explicit limits.

Every reader raises `MedicalFileError` subclasses naming the file, the problem and what to do.
"""

from breastgpt.io.errors import (
    CorruptFileError,
    LimitExceededError,
    MedicalFileError,
    MissingMetadataError,
    UnsupportedFormatError,
)
from breastgpt.io.inspect import decode_path, inspect_path, sniff_format
from breastgpt.io.limits import DEFAULT_LIMITS, ReadLimits

__all__ = [
    "CorruptFileError",
    "DEFAULT_LIMITS",
    "LimitExceededError",
    "MedicalFileError",
    "MissingMetadataError",
    "ReadLimits",
    "UnsupportedFormatError",
    "decode_path",
    "inspect_path",
    "sniff_format",
]
