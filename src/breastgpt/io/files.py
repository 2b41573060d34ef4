"""Opening outside files: only regular files are read, and a file's own bytes never choose another file.

Every reader calls `check_regular_file` before a library opens the path. A FIFO, device or socket is refused
from its `stat` result, never opened (opening a FIFO blocks; reading `/dev/zero` never ends). Files named by
another file's contents are refused outright (see `docs/io.md`); the only companion files read are those
implied by the file's own name in its own folder (a NIfTI `.hdr`'s `.img`), checked by `companion_file`.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from breastgpt.io.errors import CorruptFileError, LimitExceededError, UnsupportedFormatError
from breastgpt.io.limits import DEFAULT_LIMITS, ReadLimits


def check_regular_file(path: Path, limits: ReadLimits = DEFAULT_LIMITS, *, what: str = "file") -> int:
    """The size of `path` when it is a non-empty regular file within `max_file_bytes`; else a typed error."""
    try:
        info = os.stat(path)  # follows a symlink the caller chose to pass, like any path argument
    except FileNotFoundError as exc:
        raise UnsupportedFormatError(path, f"no such {what}", "check the path") from exc
    except OSError as exc:
        raise UnsupportedFormatError(path, f"cannot access the {what} ({exc.strerror})", "check the path and its permissions") from exc
    if stat.S_ISDIR(info.st_mode):
        raise UnsupportedFormatError(path, f"is a folder, not a {what}", "pass a file (folders are read as DICOM series only)")
    if not stat.S_ISREG(info.st_mode):
        raise UnsupportedFormatError(path, f"not a regular file ({_kind_of(info.st_mode)}); it was not opened",
                                     "pass a regular file")
    if info.st_size == 0:
        raise CorruptFileError(path, "file is empty (0 bytes)", "re-export or re-download it")
    if info.st_size > limits.max_file_bytes:
        raise LimitExceededError(path, f"file is {info.st_size} bytes, above the {limits.max_file_bytes}-byte limit",
                                 "raise ReadLimits.max_file_bytes if the file is trusted")
    return info.st_size


def _kind_of(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "a special file"


def read_head(path: Path, size: int) -> bytes:
    """The first `size` bytes of a regular file, opened without blocking and re-checked after opening, so a path
    swapped for a FIFO or device after `check_regular_file` is still never read."""
    descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        if not stat.S_ISREG(os.fstat(descriptor).st_mode):
            raise UnsupportedFormatError(path, "not a regular file; it was not read", "pass a regular file")
        return os.read(descriptor, size)
    finally:
        os.close(descriptor)


def companion_file(path: Path, names: list[str], what: str) -> Path | None:
    """The first existing file among `names` next to `path` (the name a format implies, e.g. `x.img` for
    `x.hdr`). It must resolve inside `path`'s own folder and be a regular file; otherwise a typed error that
    names neither the target nor anything about it."""
    folder = path.parent.resolve()
    for name in names:
        candidate = path.parent / name
        if not os.path.lexists(candidate):
            continue
        try:
            resolved = candidate.resolve()
        except (OSError, RuntimeError):  # a link loop
            resolved = None
        if resolved is None or resolved.parent != folder:
            raise UnsupportedFormatError(path, f"its {what} is a link leading out of the file's folder; it was not read",
                                         "copy the pair into one folder as regular files")
        try:
            mode = os.stat(resolved).st_mode
        except OSError:
            mode = 0
        if not stat.S_ISREG(mode):
            raise UnsupportedFormatError(path, f"its {what} is not a regular file; it was not read",
                                         "copy the pair into one folder as regular files")
        return candidate
    return None
