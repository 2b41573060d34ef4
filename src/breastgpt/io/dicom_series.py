"""Assemble a DICOM series folder into one `Volume`: slices sorted by position along the slice normal, with
orientation, pixel spacing and slice spacing checked for consistency."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom

from breastgpt.io.dicom import DicomImage, decode_pixels, describe_dataset, read_dataset
from breastgpt.io.dicom_checks import header_floats, header_int, pixel_geometry, positive_floats
from breastgpt.io.errors import CorruptFileError, LimitExceededError, MedicalFileError, MissingMetadataError, UnsupportedFormatError
from breastgpt.io.limits import DEFAULT_LIMITS, ReadLimits, check_decoded_bytes
from breastgpt.io.volume import Volume, volume_description

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
    """Orientation, position and pixel spacing of one slice: present, numeric, finite, spacing positive."""
    orientation = header_floats(path, header, "ImageOrientationPatient")
    position = header_floats(path, header, "ImagePositionPatient")
    spacing = positive_floats(path, header, "PixelSpacing", 2)
    if orientation is None or position is None or spacing is None:
        raise MissingMetadataError(path, "slice lacks orientation/position/pixel spacing",
                                   "a series without geometry cannot be stacked; convert it with its scanner software")
    if len(orientation) != 6 or len(position) != 3:
        raise CorruptFileError(path, f"ImageOrientationPatient has {len(orientation)} values and ImagePositionPatient "
                                     f"{len(position)} (expected 6 and 3)", "re-export the series")
    row, column = np.asarray(orientation[:3]), np.asarray(orientation[3:])
    if np.linalg.norm(np.cross(row, column)) < 0.5:  # unit cosines must be (nearly) orthogonal to define a normal
        raise CorruptFileError(path, "ImageOrientationPatient's row and column cosines are not orthogonal unit "
                                     "vectors", "re-export the series")
    return np.asarray(orientation, dtype=float), np.asarray(position, dtype=float), (spacing[0], spacing[1])


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
    size = pixel_geometry(slices[0][0], slices[0][1], limits)
    for (path, header), (other, _, other_spacing) in zip(slices, geometries):
        if (header_int(path, header, "Rows"), header_int(path, header, "Columns")) != (size.rows, size.columns):
            raise CorruptFileError(path, "slice size differs from the rest of the series", "split the folder by acquisition")
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
    folder = Path(folder)
    geometry = series_geometry(folder, limits=limits)
    shape = _checked_shape(folder, geometry, limits)
    return volume_description(shape, geometry.spacing, geometry.origin, geometry.direction, series_metadata(geometry))


def _checked_shape(folder: Path, geometry: SeriesGeometry, limits: ReadLimits) -> tuple[int, int, int]:
    """(slices, rows, columns) within the voxel and byte limits of the float32 volume to be built."""
    first_path, first = geometry.slices[0]
    size = pixel_geometry(first_path, first, limits)
    shape = (len(geometry.slices), size.rows, size.columns)
    if math.prod(shape) > limits.max_total_pixels:
        raise LimitExceededError(folder, "series exceeds the configured voxel limit", "raise ReadLimits.max_total_pixels")
    check_decoded_bytes(folder, math.prod(shape) * 4, f"a {shape} float32 series volume", limits)
    return shape


def read_dicom_series(folder: str | Path, *, series_uid: str | None = None, limits: ReadLimits = DEFAULT_LIMITS) -> Volume:
    """Read one DICOM series from a folder into a (Z, Y, X) volume of modality values (HU for CT)."""
    folder = Path(folder)
    geometry = series_geometry(folder, series_uid=series_uid, limits=limits)
    _checked_shape(folder, geometry, limits)
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
    describe_dataset(dataset, path)  # rescale and LUTs checked (finite, non-zero slope) before they are applied
    return DicomImage(path, dataset, stored, {}).modality_values()
