"""A seeded corpus of broken and hostile files for every reader of `breastgpt.io`.

Seeds are real samples (pydicom's shipped test files, and /work/shared/realdata when present: CT and MRI
volumes, BUSI ultrasound PNGs, an Aperio SVS) and synthetic files written here (a mammogram-like DICOM with
windows and a VOI LUT, NIfTI single files and .hdr/.img pairs, raw and ASCII NRRD, a pyramidal TIFF, a slide
feature HDF5). Each seed is mutated by truncation and bit flips (`scale` × 3 of each), and a fixed set of
header-field edits and hostile files is added: paths to other files written inside a file, devices, FIFOs and
decompression bombs. `build_corpus` is deterministic for a seed and a set of sample files; `fuzz_runner` runs it.
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataelem import RawDataElement
from pydicom.tag import Tag

FORMATS = ("dicom", "raster", "nifti", "nrrd", "slide", "hdf5", "special")
FIXED_UID = "1.2.826.0.1.3680043.10.999.27"  # every generated DICOM gets it: the corpus is byte-identical per seed
HOSTILE_TARGETS = ("/etc/passwd", "/nonexistent/secret", "/dev/zero", "/proc/self/environ")


@dataclass(frozen=True)
class Case:
    name: str  # file name inside the corpus folder
    fmt: str
    mutation: str  # intact | truncate | bitflip | edit | hostile | bomb
    expect: str = ""  # the error class that must be raised, or "accepted"; "" = any typed outcome


class Corpus:
    """Writes files into `folder` and records what each one is."""

    def __init__(self, folder: Path, seed: int) -> None:
        self.folder = folder
        self.rng = np.random.default_rng(seed)
        self.cases: list[Case] = []

    def add(self, name: str, fmt: str, mutation: str, data: bytes | None = None, expect: str = "") -> Path:
        path = self.folder / name
        if data is not None:
            path.write_bytes(data)
        self.cases.append(Case(name, fmt, mutation, expect))
        return path

    def mutate(self, stem: str, fmt: str, data: bytes, scale: int, *, suffix: str = "",
               rewrap: Callable[[bytes], bytes] | None = None) -> None:
        """`3 × scale` truncations and bit-flip sets of `data` (through `rewrap`, e.g. gzip, when given)."""
        wrap = rewrap or (lambda raw: raw)
        for i in range(3 * scale):
            self.add(f"{stem}.trunc{i}{suffix}", fmt, "truncate", wrap(truncate(data, self.rng, i)))
            self.add(f"{stem}.flip{i}{suffix}", fmt, "bitflip", wrap(bitflip(data, self.rng, i)))


def truncate(data: bytes, rng: np.random.Generator, i: int) -> bytes:
    """Cut inside the header (i ≡ 0), in the middle (1) or just before the end (2)."""
    n = len(data)
    cut = [int(rng.integers(8, min(n - 1, 1024))), int(rng.integers(n // 4, 3 * n // 4)),
           n - int(rng.integers(1, min(64, n - 1)))][i % 3]
    return data[:cut]


def bitflip(data: bytes, rng: np.random.Generator, i: int) -> bytes:
    """Flip 1, 4 or 16 bits, half of them within the first 2 KiB where headers live."""
    out = bytearray(data)
    for k in range((1, 4, 16)[i % 3]):
        limit = min(len(out), 2048) if k % 2 == 0 else len(out)
        position = int(rng.integers(0, limit))
        out[position] ^= 1 << int(rng.integers(0, 8))
    return bytes(out)


def repeat_zero_deflate(mebibytes: int, *, raw: bool) -> bytes:
    """A deflate stream of `mebibytes` MiB of zeros built without compressing them: one full-flushed 1 MiB
    block repeated (no final block, so the stream also ends early). Raw deflate, or gzip-framed."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = compressor.compress(b"\0" * 1024 * 1024) + compressor.flush(zlib.Z_FULL_FLUSH)
    body = block * mebibytes
    return body if raw else b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff" + body


def gzip_bytes(data: bytes) -> bytes:
    return gzip.compress(data, compresslevel=6, mtime=0)


# ---------------------------------------------------------------------------------------------- DICOM

def pydicom_file(name: str) -> Path:
    return Path(pydicom.__file__).parent / "data" / "test_files" / name


