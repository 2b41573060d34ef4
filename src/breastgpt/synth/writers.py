"""File writers for synthetic cohorts: DICOM (with planted fake identifiers), PNG/JPEG/PGM/TIFF rasters,
NIfTI volumes, pyramidal TIFF / SVS-like slides, and tables. Every file is written through
`breastgpt.artifacts` (temporary name, then rename), so an interrupted run never leaves a half-written file under
its real name; none is fsynced, because a synthetic cohort is regenerated rather than recovered."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pydicom
from PIL import Image
from pydicom.dataset import FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from breastgpt.artifacts import atomic_path, atomic_write_bytes, atomic_write_text

# Fake identifiers planted in every synthetic DICOM so de-identification and leak tests have something to find.
# None of them may ever appear in a sample_id, a record or a meta dict.
PLANTED_IDENTIFIERS: dict[str, str] = {
    "PatientName": "FAKEPHI^JANE^QUINCY",
    "PatientBirthDate": "19580317",
    "InstitutionName": "FAKEPHI ST ELSEWHERE HOSPITAL",
    "ReferringPhysicianName": "FAKEPHI^DOCTOR",
    "OtherPatientIDs": "FAKEPHI-MRN-0042",
    "nested_PatientName": "FAKEPHI^NESTED^NAME",
    "private": "FAKEPHI-PRIVATE-SSN-123-45-6789",
}
PLANTED_PATIENT_ID_PREFIX = "FAKEPHI-ID-"
MAMMO_SOP = "1.2.840.10008.5.1.4.1.1.1.2"  # Digital Mammography X-Ray Image Storage - For Presentation


def uid(seed_text: str) -> str:
    """A deterministic DICOM UID derived from text (so the same seed gives the same UIDs)."""
    return generate_uid(prefix="1.2.826.0.1.3680043.10.1234.", entropy_srcs=[seed_text])


def write_dicom(path: Path, pixels: np.ndarray, *, key: str, modality: str = "MG", laterality: str = "",
                view: str = "", photometric: str = "MONOCHROME2", window: tuple[float, float] | None = None,
                study_uid: str | None = None, series_uid: str | None = None, extra: dict[str, Any] | None = None,
                patient_id: str | None = None, series_description: str = "") -> Path:
    """Write a single-frame 16-bit (or 8-bit) grayscale DICOM with realistic tags and planted identifiers."""
    ds = _base_dataset(key, modality, study_uid, series_uid, patient_id)
    ds.Rows, ds.Columns = int(pixels.shape[0]), int(pixels.shape[1])
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
    bits = 8 if pixels.dtype == np.uint8 else 16
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = bits, min(bits, 12 if bits == 16 else 8), \
        min(bits, 12 if bits == 16 else 8) - 1, 0
    if photometric == "MONOCHROME1":  # stored inverted (and its window mirrored); readers must undo it
        top = 255 if bits == 8 else 4095
        pixels = (top - pixels.astype(np.int32)).clip(0, top).astype(pixels.dtype)
        window = (top - window[0], window[1]) if window else None
    ds.PixelData = np.ascontiguousarray(pixels).tobytes()
    if laterality:
        ds.ImageLaterality = laterality
    if view:
        ds.ViewPosition = view
    if window:
        ds.WindowCenter, ds.WindowWidth = window
    if series_description:
        ds.SeriesDescription = series_description
    for name, value in (extra or {}).items():
        setattr(ds, name, value)
    with atomic_path(path, durable=False) as tmp:
        ds.save_as(tmp, enforce_file_format=True)
    return path


def _base_dataset(key: str, modality: str, study_uid: str | None, series_uid: str | None,
                  patient_id: str | None) -> pydicom.Dataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MAMMO_SOP if modality == "MG" else "1.2.840.10008.5.1.4.1.1.7"
    meta.MediaStorageSOPInstanceUID = uid(f"sop:{key}")
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = study_uid or uid(f"study:{key}")
    ds.SeriesInstanceUID = series_uid or uid(f"series:{key}")
    ds.Modality, ds.Manufacturer, ds.ManufacturerModelName = modality, "SYNTHETIC", "SynthMammo 1"
    ds.StudyDate, ds.ContentDate = "20200102", "20200102"
    ds.PatientName = PLANTED_IDENTIFIERS["PatientName"]
    ds.PatientID = patient_id or PLANTED_PATIENT_ID_PREFIX + uid(f"pid:{key}")[-8:]
    ds.PatientBirthDate = PLANTED_IDENTIFIERS["PatientBirthDate"]
    ds.PatientSex = "F"
    ds.InstitutionName = PLANTED_IDENTIFIERS["InstitutionName"]
    ds.ReferringPhysicianName = PLANTED_IDENTIFIERS["ReferringPhysicianName"]
    ds.OtherPatientIDs = PLANTED_IDENTIFIERS["OtherPatientIDs"]
    ds.AccessionNumber = "FAKEPHI-ACC"
    item = pydicom.Dataset()
    item.PatientName = PLANTED_IDENTIFIERS["nested_PatientName"]
    item.ReferencedSOPInstanceUID = ds.SOPInstanceUID
    ds.ReferencedPatientSequence = Sequence([item])
    block = ds.private_block(0x0011, "FAKEPHI SYNTH", create=True)
    block.add_new(0x01, "LO", PLANTED_IDENTIFIERS["private"])
    return ds


def write_png(path: Path, pixels: np.ndarray) -> Path:
    with atomic_path(path, durable=False) as tmp:
        Image.fromarray(pixels).save(tmp, format="PNG")
    return path


def write_jpeg(path: Path, pixels: np.ndarray, quality: int = 92) -> Path:
    with atomic_path(path, durable=False) as tmp:
        Image.fromarray(pixels).save(tmp, format="JPEG", quality=quality)
    return path


def write_pgm(path: Path, pixels: np.ndarray) -> Path:
    """Binary (P5) 8-bit PGM, as MIAS ships."""
    h, w = pixels.shape
    data = f"P5\n{w} {h}\n255\n".encode() + np.ascontiguousarray(pixels.astype(np.uint8)).tobytes()
    return atomic_write_bytes(path, data, durable=False)


def write_tiff(path: Path, pixels: np.ndarray) -> Path:
    import tifffile

    with atomic_path(path, durable=False) as tmp:
        tifffile.imwrite(tmp, pixels)
    return path


def write_nifti(path: Path, volume: np.ndarray, spacing: tuple[float, float, float]) -> Path:
    """Write a (Z,Y,X) array as NIfTI (stored X,Y,Z with an RAS-style diagonal affine)."""
    import nibabel as nib

    data = np.transpose(volume, (2, 1, 0))
    affine = np.diag([spacing[2], spacing[1], spacing[0], 1.0])
    image = nib.Nifti1Image(data, affine)
    image.header.set_xyzt_units("mm")
    from nibabel.openers import Opener

    level, Opener.default_compresslevel = Opener.default_compresslevel, 1  # fast gzip: synthetic data
    try:
        with atomic_path(path, durable=False) as tmp:  # the temporary keeps the .nii.gz suffix nibabel keys on
            nib.save(image, tmp)
    finally:
        Opener.default_compresslevel = level
    return path


def write_pyramid_tiff(path: Path, rgb: np.ndarray, *, mpp: float, aperio: bool) -> Path:
    """A tiled, JPEG-compressed pyramid (levels ÷2 until < 512 px). With `aperio`, levels are consecutive pages
    with an Aperio-style ImageDescription (MPP, AppMag) so OpenSlide reads it as SVS; otherwise a generic
    pyramidal TIFF with sub-resolution IFDs and resolution tags."""
    import tifffile

    levels = [rgb]
    while min(levels[-1].shape[:2]) >= 1024:
        levels.append(levels[-1][::2, ::2])
    h, w = rgb.shape[:2]
    with atomic_path(path, durable=False) as tmp, tifffile.TiffWriter(tmp, bigtiff=False) as tif:
        if aperio:
            for i, level in enumerate(levels):
                desc = (f"Aperio Image Library v12.0.0 \r\n{w}x{h} [0,0 {w}x{h}] (256x256) JPEG/RGB Q=90"
                        f"|AppMag = 20|MPP = {mpp * 2 ** i:.4f}|Filename = synthetic")
                tif.write(level, tile=(256, 256), compression="jpeg", photometric="rgb", description=desc,
                          subfiletype=0 if i == 0 else 1, metadata=None)
        else:
            resolution = (1e4 / mpp, 1e4 / mpp)
            tif.write(rgb, tile=(256, 256), compression="jpeg", photometric="rgb", subifds=len(levels) - 1,
                      resolution=resolution, resolutionunit="CENTIMETER")
            for i, level in enumerate(levels[1:], start=1):
                tif.write(level, tile=(256, 256), compression="jpeg", photometric="rgb", subfiletype=1,
                          resolution=(resolution[0] / 2 ** i, resolution[1] / 2 ** i), resolutionunit="CENTIMETER")
    return path


def write_table(path: Path, rows: list[dict[str, Any]], *, sep: str = ",", columns: list[str] | None = None,
                sheet: str | None = None) -> Path:
    frame = pd.DataFrame(rows, columns=columns)
    with atomic_path(path, durable=False) as tmp:
        if path.suffix.lower() == ".xlsx":
            with pd.ExcelWriter(tmp, engine="openpyxl") as writer:
                frame.to_excel(writer, sheet_name=sheet or "Sheet1", index=False)
        else:
            frame.to_csv(tmp, sep=sep, index=False)
    return path


def write_workbook(path: Path, sheets: dict[str, list[dict[str, Any]]], columns: list[str]) -> Path:
    with atomic_path(path, durable=False) as tmp, pd.ExcelWriter(tmp, engine="openpyxl") as writer:
        for name, rows in sheets.items():
            pd.DataFrame(rows, columns=columns).to_excel(writer, sheet_name=name, index=False)
    return path


def write_text(path: Path, text: str) -> Path:
    return atomic_write_text(path, text, durable=False)


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Scale a 12-bit mammogram to 8-bit for sources that ship JPEG/PNG/PGM."""
    return (image.astype(np.float32) / 4095 * 255).clip(0, 255).astype(np.uint8)


def today() -> str:
    return dt.date(2020, 1, 2).isoformat()
