"""Assemble a DICOM series folder into one `Volume`: slices sorted by position along the slice normal, with
orientation, pixel spacing and slice spacing checked for consistency."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom.pixels import apply_modality_lut

from breastgpt.io.dicom import decode_pixels, describe_dataset, read_dataset
from breastgpt.io.errors import CorruptFileError, LimitExceededError, MedicalFileError, MissingMetadataError, UnsupportedFormatError
from breastgpt.io.limits import DEFAULT_LIMITS, ReadLimits
from breastgpt.io.volume import Volume

SPACING_TOLERANCE_MM = 0.01
RELATIVE_SPACING_TOLERANCE = 0.01


def _series_headers(folder: Path, limits: ReadLimits) -> dict[str, list[tuple[Path, pydicom.Dataset]]]:
    series: dict[str, list[tuple[Path, pydicom.Dataset]]] = {}
    for path in sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")):
        try:
            header = read_dataset(path, header_only=True, limits=limits)
        except MedicalFileError:
            continue  # non-DICOM side files (DICOMDIR readmes, thumbnails) are common in series folders
        if "ImagePositionPatient" in header or "Rows" in header:
            series.setdefault(str(header.get("SeriesInstanceUID", "")), []).append((path, header))
    return series


def _pick_series(folder: Path, series: dict, series_uid: str | None) -> list[tuple[Path, pydicom.Dataset]]:
    if not series:
        raise UnsupportedFormatError(folder, "folder holds no DICOM image slices", "point at a DICOM series folder")
    if series_uid is not None:
        if series_uid not in series:
            raise UnsupportedFormatError(folder, f"series {series_uid} not in folder", f"choose one of {sorted(series)}")
        return series[series_uid]
    if len(series) > 1:
        counts = ", ".join(f"{uid} ({len(items)} slices)" for uid, items in sorted(series.items()))
        raise UnsupportedFormatError(folder, f"folder mixes {len(series)} series: {counts}",
                                     "pass series_uid or split the folder by series")
    return next(iter(series.values()))


def _geometry(path: Path, header: pydicom.Dataset) -> tuple[np.ndarray, np.ndarray, tuple[float, float]]:
    try:
        orientation = np.asarray([float(v) for v in header.ImageOrientationPatient], dtype=float)
        position = np.asarray([float(v) for v in header.ImagePositionPatient], dtype=float)
        row_spacing, col_spacing = (float(v) for v in header.PixelSpacing)
    except (AttributeError, TypeError, ValueError) as exc:
        raise MissingMetadataError(path, f"slice lacks orientation/position/pixel spacing ({exc})",
                                   "a series without geometry cannot be stacked; convert it with its scanner software") from exc
    return orientation, position, (row_spacing, col_spacing)


@dataclass
class SeriesGeometry:
    """Slices of one series in position order, with the geometry checked from headers alone."""

    slices: list[tuple[Path, pydicom.Dataset]]  # sorted along the slice normal
    spacing: tuple[float, float, float]  # (z, y, x) mm
    origin: tuple[float, float, float]
    direction: tuple[float, ...]


def series_geometry(folder: str | Path, *, series_uid: str | None = None, limits: ReadLimits = DEFAULT_LIMITS) -> SeriesGeometry:
    """Sort a series folder's slices along the slice normal and check orientation and spacing (no pixel decoding)."""
    folder = Path(folder)
    slices = _pick_series(folder, _series_headers(folder, limits), series_uid)
    geometries = [_geometry(path, header) for path, header in slices]
    orientation, _, pixel_spacing = geometries[0]
    for (path, _), (other, _, other_spacing) in zip(slices, geometries):
        if not np.allclose(other, orientation, atol=1e-4) or not np.allclose(other_spacing, pixel_spacing, atol=1e-4):
            raise CorruptFileError(path, "slice orientation or pixel spacing differs from the rest of the series",
                                   "the folder may mix acquisitions; split it")
    row_cosine, col_cosine = orientation[:3], orientation[3:]
    normal = np.cross(row_cosine, col_cosine)
    positions = np.array([float(np.dot(g[1], normal)) for g in geometries])
    order = [int(i) for i in np.argsort(positions, kind="stable")]
    return SeriesGeometry(
        slices=[slices[i] for i in order],
        spacing=(_uniform_spacing(folder, positions[order]), pixel_spacing[0], pixel_spacing[1]),
        origin=tuple(float(v) for v in geometries[order[0]][1]),  # type: ignore[arg-type]
        direction=tuple(float(v) for v in np.column_stack([row_cosine, col_cosine, normal]).reshape(-1)),
    )


