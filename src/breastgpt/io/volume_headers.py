"""NIfTI and NRRD headers parsed and checked here before a library reads the voxel data.

SimpleITK decodes the voxels, but it follows a NRRD `data file:` wherever it points, zero-fills a truncated
gzip stream and allocates whatever the header declares. So each file is checked first: where its voxel bytes
live (the file itself, or for a NIfTI `.hdr` the `.img` of the same name in the same folder — never a path
written in the header), how many bytes the declared array needs (against `ReadLimits.max_decoded_bytes`), and
whether the stored stream really holds that many bytes (raw size, or gzip/bzip2 inflated chunk by chunk to
its end-of-stream checksum, never more than 1 MiB past the declared length).
"""

from __future__ import annotations

import bz2
import gzip
import io
import math
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from breastgpt.io.errors import CorruptFileError, UnsupportedFormatError
from breastgpt.io.files import check_regular_file, companion_file
from breastgpt.io.limits import ReadLimits, check_decoded_bytes

GZIP_MAGIC = b"\x1f\x8b"
NRRD_HEADER_MAX_BYTES = 1024 * 1024  # real NRRD headers are a few hundred bytes; a longer one is not a header
_CHUNK = 1024 * 1024
TRAILING_SLACK = 1024 * 1024  # inflated bytes tolerated after the declared voxels (padding some writers add)


@dataclass(frozen=True)
class VoxelData:
    """Where a volume's voxel bytes are and how many the header declares."""

    path: Path  # the file holding the voxels (the volume file, or a NIfTI pair's .img)
    encoding: str  # raw | gzip | bzip2 | ascii | hex
    start: int  # where the stored stream begins in the file (after a NRRD header)
    offset: int  # bytes of the (inflated) stream before the voxels
    nbytes: int  # declared voxel bytes
    count: int  # declared values (voxels × components)
    from_end: bool = False  # NRRD `byte skip: -1`: the voxels are the last `nbytes` of the file


# ---------------------------------------------------------------------------------------------- NIfTI

def nifti_voxel_data(path: Path, limits: ReadLimits) -> VoxelData:
    """Parse and check a NIfTI-1/-2 or ANALYZE header; locate its voxel bytes."""
    head = _inflated_head(path, 540)
    header = _nifti_header(path, head)
    shape = _nifti_shape(path, header)
    try:
        dtype = header.get_data_dtype()
    except (KeyError, ValueError, TypeError) as exc:
        raise CorruptFileError(path, f"NIfTI datatype code {int(header['datatype'])} is not a known type",
                               "re-export the volume") from exc
    count = math.prod(shape)
    nbytes = count * dtype.itemsize
    check_decoded_bytes(path, nbytes, f"a {'×'.join(map(str, shape))} {dtype.name} volume", limits)
    spacing = [float(v) for v in header["pixdim"][1:min(len(shape), 3) + 1]]
    _check_finite(path, "pixel dimensions", spacing)
    if 0.0 in spacing:  # ITK would substitute 1 mm without a word
        raise CorruptFileError(path, f"NIfTI pixel dimensions {spacing} include 0", "fix the header's voxel size")
    offset = _nifti_offset(path, header)
    magic = bytes(header["magic"]) if "magic" in header else b""
    data_path = path if magic.startswith((b"n+1", b"n+2")) else _nifti_image_file(path)
    return VoxelData(data_path, "gzip" if _is_gzip(data_path) else "raw", 0, offset, nbytes, count)


def _nifti_header(path: Path, head: bytes):  # noqa: ANN202 - a nibabel header class
    import nibabel as nib

    for order in ("<", ">"):
        sizeof = int(np.frombuffer(head[:4], dtype=f"{order}i4")[0]) if len(head) >= 4 else 0
        if sizeof == 348 and len(head) >= 348:
            cls = nib.Nifti1Header if head[344:347] in (b"n+1", b"ni1") else nib.AnalyzeHeader
            return cls.from_fileobj(io.BytesIO(head[:348]), check=False)
        if sizeof == 540 and len(head) >= 540:
            return nib.Nifti2Header.from_fileobj(io.BytesIO(head[:540]), check=False)
    raise CorruptFileError(path, "NIfTI header is truncated or its size field is wrong", "re-export the volume")


