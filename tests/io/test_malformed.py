"""A corpus of malformed files generated here: every one gives its typed error quickly — no crash, no hang."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import tifffile

from breastgpt.io import decode_path
from breastgpt.io.errors import CorruptFileError, LimitExceededError, MedicalFileError, UnsupportedFormatError
from tests.io.dicom_factory import pydicom_test_file, write_grey_dicom


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
}


@pytest.mark.timeout(10)
@pytest.mark.parametrize("name", sorted(CASES))
def test_malformed_file_gives_its_typed_error(tmp_path: Path, name: str) -> None:
    make, expected = CASES[name]
    path = tmp_path / name
    make(path)
    with pytest.raises(expected) as caught:
        decode_path(path)
    message = str(caught.value)
    assert str(path) in message and " — " in message  # names the file and says what to do


def test_typed_errors_survive_pickling_between_processes() -> None:
    import pickle

    error = LimitExceededError("/data/x.png", "too big", "raise the limit")
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is LimitExceededError and copy.as_record() == error.as_record() and str(copy) == str(error)