def series_metadata(geometry: SeriesGeometry) -> dict[str, object]:
    first = geometry.slices[0][1]
    metadata = {k: v for k, v in describe_dataset(first).items()
                if k in {"modality", "vendor", "model", "body_part", "transfer_syntax", "photometric_interpretation",
                         "windows", "slice_thickness_mm"}}
    metadata.update({"format": "dicom-series", "reader": f"pydicom {pydicom.__version__}", "slices": len(geometry.slices)})
    return metadata


def describe_dicom_series(folder: str | Path, *, limits: ReadLimits = DEFAULT_LIMITS) -> dict[str, object]:
    """Header-only description of a series folder, in the same shape as `Volume.describe()`."""
    geometry = series_geometry(folder, limits=limits)
    first = geometry.slices[0][1]
    placeholder = Volume(array=np.empty((len(geometry.slices), int(first.Rows), int(first.Columns)), dtype=np.uint8),
                         spacing=geometry.spacing, origin=geometry.origin, direction=geometry.direction,
                         metadata=series_metadata(geometry))
    return placeholder.describe()


def read_dicom_series(folder: str | Path, *, series_uid: str | None = None, limits: ReadLimits = DEFAULT_LIMITS) -> Volume:
    """Read one DICOM series from a folder into a (Z, Y, X) volume of modality values (HU for CT)."""
    folder = Path(folder)
    geometry = series_geometry(folder, series_uid=series_uid, limits=limits)
    first = geometry.slices[0][1]
    if len(geometry.slices) * int(first.Rows) * int(first.Columns) > limits.max_total_pixels:
        raise LimitExceededError(folder, "series exceeds the configured voxel limit", "raise ReadLimits.max_total_pixels")
    planes = [_decode_slice(path, limits) for path, _ in geometry.slices]
    shapes = {plane.shape for plane in planes}
    if len(shapes) != 1:
        raise CorruptFileError(folder, f"slices have different sizes {sorted(shapes)}", "split the folder by acquisition")
    return Volume(array=np.stack(planes), spacing=geometry.spacing, origin=geometry.origin,
                  direction=geometry.direction, metadata=series_metadata(geometry))


def _uniform_spacing(folder: Path, sorted_positions: np.ndarray) -> float:
    if len(sorted_positions) < 2:
        return 1.0
    gaps = np.diff(sorted_positions)
    if np.any(gaps < SPACING_TOLERANCE_MM):
        raise CorruptFileError(folder, "two slices share a position (duplicate or multi-phase series)",
                               "split the folder so each holds one phase")
    median = float(np.median(gaps))
    if np.max(np.abs(gaps - median)) > max(SPACING_TOLERANCE_MM, RELATIVE_SPACING_TOLERANCE * median):
        raise CorruptFileError(folder, f"slice spacing is not uniform (gaps {gaps.min():.3f}–{gaps.max():.3f} mm): "
                               "slices are missing or the series is irregular", "complete the series or resample it first")
    return median


def _decode_slice(path: Path, limits: ReadLimits) -> np.ndarray:
    dataset = read_dataset(path, limits=limits)
    stored = decode_pixels(path, dataset, limits)
    if stored.ndim != 2:
        raise UnsupportedFormatError(path, f"series slice has shape {stored.shape}; expected one grey frame",
                                     "multi-frame or colour slices are not stacked as a series")
    return apply_modality_lut(stored, dataset).astype(np.float32)
