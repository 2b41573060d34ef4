"""The artifact contract: atomic file and folder writes, manifests, code version, and one error type.

Every artifact (corpus, feature file, checkpoint, export, report, state file, demo stage) is written to a
temporary name in the same folder and renamed into place only when complete, so a reader — or a resumed job
after a crash — sees the old or the new content, never half of it. A finished artifact is described by a
`Manifest` (sha256 of its files plus metadata); "done" means the manifest verifies, never that a file exists.

This is the only module that renames temporaries into place (`tests/test_artifacts.py` greps `src/` for
others). Pick the writer by who produces the bytes:

- `atomic_write_bytes` / `atomic_write_text` / `atomic_write_json`: the bytes are in memory;
- `atomic_path(path)`: another library writes the file (h5py, safetensors, pyarrow, nibabel, pydicom, PIL):
  it gets a temporary path in the same folder, renamed into place on success and removed on failure;
- `atomic_dir(path)`: a whole folder (checkpoint, export); `staging_dir` + `publish_dir` are its two halves
  for writers that span processes.

Temporary names start with a dot and carry `.tmp` (files) or `.tmpdir` (folders); `remove_stale_temps`
clears what a killed writer left behind.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import secrets
import shutil
import subprocess
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Iterator

MANIFEST_NAME = "manifest.json"
_COMPRESSED = {".gz", ".bz2", ".xz", ".zst"}
_TEMP_NAME = re.compile(r"^\..+\.(tmp(\.[^.]+){0,2}|tmpdir|[0-9a-f]{8}\.old)$")


# ------------------------------------------------------------------------------------------------------ errors


class ArtifactError(ValueError):
    """An artifact that cannot be written, is missing, incomplete, or does not match its manifest.

    A ValueError so command lines that report bad inputs as one-line messages report these the same way."""


class ManifestError(ArtifactError):
    """A manifest is missing or unreadable, or the files it lists do not match it."""


class CheckpointError(ArtifactError):
    """A model checkpoint (base, initial, training or export) that is missing, unusable or does not match
    the run that reads it."""


# ----------------------------------------------------------------------------------------------- identities


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


@functools.lru_cache(maxsize=1)
def code_version() -> str:
    """The code that wrote an artifact: the package version, plus ``+g<12 hex>`` of the git commit when running
    from a checkout (an installed wheel has the version alone). A string, so it fits an HDF5 attribute, a JSON
    field and a report line alike; other libraries' versions are recorded by the callers that depend on them."""
    from breastgpt import __version__

    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent,
                                capture_output=True, text=True, timeout=5)
        if commit.returncode == 0 and commit.stdout.strip():
            return f"{__version__}+g{commit.stdout.strip()[:12]}"
    except (OSError, subprocess.SubprocessError):
        pass  # not a git checkout
    return __version__


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# ------------------------------------------------------------------------------------------------- temp names


def _suffix(path: Path) -> str:
    """The suffix a library may key the format on (``.nii.gz`` counts as one)."""
    suffixes = path.suffixes
    if len(suffixes) >= 2 and suffixes[-1] in _COMPRESSED:
        return "".join(suffixes[-2:])
    return suffixes[-1] if suffixes else ""


def _temp_sibling(path: Path, kind: str) -> Path:
    return path.with_name(f".{path.name}.{secrets.token_hex(4)}.{kind}{_suffix(path) if kind == 'tmp' else ''}")


def is_temp_name(name: str) -> bool:
    """Whether `name` is a temporary file or folder this module creates."""
    return bool(_TEMP_NAME.match(name))


def remove_stale_temps(folder: str | Path) -> int:
    """Delete the temporaries a killed writer left directly in `folder`; returns how many."""
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    removed = 0
    for path in folder.iterdir():
        if not is_temp_name(path.name):
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
        removed += 1
    return removed


def _reserve(path: Path) -> tuple[int, Path]:
    """Create a new empty temporary sibling of `path` (mode 0666 less the umask, like a plain open)."""
    for _ in range(100):
        tmp = _temp_sibling(path, "tmp")
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), tmp
        except FileExistsError:
            continue
    raise ArtifactError(f"{path.parent}: cannot create a temporary file next to {path.name}")


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    try:
        _fsync_file(path)
    except OSError:
        pass  # some file systems cannot fsync a folder; the rename is still atomic


# ---------------------------------------------------------------------------------------------- file writes


