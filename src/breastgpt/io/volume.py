"""3-D volumes: NIfTI, NRRD and DICOM series folders → (Z, Y, X) arrays with spacing and orientation.

Orientation is reported as ITK/DICOM does (LPS patient coordinates, direction cosines of the x, y, z index
axes as the columns of a 3×3 matrix). NIfTI and NRRD are read with SimpleITK (nibabel as the fallback for NIfTI
files ITK refuses, e.g. non-orthonormal affines); DICOM series are assembled here from pydicom-decoded slices so
that every slice passes the same limits and decoder plugins as single images.
"""

from __future__ import annotations

import gzip
import math
import zlib
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from breastgpt.io.errors import CorruptFileError, LimitExceededError, MissingMetadataError, UnsupportedFormatError
from breastgpt.io.files import check_regular_file, read_head
from breastgpt.io.limits import DEFAULT_LIMITS, ReadLimits, check_decoded_bytes
from breastgpt.io.volume_headers import VoxelData, nifti_voxel_data, nrrd_voxel_data, verify_voxel_bytes


@dataclass
class Volume:
    """A scalar volume in (Z, Y, X) index order with physical geometry in millimetres."""

    array: np.ndarray  # (Z, Y, X), modality values (HU for CT)
    spacing: tuple[float, float, float]  # (z, y, x) mm
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0)  # (x, y, z) LPS mm of voxel (0,0,0)
    direction: tuple[float, ...] = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)  # row-major 3×3, ITK convention
    metadata: dict[str, object] = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(n) for n in self.array.shape)  # type: ignore[return-value]

    def describe(self) -> dict[str, object]:
        return volume_description(self.shape, self.spacing, self.origin, self.direction, self.metadata)


def volume_description(shape: tuple[int, int, int], spacing: tuple[float, float, float], origin: tuple[float, ...],
                       direction: tuple[float, ...], metadata: dict[str, object]) -> dict[str, object]:
    """JSON-ready description of a volume's geometry (also for headers read without their voxels)."""
    return {
        "kind": "volume",
        **{k: v for k, v in metadata.items() if k not in {"kind"}},
        "dimensions": {"depth": shape[0], "height": shape[1], "width": shape[2]},
        "spacing_mm": {"z": spacing[0], "y": spacing[1], "x": spacing[2]},
        "origin_lps_mm": list(origin),
        "direction": list(direction),
        "orientation": orientation_code(direction),
    }


def orientation_code(direction: tuple[float, ...]) -> str:
    """Three-letter code of the patient direction each index axis points to (ITK 'RAI'-style, LPS space)."""
    matrix = np.asarray(direction, dtype=float).reshape(3, 3)
    letters = (("L", "R"), ("P", "A"), ("S", "I"))  # + / − along LPS x, y, z
    code = ""
    for column in matrix.T:
        axis = int(np.argmax(np.abs(column)))
        code += letters[axis][0] if column[axis] > 0 else letters[axis][1]
    return code


def read_volume(path: str | Path, *, limits: ReadLimits = DEFAULT_LIMITS) -> Volume:
    """Read a NIfTI (.nii/.nii.gz/.hdr+.img), NRRD (attached .nrrd/.nhdr) file or a DICOM series folder, by content."""
    path = Path(path)
    if path.is_dir():
        from breastgpt.io.dicom_series import read_dicom_series

        return read_dicom_series(path, limits=limits)
    fmt = _checked_volume_format(path, limits)
    verify_voxel_bytes(path, voxel_data(path, fmt, limits))
    try:
        return _read_with_sitk(path, fmt, limits)
    except (CorruptFileError, UnsupportedFormatError) as sitk_error:
        if fmt != "nifti":
            raise
        return _read_nifti_with_nibabel(path, limits, sitk_error)


def _checked_volume_format(path: Path, limits: ReadLimits) -> str:
    check_regular_file(path, limits)
    fmt = sniff_volume_format(path)
    if fmt is None:
        raise UnsupportedFormatError(path, "not a NIfTI or NRRD volume, nor a DICOM series folder",
                                     "pass a .nii/.nii.gz/.nrrd file or a folder of DICOM slices")
    return fmt


def voxel_data(path: Path, fmt: str, limits: ReadLimits) -> VoxelData:
    """Header checks before any voxel is read: where the voxels are, their declared bytes against the limits."""
    return nifti_voxel_data(path, limits) if fmt == "nifti" else nrrd_voxel_data(path, limits)


