"""A corpus of malformed files generated here: every one gives its typed error quickly — no crash, no hang."""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import tifffile

from breastgpt.io import decode_path, inspect_path
from breastgpt.io.errors import CorruptFileError, LimitExceededError, MedicalFileError, UnsupportedFormatError
from tests.io.dicom_factory import pydicom_test_file, write_grey_dicom
from tests.io.fuzz_corpus import NRRD_RAW, _with_meta, dicom_with, nifti_bytes, nifti_header_edit, nrrd_bytes


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def huge_png(path: Path) -> None:
    header = struct.pack(">IIBBBBB", 30_000, 30_000, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header)
                     + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + _png_chunk(b"IEND", b""))


def truncated_dicom(path: Path) -> None:
    data = pydicom_test_file("MR_small.dcm").read_bytes()
    path.write_bytes(data[: len(data) // 2])


def bad_vr_dicom(path: Path) -> None:
    write_grey_dicom(path, np.zeros((4, 4)))
    data = bytearray(path.read_bytes())
    marker = data.find(b"\x28\x00\x10\x00US")  # (0028,0010) Rows, explicit VR 'US'
    data[marker + 4: marker + 6] = b"ZZ"
    path.write_bytes(bytes(data))


def truncated_jpeg(path: Path) -> None:
    from PIL import Image

    noise = np.random.default_rng(0).integers(0, 255, (256, 256, 3), dtype=np.uint8)
    Image.fromarray(noise).save(path, format="JPEG")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])


def broken_tile_tiff(path: Path, pyramid: bool = False) -> None:
    image = np.random.default_rng(1).integers(0, 255, (1024, 1024, 3), dtype=np.uint8)
    with tifffile.TiffWriter(path) as tif:
        tif.write(image, tile=(256, 256), compression="jpeg", subifds=1 if pyramid else 0,
                  resolution=(20000, 20000), resolutionunit="CENTIMETER")
        if pyramid:
            tif.write(image[::2, ::2], tile=(256, 256), compression="jpeg", subfiletype=1)
    with tifffile.TiffFile(path) as tif:
        offsets_tag = tif.pages[0].tags["TileOffsets"]
        position, count = offsets_tag.valueoffset, offsets_tag.count
    data = bytearray(path.read_bytes())
    for i in range(count):
        struct.pack_into("<I", data, position + 4 * i, 0xFFFFFF00 - i)  # offsets far beyond the file's end
    path.write_bytes(bytes(data))


def dicom_edit(**raw: tuple[str, bytes]):  # noqa: ANN201 - a case builder
    def make(path: Path) -> None:
        path.write_bytes(dicom_with(pydicom_test_file("CT_small.dcm"), **raw))
    return make


def empty_dataset_dicom(path: Path) -> None:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = "1.2.840.10008.5.1.4.1.1.7", "1.2.3.4"
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset = Dataset()
    dataset.file_meta = meta
    path.write_bytes(dicom_with(dataset))


