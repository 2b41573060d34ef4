"""Volumes from the real sample files, DICOM series checks, windowing and label-safe resampling."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest

from breastgpt.io.dicom_series import read_dicom_series
from breastgpt.io.errors import CorruptFileError, UnsupportedFormatError
from breastgpt.io.volume import read_volume
from breastgpt.io.windowing import resample_volume, target_shape, window_array
from breastgpt.preprocessing import Preprocessing, model_frames, prepare_volume


def test_ct_dicom_series_is_one_sorted_volume(realdata: Path) -> None:
    volume = read_dicom_series(realdata / "ct" / "totalseg_example_ct_dicom")
    assert volume.shape == (20, 512, 512)
    # Slices are 3 mm thick (SliceThickness) and reconstructed every 2 mm (ImagePositionPatient steps).
    assert volume.metadata["slice_thickness_mm"] == [3.0]
    assert volume.spacing == pytest.approx((2.0, 0.9765625, 0.9765625))
    assert volume.metadata["transfer_syntax"]["name"] == "JPEG 2000 Image Compression (Lossless Only)"
    assert volume.array.min() == -1024.0 and volume.array.max() == 1839.0  # HU after rescale
    z_positions = volume.origin[2] + np.arange(20) * volume.spacing[0]
    assert z_positions[0] == pytest.approx(-804.5)


def test_series_rejects_missing_slices_and_mixed_series(realdata: Path, tmp_path: Path) -> None:
    source = sorted((realdata / "ct" / "totalseg_example_ct_dicom").iterdir())
    gap = tmp_path / "gap"
    gap.mkdir()
    for index, path in enumerate(source):
        if index != 7:
            shutil.copy(path, gap / path.name)
    with pytest.raises(CorruptFileError, match="not uniform"):
        read_dicom_series(gap)
    mixed = tmp_path / "mixed"
    shutil.copytree(realdata / "ct" / "totalseg_example_ct_dicom", mixed)
    other = pydicom.dcmread(source[0])
    other.SeriesInstanceUID = pydicom.uid.generate_uid()
    other.save_as(mixed / "other.dcm")
    with pytest.raises(UnsupportedFormatError, match="mixes 2 series"):
        read_dicom_series(mixed)


def test_mri_nrrd_geometry(realdata: Path) -> None:
    image = read_volume(realdata / "mri" / "breast1_image.nrrd")
    label = read_volume(realdata / "mri" / "breast1_label.nrrd")
    assert image.shape == label.shape == (21, 120, 45)
    assert image.spacing == pytest.approx((2.1, 0.664062, 0.664062))
    assert set(np.unique(label.array)) == {0, 1}


def test_nifti_ct_and_orientation(realdata: Path) -> None:
    ct = read_volume(realdata / "ct" / "totalseg_pulmonary_ct_cropped.nii.gz")
    assert ct.shape == (112, 102, 122) and ct.spacing == pytest.approx((1.5, 1.5, 1.5))
    small = read_volume(realdata / "ct" / "totalseg_example_ct_sm.nii.gz")
    assert small.shape == (30, 101, 122) and small.describe()["orientation"] == "RAS"


def test_ct_windows_are_fixed_hounsfield_windows() -> None:
    hu = np.array([-1000.0, -160.0, 40.0, 240.0, 3000.0])
    assert window_array(hu, "ct-soft-tissue").tolist() == [0, 0, 128, 255, 255]
    assert window_array(hu, "ct-lung").tolist() == [60, 202, 236, 255, 255]


def test_label_resampling_keeps_the_label_set(realdata: Path) -> None:
    label = read_volume(realdata / "mri" / "breast1_label.nrrd")
    resampled = resample_volume(label, (10, 61, 23), is_label=True)
    assert resampled.shape == (10, 61, 23)
    assert set(np.unique(resampled.array)) == {0, 1}
    assert resampled.spacing == pytest.approx((2.1 * 21 / 10, 0.664062 * 120 / 61, 0.664062 * 45 / 23))


def test_frames_for_the_video_path(realdata: Path) -> None:
    ct = read_volume(realdata / "ct" / "totalseg_pulmonary_ct_cropped.nii.gz")
    frames = model_frames(prepare_volume(ct, "ct", Preprocessing(ct_preset="ct-lung")))
    assert frames.shape == (48, 102, 122, 3) and frames.dtype == np.uint8
    series = read_dicom_series(realdata / "ct" / "totalseg_example_ct_dicom")
    assert target_shape(series) == (20, 384, 384)
    mri = read_volume(realdata / "mri" / "breast1_image.nrrd")
    assert target_shape(mri) == (22, 120, 45)  # 21 slices → even depth