def sniff_volume_format(path: Path) -> str | None:
    """'nifti' or 'nrrd' from the file's first bytes (gzip-compressed NIfTI included), else None."""
    head = read_head(path, 352)
    if head[:2] == b"\x1f\x8b":
        try:
            with gzip.open(path, "rb") as handle:
                head = handle.read(352)
        except (OSError, EOFError, zlib.error):
            return None
    if head[:4] == b"NRRD":
        return "nrrd"
    if len(head) >= 348 and (head[344:348] in (b"n+1\x00", b"ni1\x00") or head[4:8] in (b"n+2\x00", b"ni2\x00")
                             or int.from_bytes(head[:4], "little") in (348, 540)
                             or int.from_bytes(head[:4], "big") in (348, 540)):
        return "nifti"
    return None


_SITK_ITEMSIZE = {"8-bit unsigned integer": 1, "8-bit signed integer": 1, "16-bit unsigned integer": 2,
                  "16-bit signed integer": 2, "32-bit unsigned integer": 4, "32-bit signed integer": 4,
                  "64-bit unsigned integer": 8, "64-bit signed integer": 8, "32-bit float": 4, "64-bit float": 8}


def _sitk_header(path: Path, fmt: str, limits: ReadLimits):  # noqa: ANN202 - a SimpleITK reader
    """ITK's reading of the header (no voxels): a 3-D scalar image within the limits, with usable geometry."""
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    reader.SetImageIO("NiftiImageIO" if fmt == "nifti" else "NrrdImageIO")
    try:
        reader.ReadImageInformation()
    except RuntimeError as exc:
        raise CorruptFileError(path, f"unreadable {fmt.upper()} header ({_first_line(exc)})", "re-export the volume") from exc
    size, pixel = reader.GetSize(), sitk.GetPixelIDValueAsString(reader.GetPixelID())
    if len(size) != 3 or reader.GetNumberOfComponents() != 1 or pixel not in _SITK_ITEMSIZE:
        raise UnsupportedFormatError(path, f"expected a 3-D scalar volume, got {len(size)}-D {pixel} with "
                                     f"{reader.GetNumberOfComponents()} components", "split the channels first")
    _check_volume_limits(path, size, 1, limits)
    check_decoded_bytes(path, math.prod(size) * _SITK_ITEMSIZE[pixel], f"a {size} {pixel} volume", limits)
    check_geometry(path, reader.GetSpacing(), reader.GetOrigin(), reader.GetDirection())
    return reader


def check_geometry(path: Path, spacing: tuple[float, ...], origin: tuple[float, ...], direction: tuple[float, ...]) -> None:
    """Spacing finite and positive, origin and direction finite: anything else is a broken header."""
    if not all(math.isfinite(s) and s > 0 for s in spacing):
        raise CorruptFileError(path, f"voxel spacing {tuple(spacing)} is not finite and positive", "fix the header's spacing")
    if not all(math.isfinite(v) for v in (*origin, *direction)):
        raise CorruptFileError(path, "origin or direction cosines are not finite numbers", "fix the header's geometry")


def _read_with_sitk(path: Path, fmt: str, limits: ReadLimits) -> Volume:
    import SimpleITK as sitk

    reader = _sitk_header(path, fmt, limits)
    try:
        image = reader.Execute()
    except RuntimeError as exc:
        raise CorruptFileError(path, f"{fmt.upper()} data could not be read ({_first_line(exc)})",
                               "the file may be truncated; re-export or re-download it") from exc
    spacing = image.GetSpacing()
    return Volume(
        array=sitk.GetArrayFromImage(image),
        spacing=(float(spacing[2]), float(spacing[1]), float(spacing[0])),
        origin=tuple(float(v) for v in image.GetOrigin()),  # type: ignore[arg-type]
        direction=tuple(float(v) for v in image.GetDirection()),
        metadata={"format": fmt, "reader": f"SimpleITK {sitk.Version_VersionString()}",
                  "dtype": str(sitk.GetArrayViewFromImage(image).dtype)},
    )