def dicom_with(source: Path | pydicom.Dataset, **raw: tuple[str, bytes]) -> bytes:
    """A DICOM written from `source` with elements set to raw (VR, bytes) values, bypassing validation."""
    from io import BytesIO

    ds = pydicom.dcmread(source) if isinstance(source, Path) else source
    for keyword, (vr, value) in raw.items():
        tag = Tag(pydicom.datadict.tag_for_keyword(keyword))
        ds[tag] = RawDataElement(tag, vr, len(value), value, 0, ds.is_implicit_VR if hasattr(ds, "is_implicit_VR")
                                 else False, True)
    buffer = BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def mammogram_dicom() -> pydicom.Dataset:
    from pydicom.sequence import Sequence

    from tests.io.dicom_factory import voi_lut_item, write_grey_dicom

    pixels = (np.arange(64 * 48).reshape(64, 48) % 4000).astype(np.uint16)
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        path = write_grey_dicom(Path(folder) / "m.dcm", pixels, bits_stored=12, photometric="MONOCHROME1",
                                WindowCenter=[2000, 1500], WindowWidth=[3000, 1000], RescaleSlope=1, RescaleIntercept=0,
                                PixelSpacing=[0.07, 0.07], VOILUTSequence=Sequence([voi_lut_item(0, list(range(0, 4096, 16)), 12)]))
        ds = pydicom.dcmread(path)
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = FIXED_UID
    return ds


DICOM_EDITS: dict[str, dict[str, tuple[str, bytes]]] = {
    "rows0": {"Rows": ("US", struct.pack("<H", 0))},
    "rows65535": {"Rows": ("US", struct.pack("<H", 65535))},
    "columns1": {"Columns": ("US", struct.pack("<H", 1))},
    "frames_text": {"NumberOfFrames": ("IS", b"abcd")},
    "frames_zero": {"NumberOfFrames": ("IS", b"0 ")},
    "frames_huge": {"NumberOfFrames": ("IS", b"100000")},
    "bits7": {"BitsAllocated": ("US", struct.pack("<H", 7))},
    "samples3": {"SamplesPerPixel": ("US", struct.pack("<H", 3))},
    "spacing_nan": {"PixelSpacing": ("DS", b"NaN\\1 ")},
    "spacing_text": {"PixelSpacing": ("DS", b"abc\\1 ")},
    "spacing_zero": {"PixelSpacing": ("DS", b"0\\0 ")},
    "center_text": {"WindowCenter": ("DS", b"abcd"), "WindowWidth": ("DS", b"400 ")},
    "width_zero": {"WindowCenter": ("DS", b"40"), "WindowWidth": ("DS", b"0 "), "VOILUTFunction": ("CS", b"SIGMOID ")},
    "slope_nan": {"RescaleSlope": ("DS", b"NaN "), "RescaleIntercept": ("DS", b"0 ")},
    "slope_zero": {"RescaleSlope": ("DS", b"0 "), "RescaleIntercept": ("DS", b"0 ")},
    "slope_inf": {"RescaleSlope": ("DS", b"inf "), "RescaleIntercept": ("DS", b"0 ")},
    "photometric": {"PhotometricInterpretation": ("CS", b"FOO ")},
    "highbit": {"BitsStored": ("US", struct.pack("<H", 40))},
}


