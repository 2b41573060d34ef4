"""Writers for conformance fixtures: files as the datasets' own download tools leave them, written here with
pydicom / Pillow / pandas directly (never through `breastgpt.synth`, whose generators follow the adapters'
assumptions), plus the clutter real downloads carry (LICENSE, README, .DS_Store, AppleDouble `._*` files)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Iterable

import numpy as np
from PIL import Image

UID_ROOT = "1.3.6.1.4.1.9590.100.1.2."  # the prefix CBIS-DDSM's UIDs share


def write_dicom(path: Path, pixels: np.ndarray, *, series_uid: str, study_uid: str, patient_id: str,
                sop_uid: str | None = None, description: str = "", laterality: str = "",
                view: str = "") -> Path:
    """A Part 10 MONOCHROME2 16-bit (or 8-bit) secondary-capture-style mammogram written by pydicom."""
    import pydicom
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.2"  # Digital Mammography X-Ray, for presentation
    meta.MediaStorageSOPInstanceUID = sop_uid or generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.PatientID = study_uid, series_uid, patient_id
    ds.PatientName, ds.Modality, ds.SeriesDescription = patient_id, "MG", description
    ds.ImageLaterality, ds.ViewPosition = laterality, view
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PixelRepresentation = 1, "MONOCHROME2", 0
    bits = 16 if pixels.dtype == np.uint16 else 8
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = bits, bits, bits - 1
    ds.PixelData = np.ascontiguousarray(pixels).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    pydicom.dcmwrite(path, ds, enforce_file_format=True)
    return path


def mammogram(height: int, width: int, side: str = "L", seed: int = 0, dtype=np.uint16) -> np.ndarray:
    """A bright half-ellipse 'breast' against the chest wall on the image's `side` edge, on a dark background."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:height, 0:width]
    wall = 0 if side == "L" else width - 1
    inside = ((xs - wall) / (0.8 * width)) ** 2 + ((ys - height / 2) / (0.45 * height)) ** 2 < 1
    top = 3000 if dtype == np.uint16 else 200
    image = np.where(inside, top * 0.6 + rng.normal(0, top * 0.05, (height, width)), rng.normal(5, 2, (height, width)))
    return np.clip(image, 0, top).astype(dtype)


def mask(height: int, width: int, box: tuple[int, int, int, int], dtype=np.uint8) -> np.ndarray:
    """A binary lesion mask (255 inside [x1, y1, x2, y2))."""
    out = np.zeros((height, width), dtype)
    x1, y1, x2, y2 = box
    out[y1:y2, x1:x2] = 255
    return out


def write_image(path: Path, pixels: np.ndarray, fmt: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, format=fmt)
    return path


def write_csv(path: Path, header: Iterable[str], rows: Iterable[Iterable[object]], *, sep: str = ",",
              crlf: bool = False, quote_all: bool = False) -> Path:
    """A CSV as spreadsheets write it (optionally every field quoted, CRLF line ends)."""
    import csv

    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=sep, lineterminator="\r\n" if crlf else "\n",
                        quoting=csv.QUOTE_ALL if quote_all else csv.QUOTE_MINIMAL)
    writer.writerow(list(header))
    writer.writerows([list(r) for r in rows])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buffer.getvalue().encode("utf-8"))
    return path


def write_xlsx(path: Path, header: list[str], rows: list[list[object]], sheet: str = "Sheet1") -> Path:
    import pandas as pd

    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows, columns=header).to_excel(path, index=False, sheet_name=sheet)
    return path


def add_clutter(root: Path, *folders: str) -> list[Path]:
    """What downloads and copies leave beside the data: LICENSE, README, .DS_Store, AppleDouble files."""
    made = [root / "LICENSE.txt", root / "README.md", root / ".DS_Store"]
    made[0].write_text("Creative Commons Attribution 4.0 International\r\n")
    made[1].write_text("# Dataset\r\n\r\nSee the publication.\r\n")
    made[2].write_bytes(b"\x00\x00\x00\x01Bud1" + b"\x00" * 64)
    for folder in folders:
        target = root / folder
        target.mkdir(parents=True, exist_ok=True)
        (target / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1" + b"\x00" * 64)
        made.append(target / ".DS_Store")
    return made
