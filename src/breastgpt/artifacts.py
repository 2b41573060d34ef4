"""Writing artifacts safely and identifying files: the helpers every pipeline stage shares.

Every artifact (corpus, feature file, checkpoint, report, state file) is written to a temporary file in the
same folder, flushed to disk and renamed, so a reader — or a resumed job after a crash — sees the old or the
new content, never half of it.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def atomic_write_bytes(path: str | Path, data: bytes, *, durable: bool = True) -> Path:
    """Write to a temp file in the same folder, fsync, then rename: readers see the old or the new file only.
    `durable=False` skips the fsync, for files that are only a cache of work a reader redoes when one is
    unreadable (the rename still keeps a killed writer from leaving half a file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | Path, text: str, *, durable: bool = True) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"), durable=durable)


def atomic_write_json(path: str | Path, obj: Any, *, sort_keys: bool = True, indent: int | None = 2,
                      durable: bool = True) -> Path:
    text = json.dumps(obj, indent=indent, sort_keys=sort_keys, ensure_ascii=False, default=str) + "\n"
    return atomic_write_text(path, text, durable=durable)
