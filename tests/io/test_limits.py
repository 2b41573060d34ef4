"""Issue 27 point 2: the decoded-bytes budget (`ReadLimits.max_decoded_bytes`) counts bytes, not pixels, and is
checked from headers before any allocation — for every reader."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from breastgpt.io import LimitExceededError, ReadLimits, decode_path, inspect_path
from breastgpt.io.limits import DEFAULT_LIMITS
from tests.io.dicom_factory import write_grey_dicom
from tests.io.fuzz_corpus import nifti_bytes

REPO = Path(__file__).resolve().parents[2]


def limited(nbytes: int) -> ReadLimits:
    return ReadLimits(max_decoded_bytes=nbytes)


def test_default_budget_is_documented() -> None:
    assert DEFAULT_LIMITS.max_decoded_bytes == 2 * 1024**3
    docs = (REPO / "docs" / "io.md").read_text()
    assert re.search(r"max_decoded_bytes=2 GiB", docs)


@pytest.mark.parametrize("dtype", [np.int8, np.int16, np.float32, np.float64])
def test_volume_budget_counts_bytes_per_voxel(tmp_path: Path, dtype: type) -> None:
    path = tmp_path / "v.nii"
    path.write_bytes(nifti_bytes(np.zeros((32, 32, 32), dtype)))  # type: ignore[arg-type]
    budget = 32**3 * 2  # admits one and two bytes per voxel, not four or eight
    if np.dtype(dtype).itemsize <= 2:
        assert decode_path(path, limits=limited(budget)).shape == (32, 32, 32)
        return
    for read in (inspect_path, decode_path):
        with pytest.raises(LimitExceededError, match=f"would decode to {32**3 * np.dtype(dtype).itemsize:,} bytes"):
            read(path, limits=limited(budget))


def test_dicom_budget_counts_bits_allocated(tmp_path: Path) -> None:
    pixels = np.zeros((3, 40, 50))
    eight = write_grey_dicom(tmp_path / "8.dcm", pixels, bits_stored=8)
    sixteen = write_grey_dicom(tmp_path / "16.dcm", pixels, bits_stored=12)
    assert decode_path(eight, limits=limited(3 * 40 * 50)).shape == (3, 40, 50)
    for read in (inspect_path, decode_path):
        with pytest.raises(LimitExceededError, match="would decode to 12,000 bytes"):
            read(sixteen, limits=limited(3 * 40 * 50))


def test_series_budget_counts_float32_volume(realdata: Path) -> None:
    folder = realdata / "ct" / "totalseg_example_ct_dicom"
    with pytest.raises(LimitExceededError, match=f"{20 * 512 * 512 * 4:,} bytes"):
        inspect_path(folder, limits=limited(20 * 512 * 512 * 4 - 1))
    assert inspect_path(folder, limits=limited(20 * 512 * 512 * 4))["dimensions"]["depth"] == 20


def test_raster_budget_counts_channels(tmp_path: Path) -> None:
    from PIL import Image

    Image.fromarray(np.zeros((60, 70), np.uint8)).save(tmp_path / "grey.png")
    Image.fromarray(np.zeros((60, 70, 4), np.uint8)).save(tmp_path / "rgba.png")
    budget = 60 * 70 * 3
    assert decode_path(tmp_path / "grey.png", limits=limited(budget)).shape == (60, 70)
    with pytest.raises(LimitExceededError, match=f"{60 * 70 * 4:,} bytes"):
        decode_path(tmp_path / "rgba.png", limits=limited(budget))


def test_feature_file_budget(tmp_path: Path) -> None:
    from breastgpt.pathology.features import write_features

    path = write_features(tmp_path / "f.h5", np.zeros((10, 2)), np.zeros((10, 64)), {"encoder": "x", "dim": 64})
    needed = 10 * 2 * 8 + 10 * 64 * 4
    assert decode_path(path, limits=limited(needed)).features.shape == (10, 64)
    with pytest.raises(LimitExceededError):
        decode_path(path, limits=limited(needed - 1))


def test_slide_tile_budget(tmp_path: Path) -> None:
    from tests.pathology.slides import small_slide

    path = small_slide(tmp_path / "s.tif", width=600, height=400).path  # 256×256 RGB tiles: 196,608 bytes each
    assert inspect_path(path, limits=limited(256 * 256 * 3))["kind"] == "slide"
    with pytest.raises(LimitExceededError, match="one tile of 256×256 px"):
        inspect_path(path, limits=limited(256 * 256 * 3 - 1))


def test_budget_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_decoded_bytes"):
        ReadLimits(max_decoded_bytes=0)