def add_dicom(corpus: Corpus, realdata: Path | None, scale: int) -> None:
    seeds = {name: pydicom_file(name) for name in ("CT_small.dcm", "MR_small.dcm", "MR_small_RLE.dcm",
                                                   "MR_small_jpeg_ls_lossless.dcm", "MR_small_jp2klossless.dcm",
                                                   "SC_rgb_jpeg_dcmtk.dcm", "SC_rgb_rle_2frame.dcm")}
    if realdata is not None and (realdata / "ct" / "totalseg_example_ct_dicom").is_dir():
        seeds["ct_j2k_slice.dcm"] = sorted((realdata / "ct" / "totalseg_example_ct_dicom").iterdir())[0]
    mammo = corpus.add("mammo.dcm", "dicom", "intact", dicom_with(mammogram_dicom()))
    seeds["mammo.dcm"] = mammo
    for name, path in seeds.items():
        if name != "mammo.dcm":
            corpus.add(f"seed_{name}", "dicom", "intact", path.read_bytes())
        corpus.mutate(f"dicom_{name}", "dicom", path.read_bytes(), scale, suffix=".dcm")
    bases = [seeds["CT_small.dcm"], seeds["MR_small_RLE.dcm"], mammo]
    for i, (edit, elements) in enumerate(DICOM_EDITS.items()):
        expect = "LimitExceededError" if edit == "frames_huge" else "CorruptFileError"
        corpus.add(f"edit_{edit}.dcm", "dicom", "edit", dicom_with(bases[i % len(bases)], **elements), expect=expect)
    corpus.add("edit_ts_not_syntax.dcm", "dicom", "edit", _with_meta(seeds["CT_small.dcm"], "1.2.840.10008.5.1.4.1.1.2"),
               expect="UnsupportedFormatError")
    corpus.add("edit_ts_private.dcm", "dicom", "edit", _with_meta(seeds["CT_small.dcm"], "1.2.3.4.5.6"),
               expect="UnsupportedFormatError")
    corpus.add("edit_lut_bits0.dcm", "dicom", "edit", _lut_bits_zero(mammo), expect="CorruptFileError")
    corpus.add("edit_pixels_half.dcm", "dicom", "edit", _native_pixels(seeds["CT_small.dcm"], 0.5), expect="CorruptFileError")
    add_dicom_hostile(corpus, seeds)


def _with_meta(path: Path, syntax: str) -> bytes:
    """The file with its meta group rewritten to name `syntax` (pydicom refuses to write an invalid one)."""
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_file_meta_info

    data = path.read_bytes()
    meta_end = 132 + 12 + struct.unpack("<I", data[140:144])[0]
    meta = pydicom.dcmread(path).file_meta
    meta.TransferSyntaxUID = syntax
    buffer = DicomBytesIO()
    buffer.is_little_endian, buffer.is_implicit_VR = True, False
    write_file_meta_info(buffer, meta, enforce_standard=True)
    return data[:132] + buffer.getvalue() + data[meta_end:]


def _lut_bits_zero(path: Path) -> bytes:
    ds = pydicom.dcmread(path)
    ds.VOILUTSequence[0].LUTDescriptor = [256, 0, 0]
    return dicom_with(ds)


def _native_pixels(path: Path, fraction: float) -> bytes:
    ds = pydicom.dcmread(path)
    ds.PixelData = ds.PixelData[: int(len(ds.PixelData) * fraction) // 2 * 2]
    return dicom_with(ds)


def add_dicom_hostile(corpus: Corpus, seeds: dict[str, Path]) -> None:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = "1.2.840.10008.5.1.4.1.1.7", FIXED_UID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    empty = Dataset()
    empty.file_meta = meta
    corpus.add("hostile_empty.dcm", "dicom", "hostile", dicom_with(empty), expect="CorruptFileError")
    corpus.add("hostile_dicomdir", "dicom", "hostile", _dicomdir(), expect="UnsupportedFormatError")
    corpus.add("bomb_rle_6x17000.dcm", "dicom", "bomb", _rle_bomb(), expect="LimitExceededError")
    corpus.add("bomb_float64_native.dcm", "dicom", "bomb", dicom_with(seeds["CT_small.dcm"], Rows=("US", struct.pack("<H", 16000)),
               Columns=("US", struct.pack("<H", 16000)), NumberOfFrames=("IS", b"2 "),
               BitsAllocated=("US", struct.pack("<H", 64)), BitsStored=("US", struct.pack("<H", 64))),
               expect="LimitExceededError")
    corpus.add("bomb_jpeg_sof.dcm", "dicom", "bomb", _codestream_bomb(seeds["SC_rgb_jpeg_dcmtk.dcm"], b"\xff\xc0", 5),
               expect="CorruptFileError")
    corpus.add("bomb_j2k_siz.dcm", "dicom", "bomb", _codestream_bomb(seeds["MR_small_jp2klossless.dcm"], b"\xff\x51", 6),
               expect="CorruptFileError")
    corpus.add("bomb_deflate.dcm", "dicom", "bomb", _deflate_bomb(), expect="LimitExceededError")


def _dicomdir() -> bytes:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ".." is not a valid CS value: that is the point
        return _dicomdir_unchecked()


def _dicomdir_unchecked() -> bytes:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.sequence import Sequence
    from pydicom.uid import ExplicitVRLittleEndian

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = "1.2.840.10008.1.3.10", FIXED_UID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.FileSetID = "HOSTILE"
    record = Dataset()
    record.DirectoryRecordType = "IMAGE"
    record.ReferencedFileID = ["..", "..", "etc", "shadow"]
    ds.DirectoryRecordSequence = Sequence([record])
    return dicom_with(ds)


def _rle_bomb() -> bytes:
    """6 frames of 17000×17000 16-bit, RLE: declared 3.5 GB from a few hundred bytes."""
    from pydicom.encaps import encapsulate

    ds = pydicom.dcmread(pydicom_file("MR_small_RLE.dcm"))
    header = struct.pack("<16I", 2, 64, 66, *([0] * 13))
    ds.PixelData = encapsulate([header + b"\x81\x00" * 2] * 6)
    ds.Rows = ds.Columns = 17000
    ds.NumberOfFrames = 6
    return dicom_with(ds)


def _codestream_bomb(path: Path, marker: bytes, offset: int) -> bytes:
    """The first frame's codestream declares 30000×30000 while the DICOM header keeps its own size."""
    data = bytearray(path.read_bytes())
    at = data.find(marker, data.find(b"\xe0\x7f\x10\x00"))
    if marker == b"\xff\xc0":
        struct.pack_into(">HH", data, at + offset, 30000, 30000)
    else:
        struct.pack_into(">II", data, at + offset, 30000, 30000)
    return bytes(data)


def _deflate_bomb() -> bytes:
    """Deflated Explicit VR Little Endian whose dataset inflates to 2.1 GiB of zeros (2 MB on disk)."""
    from io import BytesIO

    ds = pydicom.dcmread(pydicom_file("CT_small.dcm"))
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.1.99"
    out = BytesIO()
    ds.save_as(out)
    data = out.getvalue()
    meta_end = 132 + 12 + struct.unpack("<I", data[140:144])[0]
    return data[:meta_end] + repeat_zero_deflate(2150, raw=True)


# ---------------------------------------------------------------------------------------------- rasters

def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_declaring(width: int, height: int, colour: int = 0, depth: int = 8, idat: bytes = b"\x00" * 64) -> bytes:
    header = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", zlib.compress(idat))
            + _png_chunk(b"IEND", b""))


