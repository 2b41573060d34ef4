"""Slide feature files (HDF5: `breastgpt slides extract`, TRIDENT, CLAM, hs2p pipelines) read as untrusted input.

HDF5 can place a dataset's bytes in another file (external storage, virtual datasets, external links) and
declare any shape for a chunked dataset; h5py follows and allocates all of it. Here every dataset read is
checked first: a hard link in this file, stored in this file, of the expected rank and dtype kind, its bytes
within `ReadLimits.max_decoded_bytes`; values are checked after reading (finite features, non-negative
coordinates, one coordinate pair per feature row).

Layouts accepted: ``features`` ``(N, D)`` or ``(1, N, D)`` (a batch of one slide) of any float width, and
``coords`` ``(N, 2)`` or ``(1, N, 2)``, integer or float (float coordinates are rounded to whole level-0 pixels).
Attributes are returned both from the file and from the ``coords`` / ``features`` datasets, where other tools
record the tile geometry; `breastgpt.pathology.foreign_features` maps those onto BreastGPT's names.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from breastgpt.io.errors import CorruptFileError, MedicalFileError, UnsupportedFormatError
from breastgpt.io.files import check_regular_file, read_head
from breastgpt.io.limits import DEFAULT_LIMITS, ReadLimits, check_decoded_bytes

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
MAX_ATTRIBUTE_BYTES = 1024 * 1024  # provenance attributes are short strings and numbers
_REEXTRACT = "re-run `breastgpt slides extract` for this slide"
# name: (rank, dtype kinds, required); coords and features may also carry a leading batch axis of one
_DATASETS = {"coords": (2, "iuf", True), "features": (2, "f", True), "thumbnail": (3, "u", False),
             "tissue_mask": (2, "bu", False)}
_BATCHED = ("coords", "features")
_LAYOUT = "expected (N, D) or (1, N, D) features with (N, 2) level-0 coordinates of the same N"


@dataclass(frozen=True)
class FeatureArrays:
    coords: np.ndarray  # (N, 2) int64, level-0 pixels
    features: np.ndarray  # (N, D) float32
    attrs: dict[str, Any]  # the file's own attributes
    thumbnail: np.ndarray | None
    tissue_mask: np.ndarray | None
    dataset_attrs: dict[str, dict[str, Any]]  # attributes on "coords" and "features"


def is_hdf5(path: Path) -> bool:
    return read_head(path, 8) == HDF5_MAGIC


def read_feature_file(path: str | Path, *, limits: ReadLimits = DEFAULT_LIMITS) -> FeatureArrays:
    """Every dataset and attribute of a feature file, checked; typed errors only."""
    path = Path(path)
    with _open(path, limits) as h5:
        datasets = _checked_datasets(path, h5, limits)
        attrs = _attributes(path, h5.attrs, "")
        dataset_attrs = {name: _attributes(path, datasets[name].attrs, f"{name!r} ") for name in _BATCHED}
        arrays = {name: _load(path, dataset) for name, dataset in datasets.items()}
    coords, features = (_unbatched(arrays[name]) for name in _BATCHED)
    _check_values(path, coords, features)
    if coords.dtype.kind == "f":
        coords = np.rint(coords)
    return FeatureArrays(coords.astype(np.int64), features.astype(np.float32), attrs, arrays.get("thumbnail"),
                         arrays.get("tissue_mask"), dataset_attrs)


def describe_feature_file(path: str | Path, *, limits: ReadLimits = DEFAULT_LIMITS) -> dict[str, object]:
    """Header-level description (shapes and provenance, no arrays read) in the shape of `inspect` output."""
    path = Path(path)
    with _open(path, limits) as h5:
        datasets = _checked_datasets(path, h5, limits)
        attrs = _attributes(path, h5.attrs, "")
    tiles, dim = datasets["features"].shape[-2:]
    return {"kind": "slide-features", "format": "hdf5", "tiles": int(tiles), "feature_dim": int(dim),
            "encoder": attrs.get("encoder"), "tile_size": attrs.get("tile_size"), "mpp": attrs.get("target_mpp"),
            "has_thumbnail": "thumbnail" in datasets}


def _open(path: Path, limits: ReadLimits) -> Any:
    import h5py

    check_regular_file(path, limits)
    if not is_hdf5(path):
        raise UnsupportedFormatError(path, "not an HDF5 file", "pass a feature file written by `breastgpt slides extract`")
    try:
        return h5py.File(path, "r", locking=False)
    except Exception as exc:  # h5py raises OSError, and sometimes others, for damaged superblocks
        raise CorruptFileError(path, f"not a readable feature file ({type(exc).__name__}: {exc})", _REEXTRACT) from exc


def _checked_datasets(path: Path, h5: Any, limits: ReadLimits) -> dict[str, Any]:
    import h5py

    found: dict[str, Any] = {}
    total = 0
    for name, (rank, kinds, required) in _DATASETS.items():
        try:
            link = h5.get(name, getlink=True)
            if link is None:
                if required:
                    raise CorruptFileError(path, f"not a readable feature file (no {name!r} dataset)", _REEXTRACT)
                continue
            if not isinstance(link, h5py.HardLink):
                raise UnsupportedFormatError(path, f"{name!r} is a link to elsewhere; files named inside a file are "
                                                   "never read", _REEXTRACT)
            dataset = h5[name]
            _check_dataset(path, name, dataset, rank, kinds)
        except MedicalFileError:
            raise
        except Exception as exc:  # damaged object headers surface as assorted h5py errors
            raise CorruptFileError(path, f"not a readable feature file ({name!r}: {type(exc).__name__}: {exc})",
                                   _REEXTRACT) from exc
        found[name] = dataset
        total += int(np.prod(dataset.shape, dtype=object)) * max(dataset.dtype.itemsize, 4 if name == "features" else 1)
    check_decoded_bytes(path, total, "the feature file's arrays", limits)
    return found


def _check_dataset(path: Path, name: str, dataset: Any, rank: int, kinds: str) -> None:
    import h5py

    if not isinstance(dataset, h5py.Dataset):
        raise CorruptFileError(path, f"{name!r} is not a dataset", _REEXTRACT)
    if dataset.external or dataset.is_virtual:
        raise UnsupportedFormatError(path, f"{name!r} keeps its data in other files; files named inside a file "
                                           "are never read", _REEXTRACT)
    shape = dataset.shape
    if name in _BATCHED and len(shape) == rank + 1 and shape[0] == 1:
        shape = shape[1:]
    if len(shape) != rank or dataset.dtype.kind not in kinds:
        expected = _LAYOUT if name in _BATCHED else f"expected rank {rank} of kind {kinds!r}"
        raise CorruptFileError(path, f"{name!r} is {dataset.dtype} {dataset.shape}; {expected}", _REEXTRACT)
    if name == "coords" and shape[1] != 2:
        raise CorruptFileError(path, f"'coords' has shape {dataset.shape}; {_LAYOUT}", _REEXTRACT)


def _load(path: Path, dataset: Any) -> np.ndarray:
    try:
        return np.asarray(dataset[()])
    except Exception as exc:  # truncated chunks, failed filters
        raise CorruptFileError(path, f"{dataset.name!r} could not be read ({type(exc).__name__}: {exc})",
                               _REEXTRACT) from exc


def _unbatched(array: np.ndarray) -> np.ndarray:
    return array[0] if array.ndim == 3 else array


def _attributes(path: Path, stored: Any, where: str) -> dict[str, Any]:
    attrs: dict[str, Any] = {}
    try:
        for key in stored:
            if stored.get_id(key).get_storage_size() > MAX_ATTRIBUTE_BYTES:
                raise CorruptFileError(path, f"{where}attribute {key!r} is larger than {MAX_ATTRIBUTE_BYTES} bytes",
                                       _REEXTRACT)
            attrs[str(key)] = plain_attribute(stored[key])
    except MedicalFileError:
        raise
    except Exception as exc:  # undecodable attribute types or names
        raise CorruptFileError(path, f"{where}attributes could not be read ({type(exc).__name__}: {exc})",
                               _REEXTRACT) from exc
    return attrs


def plain_attribute(value: Any) -> Any:
    """An HDF5 attribute as a JSON-like value (JSON strings, as written by `write_features`, decoded)."""
    if isinstance(value, bytes):
        value = value.decode()
    if isinstance(value, np.ndarray):
        return [plain_attribute(v) for v in value.tolist()] if value.ndim else plain_attribute(value.item())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, str) and (value[:1] in ("[", "{") or value == "null"):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def _check_values(path: Path, coords: np.ndarray, features: np.ndarray) -> None:
    if len(coords) != len(features):
        raise CorruptFileError(path, f"{len(coords)} coords but {len(features)} feature rows; {_LAYOUT}", _REEXTRACT)
    if coords.dtype.kind == "f" and not np.isfinite(coords).all():
        raise CorruptFileError(path, "coordinates hold NaN or infinity", _REEXTRACT)
    if coords.size and coords.min() < 0:
        raise CorruptFileError(path, "negative tile coordinates", _REEXTRACT)
    if not np.isfinite(features).all():
        raise CorruptFileError(path, "features hold NaN or infinity", _REEXTRACT)