def _read_nifti_with_nibabel(path: Path, limits: ReadLimits, cause: Exception) -> Volume:
    import nibabel as nib

    try:
        image = nib.load(str(path))
        shape = tuple(int(n) for n in image.shape)
        scaled = image.dataobj.slope != 1 or image.dataobj.inter != 0
        itemsize = max(image.get_data_dtype().itemsize, 8 if scaled else 1)  # scaled data comes back as float64
    except Exception as exc:
        raise CorruptFileError(path, f"unreadable NIfTI ({type(exc).__name__}: {exc})", "re-export the volume") from cause
    if len(shape) != 3:
        raise UnsupportedFormatError(path, f"expected a 3-D volume, got shape {shape}", "select one volume first")
    _check_volume_limits(path, shape, 1, limits)
    check_decoded_bytes(path, math.prod(shape) * itemsize, f"a {shape} volume", limits)
    affine = image.affine.copy()
    affine[:2] *= -1  # RAS (NIfTI) → LPS (ITK/DICOM)
    zooms = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    check_geometry(path, tuple(zooms), tuple(affine[:3, 3]), tuple(affine[:3, :3].reshape(-1)))
    try:
        data = np.asarray(image.dataobj)
    except Exception as exc:
        raise CorruptFileError(path, f"NIfTI data could not be read ({type(exc).__name__}: {exc})",
                               "the file may be truncated") from exc
    direction = affine[:3, :3] / zooms
    return Volume(
        array=np.ascontiguousarray(np.transpose(data, (2, 1, 0))),
        spacing=(float(zooms[2]), float(zooms[1]), float(zooms[0])),
        origin=tuple(float(v) for v in affine[:3, 3]),  # type: ignore[arg-type]
        direction=tuple(float(v) for v in direction.reshape(-1)),
        metadata={"format": "nifti", "reader": f"nibabel {nib.__version__}", "dtype": str(data.dtype),
                  "note": "read with nibabel: SimpleITK refused the file"},
    )


def _check_volume_limits(path: Path, size: tuple[int, ...], components: int, limits: ReadLimits) -> None:
    voxels = int(np.prod(size, dtype=object)) * max(components, 1)
    if voxels > limits.max_total_pixels:
        raise LimitExceededError(path, f"volume of {size} voxels exceeds {limits.max_total_pixels}",
                                 "raise ReadLimits.max_total_pixels if the file is trusted")
    if len(size) >= 3 and size[2] > limits.max_frames:
        raise LimitExceededError(path, f"{size[2]} slices exceed {limits.max_frames}", "raise ReadLimits.max_frames")


def _first_line(exc: Exception) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__


def with_array(volume: Volume, array: np.ndarray, spacing: tuple[float, float, float]) -> Volume:
    """A copy of `volume` holding a new array and spacing (geometry otherwise unchanged)."""
    return replace(volume, array=array, spacing=spacing)


def require_spacing(volume: Volume, path: str | Path) -> None:
    if any(not np.isfinite(s) or s <= 0 for s in volume.spacing):
        raise MissingMetadataError(path, f"invalid voxel spacing {volume.spacing}", "fix the header's spacing")


def describe_volume_file(path: str | Path, *, limits: ReadLimits = DEFAULT_LIMITS) -> dict[str, object]:
    """Header-only description of a NIfTI/NRRD file (falls back to a full read when ITK refuses the header).

    The header checks of a full read apply (limits, data location); uncompressed voxel data is also checked to be
    complete, which costs a `stat`; a compressed stream is checked by the full read only.
    """
    import SimpleITK as sitk

    path = Path(path)
    if path.is_dir():
        return read_volume(path, limits=limits).describe()
    fmt = _checked_volume_format(path, limits)
    data = voxel_data(path, fmt, limits)
    if data.encoding == "raw":
        verify_voxel_bytes(path, data)
    try:
        reader = _sitk_header(path, fmt, limits)
    except CorruptFileError:
        if fmt != "nifti":
            raise
        return read_volume(path, limits=limits).describe()
    size, spacing = reader.GetSize(), reader.GetSpacing()
    return volume_description((size[2], size[1], size[0]), (float(spacing[2]), float(spacing[1]), float(spacing[0])),
                              tuple(float(v) for v in reader.GetOrigin()), tuple(float(v) for v in reader.GetDirection()),
                              {"format": fmt, "reader": f"SimpleITK {sitk.Version_VersionString()}",
                               "dtype": sitk.GetPixelIDValueAsString(reader.GetPixelID())})


def read_corpus_volume(path: str | Path) -> np.ndarray:
    """A corpus volume file: NPZ holding a windowed uint8 `array` (Z, Y, X), read without unpickling."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            volume = np.asarray(data["array"])
    except (OSError, KeyError, ValueError, EOFError) as exc:
        raise CorruptFileError(path, f"not a corpus volume file ({exc})", "rebuild the corpus media") from exc
    if volume.ndim != 3 or volume.dtype != np.uint8:
        raise CorruptFileError(path, f"volume array is {volume.dtype} {volume.shape}, expected uint8 (Z, Y, X)",
                               "rebuild the corpus media")
    return volume
