"""The one error hierarchy for everything that reads outside files.

Every error names the file, what is wrong with it, and what the user can do. Code outside `breastgpt.io`
catches `MedicalFileError` to quarantine an input and carry on with the rest of a job.
"""

from __future__ import annotations

from pathlib import Path


class MedicalFileError(Exception):
    """A file could not be read as a supported medical file."""

    kind = "unreadable"

    def __init__(self, path: str | Path, problem: str, hint: str = "") -> None:
        self.path = str(path)
        self.problem = problem
        self.hint = hint
        message = f"{self.path}: {problem}"
        if hint:
            message += f" — {hint}"
        super().__init__(message)

    def __reduce__(self) -> tuple:
        # Keep path/problem/hint when the error crosses a process boundary (worker pools pickle exceptions).
        return (type(self), (self.path, self.problem, self.hint))

    def as_record(self) -> dict[str, str]:
        """A JSON-ready description, for quarantine lists and run summaries."""
        return {"path": self.path, "error": self.kind, "problem": self.problem, "hint": self.hint}


class UnsupportedFormatError(MedicalFileError):
    """The file is of a type or encoding the readers do not accept."""

    kind = "unsupported_format"


class CorruptFileError(MedicalFileError):
    """The file claims a supported format but its bytes are truncated or malformed."""

    kind = "corrupt_file"


class LimitExceededError(MedicalFileError):
    """Decoding the file would exceed a configured safety limit (pixels, bytes, frames, region size)."""

    kind = "limit_exceeded"


class MissingMetadataError(MedicalFileError):
    """A value the task needs (pixel spacing, µm/px, orientation, ...) is absent and was not supplied."""

    kind = "missing_metadata"