def add_rasters(corpus: Corpus, realdata: Path | None, scale: int) -> None:
    from io import BytesIO

    from PIL import Image

    rng = np.random.default_rng(7)
    seeds: dict[str, bytes] = {}
    if realdata is not None and (realdata / "ultrasound" / "busi").is_dir():
        for name in ("benign_1.png", "malignant_3.png"):
            seeds[name] = (realdata / "ultrasound" / "busi" / name).read_bytes()
    for fmt, mode, shape in (("PNG", "I;16", (40, 56)), ("JPEG", "RGB", (48, 64, 3)), ("TIFF", "L", (32, 40))):
        image = Image.fromarray(rng.integers(0, 255, shape, dtype=np.uint8)) if mode != "I;16" else \
            Image.fromarray(rng.integers(0, 65535, shape, dtype=np.uint16))
        buffer = BytesIO()
        image.save(buffer, format=fmt)
        seeds[f"synthetic.{fmt.lower()}"] = buffer.getvalue()
    for name, data in seeds.items():
        corpus.add(f"seed_{name}", "raster", "intact", data)
        corpus.mutate(f"raster_{name}", "raster", data, scale, suffix="")
    corpus.add("edit_png_zero_width.png", "raster", "edit", png_declaring(0, 10), expect="CorruptFileError")
    corpus.add("edit_png_bad_depth.png", "raster", "edit", png_declaring(10, 10, depth=3), expect="CorruptFileError")
    corpus.add("bomb_png_30000.png", "raster", "bomb", png_declaring(30000, 30000), expect="LimitExceededError")
    corpus.add("bomb_png_16000_rgba.png", "raster", "bomb", png_declaring(16000, 16000, colour=6),
               expect="CorruptFileError")
    jpeg = bytearray(seeds["synthetic.jpeg"])
    struct.pack_into(">HH", jpeg, jpeg.find(b"\xff\xc0") + 5, 60000, 60000)
    corpus.add("bomb_jpeg_60000.jpg", "raster", "bomb", bytes(jpeg), expect="LimitExceededError")


# ---------------------------------------------------------------------------------------------- NIfTI