def _nifti_shape(path: Path, header) -> tuple[int, ...]:  # noqa: ANN001
    dim = [int(v) for v in header["dim"]]
    if not 1 <= dim[0] <= 7:
        raise CorruptFileError(path, f"NIfTI header declares {dim[0]} dimensions (valid: 1–7)", "re-export the volume")
    shape = tuple(dim[1:dim[0] + 1])
    if any(n <= 0 for n in shape):
        raise CorruptFileError(path, f"NIfTI header declares an impossible size {shape}", "re-export the volume")
    return shape


def _nifti_offset(path: Path, header) -> int:  # noqa: ANN001
    offset = float(header["vox_offset"])
    if not math.isfinite(offset) or offset < 0 or offset != int(offset):
        raise CorruptFileError(path, f"NIfTI voxel offset {offset} is invalid", "re-export the volume")
    return int(offset)


def _nifti_image_file(path: Path) -> Path:
    """The `.img` of a `.hdr`/`.img` pair: same name, same folder, a regular file (never a path from the header)."""
    name = path.name
    for suffix in (".hdr.gz", ".hdr", ".HDR", ".nii.gz", ".nii"):
        if name.endswith(suffix):
            stem = name[: -len(suffix)]
            break
    else:
        stem = path.stem
    names = [f"{stem}.img", f"{stem}.img.gz", f"{stem}.IMG", f"{stem}.IMG.gz"]
    found = companion_file(path, names, "image file (.img)")
    if found is None:
        raise CorruptFileError(path, "header of a .hdr/.img pair without its .img in the same folder",
                               "copy the .img next to the .hdr, or convert the pair to one .nii file")
    return found


# ---------------------------------------------------------------------------------------------- NRRD

_NRRD_TYPES = {
    1: ("signed char", "int8", "int8_t", "uchar", "unsigned char", "uint8", "uint8_t"),
    2: ("short", "short int", "signed short", "signed short int", "int16", "int16_t", "ushort", "unsigned short",
        "unsigned short int", "uint16", "uint16_t"),
    4: ("int", "signed int", "int32", "int32_t", "uint", "unsigned int", "uint32", "uint32_t", "float"),
    8: ("longlong", "long long", "long long int", "signed long long", "signed long long int", "int64", "int64_t",
        "ulonglong", "unsigned long long", "unsigned long long int", "uint64", "uint64_t", "double"),
}
_NRRD_ITEMSIZE = {name: size for size, names in _NRRD_TYPES.items() for name in names}
_NRRD_ENCODINGS = {"raw": "raw", "gzip": "gzip", "gz": "gzip", "bzip2": "bzip2", "bz2": "bzip2", "ascii": "ascii",
                   "text": "ascii", "txt": "ascii", "hex": "hex"}


def nrrd_voxel_data(path: Path, limits: ReadLimits) -> VoxelData:
    """Parse and check an attached NRRD header; refuse detached data (`data file:`) outright."""
    fields, header_length = _nrrd_fields(path)
    sizes = _nrrd_sizes(path, fields)
    kind = fields.get("type", "")
    if kind not in _NRRD_ITEMSIZE:
        raise UnsupportedFormatError(path, f"NRRD type {kind[:40]!r} is not a supported scalar type", "re-export the volume")
    encoding = _NRRD_ENCODINGS.get(fields.get("encoding", ""))
    if encoding is None:
        raise UnsupportedFormatError(path, f"NRRD encoding {fields.get('encoding', '')[:40]!r} is not supported",
                                     "re-export with raw or gzip encoding")
    count = math.prod(sizes)
    nbytes = count * _NRRD_ITEMSIZE[kind]
    check_decoded_bytes(path, nbytes, f"a {'×'.join(map(str, sizes))} {kind} volume", limits)
    _check_nrrd_geometry(path, fields)
    line_skip, byte_skip = _nrrd_int(path, fields, "line skip"), _nrrd_int(path, fields, "byte skip", allow=-1)
    if byte_skip == -1 and encoding != "raw":
        raise CorruptFileError(path, "NRRD `byte skip: -1` is only valid for raw encoding", "re-export the volume")
    data_start = _skip_lines(path, header_length, line_skip)
    offset = 0 if encoding in ("ascii", "hex") else max(byte_skip, 0)
    return VoxelData(path, encoding, data_start, offset, nbytes, count, from_end=byte_skip == -1)


