"""`inspect` on every real sample file, with exact values, through the Python API and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from breastgpt.cli import app
from breastgpt.io import inspect_path

runner = CliRunner()


def inspect_json(path: Path, *extra: str) -> dict:
    result = runner.invoke(app, ["inspect", "--json", str(path), *extra])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_aperio_svs(realdata: Path) -> None:
    info = inspect_json(realdata / "wsi" / "CMU-1-Small-Region.svs")
    assert info["kind"] == "slide" and info["dimensions"] == [2220, 2967]
    assert info["mpp"] == pytest.approx([0.499, 0.499], abs=1e-3)
    assert info["objective_power"] == 20.0


def test_jpeg2000_tcga_slide_levels(realdata: Path) -> None:
    info = inspect_json(realdata / "wsi" / "tcga-cr-7395-01a-01-ts1.svs")
    assert info["kind"] == "slide"
    assert [level["dimensions"] for level in info["levels"]] == [[4443, 3567], [2221, 1783]]
    assert info["mpp"] is None  # this frozen-section export declares no µm/px; tiling asks for --mpp
    supplied = inspect_json(realdata / "wsi" / "tcga-cr-7395-01a-01-ts1.svs", "--mpp", "0.25")
    assert supplied["mpp"] == [0.25, 0.25]


def test_ct_series_folder_is_one_volume(realdata: Path) -> None:
    info = inspect_json(realdata / "ct" / "totalseg_example_ct_dicom")
    assert info["kind"] == "volume" and info["modality"] == "CT"
    assert info["dimensions"] == {"depth": 20, "height": 512, "width": 512}
    assert info["slice_thickness_mm"] == [3.0]
    assert info["spacing_mm"] == {"z": 2.0, "y": 0.9765625, "x": 0.9765625}
    assert info["transfer_syntax"]["uid"] == "1.2.840.10008.1.2.4.90"


def test_breast_mri_nrrd(realdata: Path) -> None:
    info = inspect_json(realdata / "mri" / "breast1_image.nrrd")
    assert info["kind"] == "volume" and info["format"] == "nrrd"
    assert info["dimensions"] == {"depth": 21, "height": 120, "width": 45}
    assert info["spacing_mm"] == pytest.approx({"z": 2.1, "y": 0.664062, "x": 0.664062})


def test_nifti_volumes(realdata: Path) -> None:
    info = inspect_json(realdata / "ct" / "totalseg_pulmonary_ct_cropped.nii.gz")
    assert info["dimensions"] == {"depth": 112, "height": 102, "width": 122}
    assert info["spacing_mm"] == {"z": 1.5, "y": 1.5, "x": 1.5}


def test_single_ct_dicom(realdata: Path) -> None:
    info = inspect_json(realdata / "ct" / "pydicom_CT_small.dcm")
    assert (info["kind"], info["modality"], info["photometric_interpretation"]) == ("image", "CT", "MONOCHROME2")
    assert info["dimensions"] == {"rows": 128, "columns": 128, "frames": 1}
    assert info["pixel_spacing_mm"] == [0.661468, 0.661468]
    assert info["rescale"] == {"slope": 1.0, "intercept": -1024.0}
    assert "CompressedSamples" not in json.dumps(info)  # the test file's patient name


@pytest.mark.parametrize("name", ["benign_1", "malignant_2", "normal_3"])
def test_busi_pngs(realdata: Path, name: str) -> None:
    info = inspect_json(realdata / "ultrasound" / "busi" / f"{name}.png")
    assert info["kind"] == "image" and info["format"] == "png"
    assert info["dimensions"]["frames"] == 1 and info["dimensions"]["width"] > 0


def test_every_busi_png_is_an_image(realdata: Path) -> None:
    for path in sorted((realdata / "ultrasound" / "busi").glob("*.png")):
        assert inspect_path(path)["kind"] == "image"


def test_route_comes_from_content_not_suffix(realdata: Path, tmp_path: Path) -> None:
    disguised = tmp_path / "scan.png"
    disguised.write_bytes((realdata / "ct" / "pydicom_CT_small.dcm").read_bytes())
    assert inspect_path(disguised)["format"] == "dicom"


def test_unreadable_file_exits_2_with_the_reason(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("not an image")
    result = runner.invoke(app, ["inspect", str(path)])
    assert result.exit_code == 2
    assert "unrecognised file type" in result.output


def test_no_identifier_in_any_description(realdata: Path) -> None:
    import pydicom

    header = pydicom.dcmread(realdata / "ct" / "pydicom_CT_small.dcm", stop_before_pixels=True)
    text = json.dumps(inspect_path(realdata / "ct" / "pydicom_CT_small.dcm"))
    for value in (str(header.PatientName), str(header.PatientID)):
        assert value not in text


def test_webp_is_an_image_and_other_riff_files_are_not(tmp_path: Path) -> None:
    import numpy as np
    from PIL import Image

    from breastgpt.infer.inputs import load_image
    from breastgpt.io import UnsupportedFormatError

    array = np.random.default_rng(0).integers(0, 255, (20, 30, 3), dtype=np.uint8)
    Image.fromarray(array).save(tmp_path / "scan.webp", lossless=True)
    info = inspect_path(tmp_path / "scan.webp")
    assert (info["kind"], info["format"]) == ("image", "webp")
    assert np.array_equal(load_image(tmp_path / "scan.webp"), array)
    (tmp_path / "sound.wav").write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(24))
    with pytest.raises(UnsupportedFormatError, match="unrecognised file type"):
        inspect_path(tmp_path / "sound.wav")