def nifti_bytes(array: np.ndarray, *, pair: bool = False, slope: float | None = None) -> bytes | tuple[bytes, bytes]:
    import nibabel as nib

    cls = nib.Nifti1Pair if pair else nib.Nifti1Image
    image = cls(array, np.diag([0.8, 0.8, 2.0, 1.0]))
    if slope is not None:
        image.header.set_slope_inter(slope, 10.0)
    if not pair:
        return image.to_bytes()
    return image.header.binaryblock, array.astype(image.get_data_dtype()).tobytes(order="F")


def nifti_header_edit(data: bytes, **fields: object) -> bytes:
    import io

    import nibabel as nib

    header = nib.Nifti1Header.from_fileobj(io.BytesIO(data[:348]), check=False)
    for key, value in fields.items():
        header[key] = value
    return header.binaryblock + data[348:]


def add_nifti(corpus: Corpus, realdata: Path | None, scale: int) -> None:
    volume = (np.arange(16 * 12 * 8).reshape(16, 12, 8) % 300 - 100).astype(np.int16)
    single = nifti_bytes(volume, slope=0.5)
    seeds = {"synthetic.nii": single}
    corpus.add("seed_synthetic.nii", "nifti", "intact", single)
    if realdata is not None and (realdata / "ct" / "totalseg_example_ct_sm.nii.gz").is_file():
        real = gzip.decompress((realdata / "ct" / "totalseg_example_ct_sm.nii.gz").read_bytes())
        corpus.add("seed_real.nii.gz", "nifti", "intact", gzip_bytes(real))
        corpus.mutate("nifti_real", "nifti", real, scale, suffix=".nii.gz", rewrap=gzip_bytes)
        corpus.mutate("nifti_real_gz", "nifti", gzip_bytes(real), 1, suffix=".nii.gz")
    for name, data in seeds.items():
        corpus.mutate(f"nifti_{name}", "nifti", data, scale, suffix=".nii")
    header, voxels = nifti_bytes(volume, pair=True)  # type: ignore[misc]
    corpus.add("pair_ok.hdr", "nifti", "intact", header)
    (corpus.folder / "pair_ok.img").write_bytes(voxels)
    edits = {"dim0_zero": {"dim": [0, 16, 12, 8, 1, 1, 1, 1]}, "dim0_nine": {"dim": [9, 16, 12, 8, 1, 1, 1, 1]},
             "dim_negative": {"dim": [3, 16, -12, 8, 1, 1, 1, 1]}, "datatype_junk": {"datatype": 999},
             "vox_offset_huge": {"vox_offset": 1e12}, "vox_offset_nan": {"vox_offset": float("nan")},
             "pixdim_nan": {"pixdim": [1, float("nan"), 1, 1, 1, 1, 1, 1]},
             "pixdim_zero": {"pixdim": [1, 0, 0, 0, 1, 1, 1, 1]},
             "sform_nan": {"sform_code": 1, "srow_x": [float("nan"), 0, 0, 0]},
             "slope_nan": {"scl_slope": float("nan"), "scl_inter": 5.0}}
    for name, fields in edits.items():
        # NaN scl_slope means "not scaled" to NIfTI readers (nibabel writes it so): the one edit that reads.
        expect = "accepted" if name == "slope_nan" else "CorruptFileError"
        corpus.add(f"edit_{name}.nii", "nifti", "edit", nifti_header_edit(single, **fields), expect=expect)
    add_nifti_hostile(corpus, single, header)


def add_nifti_hostile(corpus: Corpus, single: bytes, pair_header: bytes) -> None:
    outside = corpus.folder.parent / f"{corpus.folder.name}_outside"
    outside.mkdir(exist_ok=True)
    (outside / "voxels.img").write_bytes(b"\0" * 4096)
    loop = str(corpus.folder / "hostile_pair_loop.img")  # a link to itself
    for i, target in enumerate((*HOSTILE_TARGETS, str(outside / "voxels.img"), loop)):
        name = "hostile_pair_loop" if target == loop else f"hostile_pair{i}"
        corpus.add(f"{name}.hdr", "nifti", "hostile", pair_header, expect="UnsupportedFormatError")
        os.symlink(target, corpus.folder / f"{name}.img")
    float64 = nifti_header_edit(single, dim=[3, 1000, 1000, 2000, 1, 1, 1, 1], datatype=64, bitpix=64)
    corpus.add("bomb_float64_16gb.nii", "nifti", "bomb", float64, expect="LimitExceededError")
    declared = nifti_header_edit(single, dim=[3, 1000, 1000, 600, 1, 1, 1, 1], datatype=4, bitpix=16, scl_slope=1.0,
                                 scl_inter=0.0)[:352]
    corpus.add("bomb_gzip_short.nii.gz", "nifti", "bomb", _gzip_then_zeros(declared, 1100), expect="CorruptFileError")