def _nrrd_fields(path: Path) -> tuple[dict[str, str], int]:
    with path.open("rb") as handle:
        head = handle.read(NRRD_HEADER_MAX_BYTES + 1)
    end = head.find(b"\n\n")
    end_crlf = head.find(b"\r\n\r\n")
    if end < 0 and end_crlf < 0:
        raise CorruptFileError(path, "NRRD header has no end (blank line) within the first MiB", "re-export the volume")
    length = end + 2 if end_crlf < 0 or 0 <= end < end_crlf else end_crlf + 4
    fields: dict[str, str] = {}
    for raw in head[:length].splitlines()[1:]:
        line = raw.decode("latin-1").strip()
        if line.lower().replace(" ", "").startswith("datafile"):
            # Checked before any other parsing, whatever follows the name: the target is never looked at.
            raise UnsupportedFormatError(path, "NRRD header names a separate data file; files named inside a file "
                                               "are never read", "convert it to a single attached .nrrd file")
        if not line or line.startswith("#") or ":=" in line:  # comments and key/value pairs
            continue
        key, _, value = line.partition(":")
        fields[key.strip().lower()] = value.strip()
    return fields, length


def _nrrd_sizes(path: Path, fields: dict[str, str]) -> tuple[int, ...]:
    try:
        dimension = int(fields["dimension"])
        sizes = tuple(int(v) for v in fields["sizes"].split())
    except (KeyError, ValueError) as exc:
        raise CorruptFileError(path, "NRRD header lacks a valid dimension or sizes field", "re-export the volume") from exc
    if not 1 <= dimension <= 16 or len(sizes) != dimension or any(n <= 0 for n in sizes):
        raise CorruptFileError(path, f"NRRD header declares an impossible size {sizes[:16]} for dimension {dimension}",
                               "re-export the volume")
    return sizes


def _nrrd_int(path: Path, fields: dict[str, str], key: str, *, allow: int = 0) -> int:
    try:
        value = int(fields.get(key, "0"))
    except ValueError as exc:
        raise CorruptFileError(path, f"NRRD field {key!r} is not an integer", "re-export the volume") from exc
    if value < 0 and value != allow:
        raise CorruptFileError(path, f"NRRD field {key!r} is negative", "re-export the volume")
    return value


def _check_nrrd_geometry(path: Path, fields: dict[str, str]) -> None:
    """Spacings, directions and origin must be numbers where given ('nan'/'none' only mark non-spatial axes)."""
    for key in ("space directions", "space origin", "spacings"):
        text = fields.get(key, "").replace("(", " ").replace(")", " ").replace(",", " ")
        values = [v for v in text.split() if v.lower() not in ("none", "nan")]
        try:
            numbers = [float(v) for v in values]
        except ValueError as exc:
            raise CorruptFileError(path, f"NRRD field {key!r} holds non-numbers", "re-export the volume") from exc
        _check_finite(path, f"NRRD {key}", numbers)


def _skip_lines(path: Path, start: int, lines: int) -> int:
    if lines == 0:
        return start
    with path.open("rb") as handle:
        handle.seek(start)
        for _ in range(lines):
            if not handle.readline(NRRD_HEADER_MAX_BYTES):
                raise CorruptFileError(path, "NRRD data ends inside its skipped lines", "the file is truncated")
        return handle.tell()


