"""Issue 27 point 1: no reader follows a path written inside a file, and special files are never opened.

Each hostile file points at targets that exist (a secret file of known size), do not exist, are devices, or are
a FIFO (which would block any reader that opened it): the refusal must be the same typed error, with the same
words, whatever the target, and must name neither the target nor its size.
"""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np
import pytest

from breastgpt.io import MedicalFileError, UnsupportedFormatError, decode_path, inspect_path
from breastgpt.io.dicom import read_dicom_image
from breastgpt.io.feature_file import read_feature_file
from breastgpt.io.raster import read_raster
from breastgpt.io.volume import read_volume
from breastgpt.io.wsi import open_slide
from tests.io.fuzz_corpus import NRRD_RAW, _dicomdir, nifti_bytes, nrrd_bytes

SECRET_SIZE = 12345


@pytest.fixture
def targets(tmp_path: Path) -> dict[str, Path]:
    """Targets outside the hostile file's folder: an existing secret, a missing path, devices and a FIFO."""
    outside = tmp_path / "outside"
    outside.mkdir()
    secret = outside / "secret.raw"
    secret.write_bytes(b"s" * SECRET_SIZE)
    fifo = outside / "pipe"
    os.mkfifo(fifo)
    return {"exists": secret, "missing": outside / "missing.raw", "zero": Path("/dev/zero"),
            "environ": Path("/proc/self/environ"), "fifo": fifo}


def refusals(paths: list[Path], read: object) -> set[str]:
    """The problem text of each refusal, with the hostile file's own name taken out."""
    problems = set()
    for path in paths:
        with pytest.raises(MedicalFileError) as caught:
            read(path)  # type: ignore[operator]
        assert isinstance(caught.value, UnsupportedFormatError), caught.value
        problems.add(caught.value.problem.replace(path.name, "<file>"))
    return problems


def assert_reveals_nothing(problems: set[str], targets: dict[str, Path]) -> None:
    assert len(problems) == 1, problems  # one message whatever the target: existence is not revealed
    text = next(iter(problems))
    for target in targets.values():
        assert str(target) not in text and target.name not in text
    assert str(SECRET_SIZE) not in text and "12,345" not in text


@pytest.mark.timeout(30)
def test_nrrd_data_file_is_never_read(tmp_path: Path, targets: dict[str, Path]) -> None:
    folder = tmp_path / "files"
    folder.mkdir()
    paths = []
    for name, target in targets.items():
        for key in ("data file", "datafile"):
            path = folder / f"{name}-{key.replace(' ', '')}.nhdr"
            path.write_bytes(nrrd_bytes(NRRD_RAW | {key: str(target)}, b""))
            paths.append(path)
    listed = folder / "list.nhdr"
    listed.write_bytes(nrrd_bytes(NRRD_RAW | {"data file": "LIST\n" + "\n".join(map(str, targets.values()))}, b""))
    paths.append(listed)
    assert_reveals_nothing(refusals(paths, inspect_path) | refusals(paths, read_volume), targets)
    assert "separate data file" in next(iter(refusals(paths[:1], decode_path)))


@pytest.mark.timeout(30)
def test_nifti_image_file_outside_the_folder_is_never_read(tmp_path: Path, targets: dict[str, Path]) -> None:
    folder = tmp_path / "files"
    folder.mkdir()
    header, voxels = nifti_bytes(np.zeros((4, 4, 4), np.int16), pair=True)  # type: ignore[misc]
    paths = []
    for name, target in targets.items():
        (folder / f"{name}.hdr").write_bytes(header)
        os.symlink(target, folder / f"{name}.img")
        paths.append(folder / f"{name}.hdr")
    assert_reveals_nothing(refusals(paths, inspect_path) | refusals(paths, read_volume), targets)
    (folder / "good.hdr").write_bytes(header)
    (folder / "good.img").write_bytes(voxels)  # the same pair inside its folder reads
    assert read_volume(folder / "good.hdr").shape == (4, 4, 4)


@pytest.mark.timeout(30)
def test_feature_file_links_and_external_storage_are_never_followed(tmp_path: Path, targets: dict[str, Path]) -> None:
    folder = tmp_path / "files"
    folder.mkdir()
    paths = []
    for name, target in targets.items():
        for kind in ("link", "external", "virtual"):
            path = folder / f"{name}-{kind}.h5"
            with h5py.File(path, "w") as h5:
                h5.create_dataset("coords", data=np.zeros((4, 2), np.int64))
                if kind == "link":
                    h5["features"] = h5py.ExternalLink(str(target), "/features")
                elif kind == "external":
                    h5.create_dataset("features", shape=(4, 8), dtype="f4", external=[(str(target), 0, 128)])
                else:
                    layout = h5py.VirtualLayout(shape=(4, 8), dtype="f4")
                    layout[:] = h5py.VirtualSource(str(target), "features", shape=(4, 8))
                    h5.create_virtual_dataset("features", layout)
            paths.append(path)
    problems = {p.split("'features'")[1] for p in refusals(paths, read_feature_file) | refusals(paths, inspect_path)}
    assert problems == {" is a link to elsewhere; files named inside a file are never read",
                        " keeps its data in other files; files named inside a file are never read"}
    assert_reveals_nothing({problem for problem in problems if "link" in problem}, targets)


def test_dicomdir_references_are_not_followed(tmp_path: Path) -> None:
    path = tmp_path / "DICOMDIR"
    path.write_bytes(_dicomdir())  # a record naming ../../etc/shadow
    for read in (inspect_path, decode_path, read_dicom_image):
        with pytest.raises(UnsupportedFormatError, match="never followed") as caught:
            read(path)
        assert "shadow" not in str(caught.value)


def test_slide_index_formats_are_not_opened(tmp_path: Path) -> None:
    index = tmp_path / "slide.vms"  # Hamamatsu VMS: OpenSlide would open the files it lists
    index.write_text("[Virtual Microscope Specimen]\nNoLayers=1\nNoJpegColumns=1\nNoJpegRows=1\n"
                     "ImageFile=../../etc/passwd\nMapFile=/dev/zero\nOptimisationFile=/dev/zero\n")
    with pytest.raises(UnsupportedFormatError, match="never read") as caught:
        open_slide(index, mpp=0.5)
    assert "passwd" not in str(caught.value)


READERS = {"inspect": inspect_path, "decode": decode_path, "volume": read_volume, "dicom": read_dicom_image,
           "raster": read_raster, "slide": open_slide, "features": read_feature_file}


@pytest.mark.timeout(30)
@pytest.mark.parametrize("reader", sorted(READERS))
def test_fifo_and_devices_are_refused_without_opening(tmp_path: Path, reader: str) -> None:
    fifo = tmp_path / "scan.dcm"
    os.mkfifo(fifo)  # opening it for reading would block until the timeout fails the test
    device = tmp_path / "volume.nii.gz"
    os.symlink("/dev/zero", device)
    for path, kind in ((fifo, "a FIFO"), (device, "a character device"), (Path("/dev/null"), "a character device")):
        with pytest.raises(UnsupportedFormatError) as caught:
            READERS[reader](path)
        assert caught.value.problem == f"not a regular file ({kind}); it was not opened"
    with pytest.raises(UnsupportedFormatError, match="no such file"):
        READERS[reader](tmp_path / "missing.dcm")