def _gzip_then_zeros(head: bytes, mebibytes: int) -> bytes:
    """A gzip member holding `head` then `mebibytes` MiB of zeros, without a final block (a truncated stream)."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    first = compressor.compress(head) + compressor.flush(zlib.Z_FULL_FLUSH)
    return b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff" + first + repeat_zero_deflate(mebibytes, raw=True)


# ---------------------------------------------------------------------------------------------- NRRD

def nrrd_bytes(fields: dict[str, str], data: bytes) -> bytes:
    lines = ["NRRD0004"] + [f"{key}: {value}" for key, value in fields.items()]
    return ("\n".join(lines) + "\n\n").encode() + data


NRRD_RAW = {"type": "short", "dimension": "3", "sizes": "12 10 6", "space": "left-posterior-superior",
            "space directions": "(0.7,0,0) (0,0.7,0) (0,0,2.5)", "endian": "little", "encoding": "raw"}


def add_nrrd(corpus: Corpus, realdata: Path | None, scale: int) -> None:
    voxels = (np.arange(12 * 10 * 6) % 500).astype("<i2").tobytes()
    seeds = {"raw.nrrd": nrrd_bytes(NRRD_RAW, voxels),
             "ascii.nrrd": nrrd_bytes(NRRD_RAW | {"encoding": "ascii"}, " ".join(str(v) for v in range(720)).encode())}
    if realdata is not None:
        for name in ("breast1_image.nrrd", "breast1_label.nrrd"):
            if (realdata / "mri" / name).is_file():
                seeds[name] = (realdata / "mri" / name).read_bytes()
    for name, data in seeds.items():
        corpus.add(f"seed_{name}", "nrrd", "intact", data)
        corpus.mutate(f"nrrd_{name}", "nrrd", data, scale, suffix="")
    edits = {"type_block": {"type": "block"}, "encoding_junk": {"encoding": "foo"}, "sizes_text": {"sizes": "a b c"},
             "dimension_zero": {"dimension": "0"}, "directions_nan": {"space directions": "(nan,0,0) (0,1,0) (0,0,1)"},
             "line_skip_huge": {"line skip": "100000"}, "byte_skip_neg": {"byte skip": "-5"}}
    for name, fields in edits.items():
        expect = "UnsupportedFormatError" if name in ("type_block", "encoding_junk") else "CorruptFileError"
        corpus.add(f"edit_{name}.nrrd", "nrrd", "edit", nrrd_bytes(NRRD_RAW | fields, voxels), expect=expect)
    for i, target in enumerate((*HOSTILE_TARGETS, "../outside.raw", "LIST\n/etc/passwd\n/dev/zero")):
        fields = {k: v for k, v in NRRD_RAW.items()} | {"data file": target}
        corpus.add(f"hostile_datafile{i}.nhdr", "nrrd", "hostile", nrrd_bytes(fields, b""), expect="UnsupportedFormatError")
    legacy = nrrd_bytes(NRRD_RAW | {"datafile": "/etc/passwd"}, b"")
    corpus.add("hostile_datafile_legacy.nhdr", "nrrd", "hostile", legacy, expect="UnsupportedFormatError")
    corpus.add("bomb_double_16gb.nrrd", "nrrd", "bomb", nrrd_bytes(NRRD_RAW | {"type": "double", "sizes": "2000 1000 1000"},
                                                                    voxels), expect="LimitExceededError")
    short = nrrd_bytes(NRRD_RAW | {"sizes": "1000 1000 600", "encoding": "gzip"}, _gzip_then_zeros(b"", 1100))
    corpus.add("bomb_gzip_short.nrrd", "nrrd", "bomb", short, expect="CorruptFileError")


# ---------------------------------------------------------------------------------------------- slides

def add_slides(corpus: Corpus, realdata: Path | None, scale: int) -> None:
    import tempfile

    from breastgpt.pathology.synthetic import SyntheticScene, write_pyramidal_tiff, write_svs_like

    scene = SyntheticScene.random(1024, 768, mpp=0.5, seed=5)
    with tempfile.TemporaryDirectory() as folder:
        seeds = {"pyramid.tif": write_pyramidal_tiff(Path(folder) / "a.tif", scene, downsamples=(1, 4)).path.read_bytes(),
                 "svs_like.svs": write_svs_like(Path(folder) / "b.svs", scene, downsamples=(1, 4)).path.read_bytes()}
    if realdata is not None and (realdata / "wsi" / "CMU-1-Small-Region.svs").is_file():
        seeds["cmu.svs"] = (realdata / "wsi" / "CMU-1-Small-Region.svs").read_bytes()
    for name, data in seeds.items():
        corpus.add(f"seed_{name}", "slide", "intact", data)
        corpus.mutate(f"slide_{name}", "slide", data, scale, suffix=".tif")
    pyramid = seeds["pyramid.tif"]
    corpus.add("edit_tile_counts_zero.tif", "slide", "edit", _tile_table(pyramid, counts=0), expect="CorruptFileError")
    corpus.add("edit_tiles_sparse.tif", "slide", "edit", _tile_table(pyramid, counts=0, offsets=0), expect="CorruptFileError")
    corpus.add("edit_tiles_past_end.tif", "slide", "edit", _tile_table(pyramid, offsets=0xFFFFFF00), expect="CorruptFileError")
    corpus.add("bomb_tile_size.tif", "slide", "bomb", _tile_size(pyramid, 65536 - 16), expect="LimitExceededError")
    corpus.add("bomb_tile_sof.tif", "slide", "bomb", _tile_sof(pyramid), expect="CorruptFileError")


def _tile_tags(data: bytes) -> tuple[int, int, int, int, tuple[int, int]]:
    """Positions in a classic little-endian TIFF: tile offsets, byte counts, tile count, first tile, tile size tags."""
    import io

    import tifffile

    with tifffile.TiffFile(io.BytesIO(data)) as tif:
        page = tif.pages[0]
        offsets, counts = page.tags["TileOffsets"], page.tags["TileByteCounts"]
        return (offsets.valueoffset, counts.valueoffset, offsets.count, int(page.dataoffsets[0]),
                (page.tags["TileWidth"].valueoffset, page.tags["TileLength"].valueoffset))


def _tile_table(data: bytes, *, counts: int | None = None, offsets: int | None = None) -> bytes:
    offset_at, count_at, n, _, _ = _tile_tags(data)
    out = bytearray(data)
    for i in range(n):
        if counts is not None:
            struct.pack_into("<I", out, count_at + 4 * i, counts)
        if offsets is not None:
            struct.pack_into("<I", out, offset_at + 4 * i, offsets)
    return bytes(out)


def _tile_size(data: bytes, size: int) -> bytes:
    *_, (width_at, length_at) = _tile_tags(data)
    out = bytearray(data)
    struct.pack_into("<H", out, width_at, size)
    struct.pack_into("<H", out, length_at, size)
    return bytes(out)


def _tile_sof(data: bytes) -> bytes:
    *_, first, _ = _tile_tags(data)
    out = bytearray(data)
    sof = out.find(b"\xff\xc0", first)
    struct.pack_into(">HH", out, sof + 5, 30000, 30000)
    return bytes(out)


# ---------------------------------------------------------------------------------------------- HDF5

def add_features(corpus: Corpus, scale: int) -> None:
    import h5py

    from breastgpt.pathology.features import write_features

    coords = np.stack(np.meshgrid(np.arange(6) * 512, np.arange(4) * 512), -1).reshape(-1, 2)
    features = np.random.default_rng(3).normal(size=(24, 16)).astype(np.float32)
    written = write_features(corpus.folder / "written.h5", coords, features,
                             {"encoder": "tiny", "dim": 16, "tile_size": 512, "footprint_level0": [512, 512]},
                             thumbnail=np.zeros((8, 12, 3), np.uint8))
    seed = corpus.folder / "seed_features.h5"
    _timeless_copy(written, seed)
    written.unlink()
    corpus.cases.append(Case(seed.name, "hdf5", "intact"))
    corpus.mutate("hdf5_features", "hdf5", seed.read_bytes(), scale, suffix=".h5")

    def edited(name: str, expect: str, mutation: str, build: Callable[[h5py.File], None]) -> None:
        with timeless_hdf5(corpus.folder / name) as h5:
            h5.attrs["n_tiles"] = 24
            h5.create_dataset("coords", data=coords, track_times=False)
            build(h5)
        corpus.cases.append(Case(name, "hdf5", mutation, expect))

    edited("hostile_external_link.h5", "UnsupportedFormatError", "hostile",
           lambda h5: h5.__setitem__("features", h5py.ExternalLink("/etc/passwd", "/features")))
    edited("hostile_external_storage.h5", "UnsupportedFormatError", "hostile",
           lambda h5: h5.create_dataset("features", shape=(24, 16), dtype="f4", external=[("/dev/zero", 0, 24 * 16 * 4)],
                                        track_times=False))
    edited("hostile_virtual.h5", "UnsupportedFormatError", "hostile", lambda h5: _virtual(h5, "/etc/passwd"))
    edited("bomb_declared_shape.h5", "LimitExceededError", "bomb",
           lambda h5: h5.create_dataset("features", shape=(10**9, 768), dtype="f4", chunks=(1024, 768), track_times=False))
    edited("edit_features_nan.h5", "CorruptFileError", "edit",
           lambda h5: h5.create_dataset("features", data=np.full((24, 16), np.nan, np.float32), track_times=False))
    edited("edit_features_int.h5", "CorruptFileError", "edit",
           lambda h5: h5.create_dataset("features", data=np.zeros((24, 16), np.int32), track_times=False))
    edited("edit_features_missing.h5", "CorruptFileError", "edit", lambda h5: None)


def timeless_hdf5(path: Path) -> object:
    """A new HDF5 file whose root group records no timestamps (datasets need `track_times=False` too)."""
    import h5py

    properties = h5py.h5p.create(h5py.h5p.FILE_CREATE)
    properties.set_obj_track_times(False)
    return h5py.File(h5py.h5f.create(bytes(path), h5py.h5f.ACC_TRUNC, fcpl=properties))


def _timeless_copy(source: Path, target: Path) -> None:
    """`source` rewritten without object timestamps (HDF5 stamps objects to the second; the corpus must not vary)."""
    import h5py

    with h5py.File(source, "r") as old, timeless_hdf5(target) as new:
        for name, dataset in old.items():
            new.create_dataset(name, data=dataset[()], compression=dataset.compression, track_times=False)
        for key, value in old.attrs.items():
            new.attrs[key] = "2026-01-01T00:00:00+00:00" if key == "created" else value


def _virtual(h5: object, target: str) -> None:
    """A virtual 'features' dataset mapped onto `target` (low-level, so no creation time is stamped)."""
    import h5py

    space = h5py.h5s.create_simple((24, 16))
    properties = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    properties.set_obj_track_times(False)
    properties.set_virtual(space, target.encode(), b"features", h5py.h5s.create_simple((24, 16)))
    h5py.h5d.create(h5.id, b"features", h5py.h5t.IEEE_F32LE, space, dcpl=properties)  # type: ignore[attr-defined]


# ---------------------------------------------------------------------------------------------- special files

def add_special(corpus: Corpus) -> None:
    os.mkfifo(corpus.folder / "special_fifo.dcm")
    corpus.cases.append(Case("special_fifo.dcm", "special", "hostile", "UnsupportedFormatError"))
    for i, target in enumerate(("/dev/zero", "/dev/null")):
        os.symlink(target, corpus.folder / f"special_device{i}.nii")
        corpus.cases.append(Case(f"special_device{i}.nii", "special", "hostile", "UnsupportedFormatError"))


def build_corpus(folder: Path, *, seed: int = 0, scale: int = 1, realdata: Path | None = None) -> list[Case]:
    """Write the corpus into `folder` (which must be empty) and return its cases."""
    import warnings

    folder.mkdir(parents=True, exist_ok=True)
    corpus = Corpus(folder, seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns about the invalid values written on purpose
        add_dicom(corpus, realdata, scale)
        add_rasters(corpus, realdata, scale)
        add_nifti(corpus, realdata, scale)
        add_nrrd(corpus, realdata, scale)
        add_slides(corpus, realdata, scale)
        add_features(corpus, scale)
        add_special(corpus)
    return corpus.cases