# ---------------------------------------------------------------------------------------------- voxel bytes

def verify_voxel_bytes(path: Path, data: VoxelData) -> None:
    """Check that the stored stream holds all declared voxel bytes, inflating at most that many bytes."""
    if data.encoding == "raw":
        size = check_regular_file(data.path, what="voxel data file")
        held = size - data.start - (0 if data.from_end else data.offset)
        if held < data.nbytes:
            raise CorruptFileError(path, f"voxel data is truncated: {data.nbytes:,} bytes declared, the file holds "
                                         f"{max(held, 0):,}", "re-export or re-download it")
        return
    if data.encoding in ("ascii", "hex"):
        _verify_text_values(path, data)
        return
    _verify_compressed(path, data)


def _verify_compressed(path: Path, data: VoxelData) -> None:
    """Inflate the whole stream in chunks: it must reach the declared length and end (with its checksum, which
    is the only sign of damaged blocks that still inflate) within `TRAILING_SLACK` bytes after it."""
    wanted = data.offset + data.nbytes
    opener = gzip.GzipFile if data.encoding == "gzip" else bz2.BZ2File
    got = 0
    try:
        with data.path.open("rb") as raw:
            raw.seek(data.start)
            with opener(fileobj=raw, mode="rb") as stream:  # type: ignore[call-arg]
                while chunk := stream.read(min(_CHUNK, wanted + TRAILING_SLACK + 1 - got)):
                    got += len(chunk)
                    if got > wanted + TRAILING_SLACK:
                        raise CorruptFileError(path, f"compressed voxel data runs past its {wanted:,} declared bytes",
                                               "re-export the volume")
    except (OSError, EOFError, zlib.error, ValueError) as exc:
        raise CorruptFileError(path, f"compressed voxel data is damaged or ends before its {wanted:,} declared "
                                     f"bytes ({type(exc).__name__}: {exc})", "re-export or re-download it") from exc
    if got < wanted:
        raise CorruptFileError(path, f"compressed voxel data is truncated: {got:,} of {wanted:,} bytes",
                               "re-export or re-download it")


def _verify_text_values(path: Path, data: VoxelData) -> None:
    """ASCII: at least `count` numbers; hex: at least 2 × `nbytes` hex digits."""
    needed = data.count if data.encoding == "ascii" else 2 * data.nbytes
    found, inside_token = 0, False
    with data.path.open("rb") as handle:
        handle.seek(data.start)
        while found < needed:
            chunk = handle.read(_CHUNK)
            if not chunk:
                break
            if data.encoding == "hex":
                found += len(b"".join(chunk.split()))
                continue
            found += len(chunk.split()) - (1 if inside_token and not chunk[:1].isspace() else 0)
            inside_token = not chunk[-1:].isspace()
    if found < needed:
        raise CorruptFileError(path, f"text voxel data is truncated: {found:,} of {needed:,} values",
                               "re-export or re-download it")


def _inflated_head(path: Path, size: int) -> bytes:
    """The first `size` bytes of a file, through gzip when the file is gzip-compressed."""
    with path.open("rb") as handle:
        head = handle.read(size)
    if not head.startswith(GZIP_MAGIC):
        return head
    try:
        with gzip.open(path, "rb") as stream:
            return stream.read(size)
    except (OSError, EOFError, zlib.error) as exc:
        raise CorruptFileError(path, f"gzip stream is damaged ({type(exc).__name__})", "re-export or re-download it") from exc


def _is_gzip(path: Path) -> bool:
    with path.open("rb") as handle:
        return handle.read(2) == GZIP_MAGIC


def _check_finite(path: Path, what: str, values: list[float]) -> None:
    if not all(math.isfinite(v) for v in values):
        raise CorruptFileError(path, f"{what} are not finite numbers", "fix the header's geometry")