def truncated_nifti_gz(path: Path) -> None:
    data = gzip.compress(nifti_bytes(np.arange(40 * 40 * 40, dtype=np.int16).reshape(40, 40, 40)), mtime=0)
    path.write_bytes(data[: len(data) * 3 // 5])


def broken_deflate_nifti_gz(path: Path) -> None:
    noise = np.random.default_rng(0).integers(-1000, 1000, (20, 20, 20), dtype=np.int16)
    data = bytearray(gzip.compress(nifti_bytes(noise), mtime=0))
    data[len(data) // 2:len(data) // 2 + 20] = b"\xff" * 20  # damaged deflate blocks: zlib.error inside the stream
    path.write_bytes(bytes(data))


def nifti_edit(**fields: object):  # noqa: ANN201 - a case builder
    def make(path: Path) -> None:
        path.write_bytes(nifti_header_edit(nifti_bytes(np.zeros((8, 8, 8), np.int16)), **fields))
    return make


def truncated_gzip_nrrd(path: Path) -> None:
    data = nrrd_bytes(NRRD_RAW | {"encoding": "gzip"}, gzip.compress(np.arange(720, dtype="<i2").tobytes(), mtime=0))
    path.write_bytes(data[:-30])


def zero_tile_counts_tiff(path: Path) -> None:
    from tests.pathology.slides import small_slide

    small_slide(path, width=600, height=400)
    with tifffile.TiffFile(path) as tif:
        tag = tif.pages[0].tags["TileByteCounts"]
        position, count = tag.valueoffset, tag.count
    data = bytearray(path.read_bytes())
    struct.pack_into(f"<{count}I", data, position, *([0] * count))
    path.write_bytes(bytes(data))


def truncated_svs(path: Path) -> None:
    from breastgpt.pathology.synthetic import SyntheticScene, write_svs_like

    write_svs_like(path, SyntheticScene.random(1024, 768, seed=1), downsamples=(1, 4))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 3 // 5])


def non_dicom_bytes(path: Path) -> None:
    path.write_bytes(b"this is a radiology report, not an image\n" * 20)


def zero_bytes(path: Path) -> None:
    path.write_bytes(b"")


CASES = {
    "truncated.dcm": (truncated_dicom, CorruptFileError),
    "bad_vr.dcm": (bad_vr_dicom, MedicalFileError),
    "not_dicom.dcm": (non_dicom_bytes, UnsupportedFormatError),
    "huge.png": (huge_png, LimitExceededError),
    "truncated.jpg": (truncated_jpeg, CorruptFileError),
    "broken_tiles.tif": (broken_tile_tiff, CorruptFileError),
    "broken_tiles_pyramid.tif": (lambda path: broken_tile_tiff(path, pyramid=True), CorruptFileError),
    "empty.dcm": (zero_bytes, CorruptFileError),
    "empty.png": (zero_bytes, CorruptFileError),
    "empty.nii.gz": (zero_bytes, CorruptFileError),
    "empty.svs": (zero_bytes, CorruptFileError),
    # Silent garbage before issue 27: each of these decoded (black image, zero-filled volume, 212,992 frames).
    "nan_slope.dcm": (dicom_edit(RescaleSlope=("DS", b"NaN ")), CorruptFileError),
    "zero_slope.dcm": (dicom_edit(RescaleSlope=("DS", b"0 ")), CorruptFileError),
    "zero_window.dcm": (dicom_edit(WindowCenter=("DS", b"40"), WindowWidth=("DS", b"0 ")), CorruptFileError),
    "columns_1.dcm": (dicom_edit(Columns=("US", struct.pack("<H", 1))), CorruptFileError),
    "nan_spacing.dcm": (dicom_edit(PixelSpacing=("DS", b"NaN\\1 ")), CorruptFileError),
    "frames_zero.dcm": (dicom_edit(NumberOfFrames=("IS", b"0 ")), CorruptFileError),
    "empty_dataset.dcm": (empty_dataset_dicom, CorruptFileError),
    "truncated.nii.gz": (truncated_nifti_gz, CorruptFileError),
    "pixdim_zero.nii": (nifti_edit(pixdim=[1, 0, 0, 0, 1, 1, 1, 1]), CorruptFileError),
    "truncated_gzip.nrrd": (truncated_gzip_nrrd, CorruptFileError),
    "zero_tile_counts.tif": (zero_tile_counts_tiff, CorruptFileError),
    # Untyped before issue 27 (ValueError, zlib.error, TypeError tracebacks).
    "frames_text.dcm": (dicom_edit(NumberOfFrames=("IS", b"abcd")), CorruptFileError),
    "window_text.dcm": (dicom_edit(WindowCenter=("DS", b"abcd"), WindowWidth=("DS", b"400 ")), CorruptFileError),
    "ts_not_a_syntax.dcm": (lambda path: path.write_bytes(_with_meta(pydicom_test_file("CT_small.dcm"),
                                                                     "1.2.840.10008.5.1.4.1.1.2")), UnsupportedFormatError),
    "broken_deflate.nii.gz": (broken_deflate_nifti_gz, CorruptFileError),
    "dim0_zero.nii": (nifti_edit(dim=[0, 8, 8, 8, 1, 1, 1, 1]), CorruptFileError),
    "truncated.svs": (truncated_svs, CorruptFileError),
}


@pytest.mark.timeout(10)
@pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom and Pillow warn while reading the broken values
@pytest.mark.parametrize("name", sorted(CASES))
def test_malformed_file_gives_its_typed_error(tmp_path: Path, name: str) -> None:
    make, expected = CASES[name]
    path = tmp_path / name
    make(path)
    with pytest.raises(expected) as caught:
        decode_path(path)
    message = str(caught.value)
    assert str(path) in message and " — " in message  # names the file and says what to do


def test_truncated_real_nifti_is_refused_not_zero_filled(realdata: Path, tmp_path: Path) -> None:
    data = (realdata / "ct" / "totalseg_pulmonary_ct_cropped.nii.gz").read_bytes()
    path = tmp_path / "truncated.nii.gz"
    path.write_bytes(data[: len(data) // 3])
    with pytest.raises(CorruptFileError, match="ends before its 2,787,808 declared bytes"):
        decode_path(path)


def test_empty_dicom_is_refused_by_inspect(tmp_path: Path) -> None:
    empty_dataset_dicom(tmp_path / "empty.dcm")
    with pytest.raises(CorruptFileError, match="no data elements"):
        inspect_path(tmp_path / "empty.dcm")


def test_typed_errors_survive_pickling_between_processes() -> None:
    import pickle

    error = LimitExceededError("/data/x.png", "too big", "raise the limit")
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is LimitExceededError and copy.as_record() == error.as_record() and str(copy) == str(error)
