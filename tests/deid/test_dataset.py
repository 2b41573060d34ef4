"""Dataset-level rules: the VR safety net for attributes the table does not list, group lengths, counts."""

from __future__ import annotations

import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from breastgpt.deid import Pseudonymizer
from breastgpt.deid.dataset import PatientContext, deidentify_dataset

PSEUDONYMIZER = Pseudonymizer(b"d" * 32)


def _context(shift: int | None = -10) -> PatientContext:
    return PatientContext(PSEUDONYMIZER, "PKEY", shift)


def test_attributes_outside_the_table_are_judged_by_vr() -> None:
    ds = Dataset()
    ds.add_new(0x00100000, "UL", 999)  # group length: stale after removals
    ds.add_new(0x0040A123 + 0x100000, "PN", "Someone^Else")  # (0050,A123) is not a known tag: PN → emptied
    ds.CodingSchemeUID = "1.2.3.999"  # (0008,010C) not in the table, not DICOM root → replaced
    ds.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"  # DICOM root → kept
    ds.AcquisitionStartCondition = "DENS"  # CS outside the table → kept
    ds.DerivationDescription = "by Dr Who"  # listed X
    ds.add_new(0x00181800, "CS", "YES")  # Acquisition Time Synchronized: CS outside the table → kept
    ds.add_new(0x00210010, "LO", "VENDOR")  # private creator → removed
    ds.add_new(0x00080102 + 0x00F00000, "LT", "free text")  # (00F8,0102) unknown LT → removed
    ds.add_new(0x00400244 + 0x00100000, "DA", "20200110")  # (0050,0244) unknown DA → shifted
    report = deidentify_dataset(ds, _context())
    assert 0x00100000 not in ds and 0x00210010 not in ds and 0x00F80102 not in ds and "DerivationDescription" not in ds
    assert ds[0x0050A123].value == ""
    assert ds.CodingSchemeUID == PSEUDONYMIZER.uid("1.2.3.999")
    assert ds.ReferencedSOPClassUID == "1.2.840.10008.5.1.4.1.1.2"
    assert ds.AcquisitionStartCondition == "DENS" and ds[0x00181800].value == "YES"
    assert ds[0x00500244].value == "20191231"
    assert report.actions == {"X": 4, "Z": 1, "U": 2, "K": 2, "C": 1}


@pytest.mark.filterwarnings("ignore:Invalid value for VR DA")
def test_unparseable_dates_are_blanked_and_counted() -> None:
    ds = Dataset()
    ds.StudyDate = "2020-1-5"
    ds.ContentDate = "20200105"
    report = deidentify_dataset(ds, _context())
    assert ds.StudyDate == "" and ds.ContentDate == "20191226" and report.unparseable_dates == 1


def test_nested_items_follow_the_same_rules() -> None:
    inner = Dataset()
    inner.PatientName = "Deep^Name"
    inner.PatientID = "X123"
    inner.StudyDate = "20200105"
    inner.add_new(0x00090010, "LO", "ACME")
    middle = Dataset()
    middle.ContributingEquipmentSequence = Sequence([inner])
    ds = Dataset()
    ds.SourceImageSequence = Sequence([middle])
    deidentify_dataset(ds, _context(shift=None))
    item = ds.SourceImageSequence[0].ContributingEquipmentSequence[0]
    assert item.PatientName == "PKEY" and item.PatientID == "PKEY" and item.StudyDate == ""
    assert 0x00090010 not in item
