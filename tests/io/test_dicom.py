"""DICOM decoding and the display pipeline, with exact numbers on tiny images."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.sequence import Sequence

from breastgpt.io.dicom import decoder_status, read_dataset, read_dicom_image
from breastgpt.io.errors import CorruptFileError, LimitExceededError, MedicalFileError, UnsupportedFormatError
from breastgpt.io.limits import ReadLimits
from breastgpt.io.voi import VoiChoice, window_to_unit
from tests.io.dicom_factory import pydicom_test_file, voi_lut_item, write_grey_dicom

RAMP = np.array([[0, 50, 100], [150, 200, 250]])


def test_linear_window_matches_dicom_formula(tmp_path: Path) -> None:
    path = write_grey_dicom(tmp_path / "w.dcm", RAMP, WindowCenter=100, WindowWidth=201)
    display = read_dicom_image(path).display()
    # y = clip((x − 99.5)/200 + 0.5) · 255, rounded (PS3.3 C.11.2.1.2.1)
    assert display.tolist() == [[1, 64, 128], [192, 255, 255]]


def test_monochrome1_is_inverted(tmp_path: Path) -> None:
    path = write_grey_dicom(tmp_path / "m1.dcm", RAMP, photometric="MONOCHROME1", WindowCenter=100, WindowWidth=201)
    assert read_dicom_image(path).display().tolist() == [[254, 191, 127], [63, 0, 0]]


def test_second_window_is_selectable(tmp_path: Path) -> None:
    path = write_grey_dicom(tmp_path / "w2.dcm", RAMP, WindowCenter=[100, 125], WindowWidth=[201, 251])
    second = read_dicom_image(path).display(VoiChoice(index=1))
    expected = np.round(np.clip((RAMP - 124.5) / 250 + 0.5, 0, 1) * 255).astype(np.uint8)
    assert second.tolist() == expected.tolist()


def test_voi_lut_sequence_is_preferred_over_window(tmp_path: Path) -> None:
    pixels = np.array([[0, 1], [2, 3]])
    path = write_grey_dicom(tmp_path / "lut.dcm", pixels, bits_stored=8, WindowCenter=2, WindowWidth=1,
                            VOILUTSequence=Sequence([voi_lut_item(0, [0, 10, 20, 30], 8)]))
    image = read_dicom_image(path)
    assert image.display().tolist() == [[0, 10], [20, 30]]  # 8-bit LUT output scaled by 255/255
    assert image.display(VoiChoice(mode="window")).tolist() == [[0, 0], [255, 255]]


def test_rescale_to_hounsfield_and_ct_window(tmp_path: Path) -> None:
    stored = np.array([[1024, 1064], [824, 1224]])  # HU −0, 40, −200, 200
    path = write_grey_dicom(tmp_path / "ct.dcm", stored, modality="CT", RescaleSlope=1, RescaleIntercept=-1024,
                            WindowCenter=40, WindowWidth=400)
    image = read_dicom_image(path)
    assert image.modality_values().tolist() == [[0.0, 40.0], [-200.0, 200.0]]
    assert image.display().tolist() == [[102, 128], [0, 230]]


def test_lookup_table_path_equals_direct_computation(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    stored = rng.integers(0, 4096, size=(64, 48))
    path = write_grey_dicom(tmp_path / "r.dcm", stored, bits_stored=12, WindowCenter=1800.5, WindowWidth=1200,
                            VOILUTFunction="SIGMOID", PhotometricInterpretation="MONOCHROME1")
    expected = np.round((1.0 - window_to_unit(stored, 1800.5, 1200, "SIGMOID")) * 255).astype(np.uint8)
    assert np.array_equal(read_dicom_image(path).display(), expected)


def test_minmax_fallback_without_voi(tmp_path: Path) -> None:
    path = write_grey_dicom(tmp_path / "n.dcm", np.array([[100, 300], [200, 500]]))
    assert read_dicom_image(path).display().tolist() == [[0, 128], [64, 255]]


def test_metadata_reports_presentation_spacing_and_view(tmp_path: Path) -> None:
    path = write_grey_dicom(tmp_path / "meta.dcm", RAMP, PresentationIntentType="FOR PRESENTATION",
                            ImagerPixelSpacing=[0.07, 0.07], ImageLaterality="L", ViewPosition="MLO",
                            Manufacturer="ACME")
    meta = read_dicom_image(path).metadata
    assert meta["presentation_intent"] == "FOR PRESENTATION"
    assert meta["imager_pixel_spacing_mm"] == [0.07, 0.07] and meta["spacing_source"] == "ImagerPixelSpacing"
    assert (meta["laterality"], meta["view"], meta["vendor"], meta["kind"]) == ("L", "MLO", "ACME", "image")
    assert "Fake" not in str(meta) and "FAKE-0001" not in str(meta)


def test_header_only_mode_skips_pixels(tmp_path: Path) -> None:
    path = write_grey_dicom(tmp_path / "h.dcm", RAMP)
    assert "PixelData" not in read_dataset(path, header_only=True)


def test_declared_size_is_checked_before_decoding(tmp_path: Path) -> None:
    path = write_grey_dicom(tmp_path / "big.dcm", RAMP)
    dataset = pydicom.dcmread(path)
    dataset.Rows, dataset.Columns = 30000, 30000  # pixel data stays 12 bytes: decoding would fail differently
    dataset.save_as(path)
    with pytest.raises(LimitExceededError, match="30000"):
        read_dicom_image(path, limits=ReadLimits(max_image_pixels=100_000_000))


LOSSLESS_VARIANTS = ["MR_small_RLE.dcm", "MR_small_jp2klossless.dcm", "MR_small_jpeg_ls_lossless.dcm",
                     "MR_small_bigendian.dcm", "MR_small_implicit.dcm"]


@pytest.mark.parametrize("name", LOSSLESS_VARIANTS)
def test_compressed_and_legacy_syntaxes_decode_exactly(name: str) -> None:
    reference = read_dicom_image(pydicom_test_file("MR_small.dcm")).stored
    assert np.array_equal(read_dicom_image(pydicom_test_file(name)).stored, reference)


def test_lossy_jpeg_baseline_and_multiframe_colour() -> None:
    jpeg = read_dicom_image(pydicom_test_file("SC_rgb_jpeg_dcmtk.dcm"))
    raw = read_dicom_image(pydicom_test_file("SC_rgb.dcm" if pydicom_test_file("SC_rgb.dcm").exists()
                                             else "SC_rgb_rle.dcm"))
    assert jpeg.display().shape == (100, 100, 3)
    assert np.abs(jpeg.display().astype(int) - raw.display().astype(int)).mean() < 3  # lossy, but the same picture
    two = read_dicom_image(pydicom_test_file("SC_rgb_rle_2frame.dcm"))
    assert two.display().shape == (2, 100, 100, 3)


def test_every_compressed_syntax_has_a_declared_available_plugin() -> None:
    missing = {uid: s["name"] for uid, s in decoder_status().items() if not s["available"]}
    assert not missing, f"no decoder for {missing}"


SHIPPED = sorted((Path(pydicom.__file__).parent / "data" / "test_files").glob("*.dcm"))


@pytest.mark.parametrize("path", SHIPPED, ids=[p.name for p in SHIPPED])
def test_pydicom_shipped_files_are_read_or_refused_typed(path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            image = read_dicom_image(path)
        except MedicalFileError:
            return
    display = image.display()
    assert display.dtype == np.uint8 and display.size > 0


def test_known_broken_shipped_files_are_refused() -> None:
    with pytest.raises(CorruptFileError):
        read_dicom_image(pydicom_test_file("MR_truncated.dcm"))
    with pytest.raises(UnsupportedFormatError):
        read_dicom_image(pydicom_test_file("rtplan.dcm"))  # no pixel data


@pytest.mark.parametrize("dtype, offset", [(np.uint16, 0), (np.int16, -1200), (np.uint8, 0)])
def test_block_wise_look_up_equals_one_fancy_index_pass(dtype, offset) -> None:
    from breastgpt.io import voi

    rng = np.random.default_rng(3)
    info = np.iinfo(dtype)
    # Three frames, a size that is not a multiple of the block, read through a non-contiguous view.
    stored = rng.integers(max(info.min, offset), min(info.max, 3000) + 1, size=(3, 257, 301)).astype(dtype)
    view = stored[:, :, ::-1]
    table = rng.integers(0, 256, size=int(view.max()) - offset + 1).astype(np.uint8)
    expected = table[view.astype(np.int64) - offset]
    got = voi._look_up(table, view, offset)
    assert got.shape == view.shape and got.dtype == np.uint8
    np.testing.assert_array_equal(got, expected)
