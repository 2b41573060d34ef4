"""Small DICOM files written in code for reader tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

MG_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.1.2"  # Digital Mammography X-Ray Image Storage - For Presentation
CT_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.2"


def write_grey_dicom(path: Path, pixels: np.ndarray, *, modality: str = "MG", photometric: str = "MONOCHROME2",
                     bits_stored: int = 16, signed: bool = False, **attributes: object) -> Path:
    """Write an uncompressed single- or multi-frame grey DICOM with the given extra attributes."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MG_SOP_CLASS if modality == "MG" else CT_SOP_CLASS
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = modality
    ds.PatientName = "Fake^Patient"
    ds.PatientID = "FAKE-0001"
    frames = pixels.shape[0] if pixels.ndim == 3 else 1
    ds.Rows, ds.Columns = pixels.shape[-2:]
    if frames > 1:
        ds.NumberOfFrames = frames
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = 16 if bits_stored > 8 else 8
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 1 if signed else 0
    for key, value in attributes.items():
        setattr(ds, key, value)
    dtype = (np.int16 if signed else np.uint16) if ds.BitsAllocated == 16 else np.uint8
    ds.PixelData = np.ascontiguousarray(pixels.astype(dtype)).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def voi_lut_item(first_value: int, data: list[int], bits: int) -> Dataset:
    item = Dataset()
    item.LUTDescriptor = [len(data), first_value, bits]
    item.add_new(0x00283006, "US" if bits <= 8 else "OW", data if bits <= 8 else np.asarray(data, "<u2").tobytes())
    return item


def pydicom_test_file(name: str) -> Path:
    return Path(pydicom.__file__).parent / "data" / "test_files" / name