def atomic_write_bytes(path: str | Path, data: bytes, *, durable: bool = True) -> Path:
    """Write to a temp file in the same folder, fsync, then rename: readers see the old or the new file only.
    `durable=False` skips the fsync, for files that are only a cache of work a reader redoes when one is
    unreadable (the rename still keeps a killed writer from leaving half a file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _reserve(path)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | Path, text: str, *, durable: bool = True) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"), durable=durable)


def atomic_write_json(path: str | Path, obj: Any, *, sort_keys: bool = True, indent: int | None = 2,
                      durable: bool = True) -> Path:
    text = json.dumps(obj, indent=indent, sort_keys=sort_keys, ensure_ascii=False, default=str) + "\n"
    return atomic_write_text(path, text, durable=durable)


@contextmanager
def atomic_path(path: str | Path, *, durable: bool = True) -> Iterator[Path]:
    """A temporary path in `path`'s folder for a library to write; renamed to `path` when the block ends
    without an exception, removed when it raises. The temporary keeps `path`'s suffix (``.nii.gz`` too) for
    libraries that pick the format from it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _reserve(path)
    os.close(fd)
    try:
        yield tmp
        if not tmp.is_file():
            raise ArtifactError(f"{path}: the writer did not create its temporary file {tmp.name}")
        if durable:
            _fsync_file(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


# -------------------------------------------------------------------------------------------- folder writes


def staging_dir(path: str | Path, *, shared: bool = False) -> Path:
    """A new, empty temporary sibling folder of `path` to write into before `publish_dir`.

    `shared=True` gives a fixed name (``.NAME.tmpdir``) that several processes writing one folder agree on;
    a leftover of a killed writer under that name is removed first, so the caller must be the only one
    creating it (the main process, before the others write)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if shared:
        tmp = shared_staging_path(path)
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
        return tmp
    for _ in range(100):
        tmp = _temp_sibling(path, "tmpdir")
        try:
            tmp.mkdir()
            return tmp
        except FileExistsError:
            continue
    raise ArtifactError(f"{path.parent}: cannot create a temporary folder next to {path.name}")


def shared_staging_path(path: str | Path) -> Path:
    """The fixed staging folder `staging_dir(path, shared=True)` creates, for the processes that write into it."""
    path = Path(path)
    return path.with_name(f".{path.name}.tmpdir")


def publish_dir(tmp: str | Path, path: str | Path, *, overwrite: bool = True, durable: bool = True) -> Path:
    """Move the finished folder `tmp` to `path`. An existing `path` is moved aside, the new folder renamed in,
    then the old one removed: a crash between the two renames leaves the old folder complete under a
    ``.tmpdir``/``.old`` sibling, never a mix of old and new files."""
    tmp, path = Path(tmp), Path(path)
    if path.exists() and not overwrite:
        raise ArtifactError(f"{path}: already exists; choose another output folder or allow overwriting")
    if durable:
        for entry in sorted(tmp.rglob("*")):
            if entry.is_dir():
                _fsync_dir(entry)
            else:
                _fsync_file(entry)
        _fsync_dir(tmp)
    old = None
    if path.exists():
        old = _temp_sibling(path, "old")
        os.replace(path, old)
    try:
        os.replace(tmp, path)
    except BaseException:
        if old is not None:
            os.replace(old, path)  # put the previous artifact back rather than leave none
        raise
    if durable:
        _fsync_dir(path.parent)
    if old is not None:
        shutil.rmtree(old) if old.is_dir() else old.unlink()
    return path


@contextmanager
def atomic_dir(path: str | Path, *, overwrite: bool = True, durable: bool = True) -> Iterator[Path]:
    """A temporary sibling folder to fill; it replaces `path` when the block ends without an exception
    (`publish_dir`) and is removed when it raises, leaving any existing `path` untouched."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise ArtifactError(f"{path}: already exists; choose another output folder or allow overwriting")
    tmp = staging_dir(path)
    try:
        yield tmp
        publish_dir(tmp, path, overwrite=overwrite, durable=durable)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


# ------------------------------------------------------------------------------------------------- manifest


def hash_tree(root: str | Path, skip: Iterable[str] = ()) -> dict[str, str]:
    """sha256 of every file under `root` by POSIX relative path, except the relative paths in `skip`."""
    root, skipped = Path(root), set(skip)
    return {rel: sha256_file(p) for p in sorted(root.rglob("*"))
            if p.is_file() and (rel := p.relative_to(root).as_posix()) not in skipped}


@dataclass
class Manifest:
    """sha256 of an artifact's files (POSIX paths relative to the artifact's root) plus metadata.

    On disk: one JSON object, the metadata's keys and ``files``. Verifying has one check and two faces:
    `problems` lists every mismatch (for commands that report them all), `verify` raises `ManifestError`
    with them (for loaders that must stop); they cannot disagree."""

    files: dict[str, str] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of_files(cls, root: str | Path, names: Iterable[str], *, stamp: bool = True, **meta: Any) -> Manifest:
        """Hash the named files under `root`. `stamp` adds ``code_version`` and ``created`` (leave it off for
        artifacts that must be byte-identical across equal builds)."""
        root = Path(root)
        return cls({name: sha256_file(root / name) for name in names}, _stamped(meta) if stamp else dict(meta))

    @classmethod
    def of_folder(cls, folder: str | Path, *, skip: Iterable[str] = (MANIFEST_NAME,), stamp: bool = True,
                  **meta: Any) -> Manifest:
        """Hash every file under `folder` (recursively) except `skip`."""
        return cls(hash_tree(folder, skip), _stamped(meta) if stamp else dict(meta))

    def to_dict(self) -> dict[str, Any]:
        return {**self.meta, "files": dict(self.files)}

    def write(self, path: str | Path, *, indent: int | None = 2, durable: bool = True) -> Path:
        return atomic_write_json(path, self.to_dict(), indent=indent, durable=durable)

    @classmethod
    def read(cls, path: str | Path) -> Manifest:
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ManifestError(f"{path}: missing; the artifact was never finished — write it again") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ManifestError(f"{path}: unreadable ({exc}); the artifact is damaged — write it again") from exc
        if not isinstance(data, dict) or not isinstance(data.get("files"), dict):
            raise ManifestError(f"{path}: not a manifest (no 'files' table of sha256 digests)")
        files = data.pop("files")
        return cls({str(k): str(v) for k, v in files.items()}, data)

    def problems(self, root: str | Path, *, exhaustive: bool = False,
                 skip: Iterable[str] = (MANIFEST_NAME,)) -> list[str]:
        """Every listed file that is missing or whose sha256 differs; with `exhaustive`, also every file under
        `root` the manifest does not list (except `skip`)."""
        root = Path(root)
        found = []
        for name, digest in self.files.items():
            file = root / name
            if not file.is_file():
                found.append(f"{file}: listed in the manifest but missing")
            elif sha256_file(file) != digest:
                found.append(f"{file}: sha256 differs from the manifest")
        if exhaustive:
            skipped = set(skip) | set(self.files)
            found += [f"{root / rel}: not listed in the manifest"
                      for rel in sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
                      if rel not in skipped]
        return found

    def verify(self, root: str | Path, *, exhaustive: bool = False, skip: Iterable[str] = (MANIFEST_NAME,),
               hint: str = "restore or rebuild it") -> Manifest:
        found = self.problems(root, exhaustive=exhaustive, skip=skip)
        if found:
            more = f" (and {len(found) - 5} more)" if len(found) > 5 else ""
            raise ManifestError(f"{root}: does not match its manifest — {'; '.join(found[:5])}{more}; "
                                f"the files changed or are corrupt: {hint}")
        return self


def _stamped(meta: dict[str, Any]) -> dict[str, Any]:
    return {"code_version": code_version(), "created": utc_now(), **meta}


def artifact_problems(folder: str | Path, name: str = MANIFEST_NAME, *, exhaustive: bool = False) -> list[str]:
    """Problems with the artifact in `folder` against its manifest ([] when it verifies); a missing or
    unreadable manifest is a problem, not an exception."""
    try:
        manifest = Manifest.read(Path(folder) / name)
    except ManifestError as exc:
        return [str(exc)]
    return manifest.problems(folder, exhaustive=exhaustive, skip=(name,))


def verify_artifact(folder: str | Path, name: str = MANIFEST_NAME, *, exhaustive: bool = False,
                    hint: str = "restore or rebuild it") -> Manifest:
    """The manifest of the artifact in `folder` once every file matches it; raises `ManifestError`."""
    return Manifest.read(Path(folder) / name).verify(folder, exhaustive=exhaustive, skip=(name,), hint=hint)


__all__ = [
    "MANIFEST_NAME", "ArtifactError", "CheckpointError", "Manifest", "ManifestError", "artifact_problems",
    "atomic_dir", "atomic_path", "atomic_write_bytes", "atomic_write_json", "atomic_write_text", "code_version",
    "hash_tree", "is_temp_name", "publish_dir", "remove_stale_temps", "sha256_file", "shared_staging_path",
    "staging_dir", "utc_now", "verify_artifact",
]
