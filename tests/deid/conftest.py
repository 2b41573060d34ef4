"""Synthetic DICOM files with fake identifiers planted at top level, in nested sequences and in private tags.

Every identifying value below is invented. Pixel values are small gradients so that no run of image bytes can
spell a planted value by chance (the high byte of every 16-bit sample is 0-2).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian

from breastgpt.deid import Pseudonymizer

SECRET = b"unit-test-secret-0123456789abcdef"
SOP_CLASS = {"MG": "1.2.840.10008.5.1.4.1.1.1.2", "US": "1.2.840.10008.5.1.4.1.1.6.1", "CT": "1.2.840.10008.5.1.4.1.1.2"}
ROOT = "1.2.826.0.1.3680043.99.77"


@dataclass(frozen=True)
class Identity:
    name: str
    patient_id: str
    other_id: str
    birth_date: str
    accession: str
    institution: str
    institution_address: str
    referring: str
    operator: str
    address: str
    phone: str
    serial: str
    station: str
    requested_procedure: str
    scheduled_step: str  # Scheduled Procedure Step ID at top level, as worklist-fed modalities write it
    implementation: str  # file meta Implementation Version Name, set by some sites to their own name

    def planted(self) -> list[str]:
        """Every planted value and name component as written into the source files."""
        parts = [part for part in self.name.split("^") if len(part) >= 3]
        return [self.name, *parts, self.patient_id, self.other_id, self.birth_date, self.accession,
                self.institution, self.institution_address, self.referring, *self.referring.split("^"),
                self.operator, *self.operator.split("^"), self.address, self.phone, self.serial, self.station,
                self.requested_procedure, self.scheduled_step, self.implementation]


PATIENT_A = Identity(
    name="Vandermeer^Rosalind^Quenby", patient_id="MRN4471902", other_id="ALT99812Z", birth_date="19610312",
    accession="ACC20230915X", institution="St Hildegard Breast Centre", institution_address="12 Lindenweg Altstadt",
    referring="Okonkwo^Bartholomew", operator="Pemberton^Ysolde", address="7 Quarry Lane Fenwick",
    phone="+44 1632 960123", serial="SN88231XQ", station="MAMMOROOM3", requested_procedure="REQ5512K",
    scheduled_step="SPS7734021Q", implementation="HILDEGARD_PACS7")
PATIENT_B = Identity(
    name="Thistlewood^Marguerite", patient_id="99120457", other_id="ALT55107Y", birth_date="19770704",
    accession="ACC20220102Q", institution="Kestrel Valley Clinic", institution_address="3 Heronsgate Road Brackley",
    referring="Featherstonehaugh^Cornelius", operator="Abernethy^Wilhelmina", address="44 Mill Row Dunmore",
    phone="+44 1632 960999", serial="SN55001ZK", station="USROOM7", requested_procedure="REQ7719M",
    scheduled_step="SPS5521087K", implementation="KESTRELRIS_V2")


@dataclass(frozen=True)
class Instance:
    modality: str
    identity: Identity
    study_uid: str
    series_uid: str
    sop_uid: str
    study_date: str = "20230915"
    source_sop_uid: str | None = None  # referenced from SourceImageSequence


def write_synthetic_dicom(path: Path, instance: Instance) -> Path:
    """Write a small MG (16-bit MONOCHROME2), US (RGB, burned-in YES) or CT (signed 16-bit) file."""
    ds = _header(instance)
    _plant_nested(ds, instance)
    _plant_private(ds, instance.identity)
    _set_pixels(ds, instance.modality)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.SourceApplicationEntityTitle = instance.identity.station
    meta.ImplementationVersionName = instance.identity.implementation
    ds.file_meta = meta
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def _header(instance: Instance) -> Dataset:
    who = instance.identity
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = SOP_CLASS[instance.modality]
    ds.SOPInstanceUID = instance.sop_uid
    ds.StudyInstanceUID = instance.study_uid
    ds.SeriesInstanceUID = instance.series_uid
    ds.FrameOfReferenceUID = instance.study_uid + ".9"
    ds.Modality = instance.modality
    ds.PatientName = who.name
    ds.PatientID = who.patient_id
    ds.OtherPatientIDs = who.other_id
    ds.PatientBirthDate = who.birth_date
    ds.PatientSex = "F"
    ds.PatientAge = "062Y"
    ds.PatientAddress = who.address
    ds.PatientTelephoneNumbers = who.phone
    ds.AccessionNumber = who.accession
    ds.StudyID = "STUDY" + who.accession[-5:]
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = instance.study_date
    ds.AcquisitionDateTime = instance.study_date + "101530.25+0100"
    ds.StudyTime = "101500"
    ds.InstitutionName = who.institution
    ds.InstitutionAddress = who.institution_address
    ds.ReferringPhysicianName = who.referring
    ds.OperatorsName = who.operator
    ds.DeviceSerialNumber = who.serial
    ds.StationName = who.station
    ds.ScheduledProcedureStepID = who.scheduled_step
    ds.StudyDescription = f"Mammo for {who.name.split('^')[0]}"
    ds.ImageComments = f"patient {who.patient_id} seen"
    ds.Manufacturer = "FAKEVENDOR"
    ds.ManufacturerModelName = "Model 9"
    ds.BodyPartExamined = "BREAST"
    ds.ImageLaterality = "L"
    ds.ViewPosition = "CC"
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.add_new(0x60000010, "US", 8)  # overlay rows: the whole 60xx group must go
    ds.add_new(0x60004000, "LT", f"overlay note {who.name}")
    return ds


def _plant_nested(ds: Dataset, instance: Instance) -> None:
    who = instance.identity
    patient_ref = Dataset()
    patient_ref.PatientName = who.name
    patient_ref.PatientID = who.patient_id
    patient_ref.ReferencedSOPInstanceUID = instance.study_uid + ".55"
    ds.ReferencedPatientSequence = Sequence([patient_ref])
    request = Dataset()
    request.RequestedProcedureID = who.requested_procedure
    request.AccessionNumber = who.accession
    request.ScheduledProcedureStepID = who.patient_id + "S"
    ds.RequestAttributesSequence = Sequence([request])
    equipment = Dataset()  # a sequence the profile keeps: its items are cleaned attribute by attribute
    equipment.Manufacturer = "FAKEVENDOR"
    equipment.InstitutionName = who.institution
    equipment.StationName = who.station
    equipment.OperatorsName = who.operator
    equipment.ContributionDateTime = instance.study_date + "120000"
    equipment.add_new(0x00291010, "LO", who.name)  # a private tag inside an item
    ds.ContributingEquipmentSequence = Sequence([equipment])
    if instance.source_sop_uid:
        source = Dataset()
        source.ReferencedSOPClassUID = SOP_CLASS[instance.modality]
        source.ReferencedSOPInstanceUID = instance.source_sop_uid
        ds.SourceImageSequence = Sequence([source])


def _plant_private(ds: Dataset, who: Identity) -> None:
    block = ds.private_block(0x0009, "ACME_PRIVATE_1", create=True)
    block.add_new(0x01, "LO", who.name)
    block.add_new(0x02, "LO", who.patient_id)
    block.add_new(0x03, "DA", who.birth_date)


def _set_pixels(ds: Dataset, modality: str) -> None:
    if modality == "US":
        ds.BurnedInAnnotation = "YES"
        rgb = np.full((36, 48, 3), 200, dtype=np.uint8)
        rgb[2:5, 2:30] = 250  # a "text" band at the top
        ds.set_pixel_data(rgb, "RGB", 8, generate_instance_uid=False)
        region = Dataset()
        region.RegionLocationMinX0, region.RegionLocationMinY0 = 8, 6
        region.RegionLocationMaxX1, region.RegionLocationMaxY1 = 39, 29
        region.RegionSpatialFormat = 1
        ds.SequenceOfUltrasoundRegions = Sequence([region])
        return
    rows, cols = (24, 32) if modality == "MG" else (16, 16)
    values = np.arange(rows * cols).reshape(rows, cols)
    if modality == "MG":
        ds.set_pixel_data(values.astype(np.uint16), "MONOCHROME2", 12, generate_instance_uid=False)
        ds.PixelSpacing = ds.ImagerPixelSpacing = [0.1, 0.1]
        ds.WindowCenter, ds.WindowWidth = 300, 600
    else:
        ds.set_pixel_data((values - 100).astype(np.int16), "MONOCHROME2", 16, generate_instance_uid=False)
        ds.PixelSpacing = [0.7, 0.7]
        ds.RescaleIntercept, ds.RescaleSlope = -1024, 1


@dataclass(frozen=True)
class Cohort:
    """Patient A: two MG images of one study (the second refers to the first) and a CT in another study.
    Patient B: one US image."""

    root: Path
    mg1: Path
    mg2: Path
    ct: Path
    us: Path
    instances: dict[str, Instance]

    def sources(self) -> list[Path]:
        return [self.mg1, self.mg2, self.ct, self.us]


@pytest.fixture()
def cohort(tmp_path: Path) -> Cohort:
    root = tmp_path / "raw"
    study_a, study_a2, study_b = f"{ROOT}.1", f"{ROOT}.2", f"{ROOT}.3"
    instances = {
        "mg1": Instance("MG", PATIENT_A, study_a, study_a + ".1", study_a + ".1.1"),
        "mg2": Instance("MG", PATIENT_A, study_a, study_a + ".1", study_a + ".1.2", source_sop_uid=study_a + ".1.1"),
        "ct": Instance("CT", PATIENT_A, study_a2, study_a2 + ".1", study_a2 + ".1.1", study_date="20240102"),
        "us": Instance("US", PATIENT_B, study_b, study_b + ".1", study_b + ".1.1", study_date="20220102"),
    }
    # Source names carry identifiers, as they often do in exports; outputs must not inherit them.
    paths = {
        "mg1": root / "Vandermeer_Rosalind" / "MRN4471902_LCC.dcm",
        "mg2": root / "Vandermeer_Rosalind" / "MRN4471902_LCC_processed.dcm",
        "ct": root / "Vandermeer_Rosalind" / "ct" / "slice1.dcm",
        "us": root / "Thistlewood" / "99120457_us.dcm",
    }
    for key, path in paths.items():
        write_synthetic_dicom(path, instances[key])
    return Cohort(root, paths["mg1"], paths["mg2"], paths["ct"], paths["us"], instances)


@pytest.fixture()
def pseudonymizer() -> Pseudonymizer:
    return Pseudonymizer(SECRET)
