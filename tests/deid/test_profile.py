"""The action table is data that agrees with pydicom's data dictionary and with an independently published
extraction of PS3.15 Table E.1-1, and every place where our action differs from the standard is documented.

Oracle: `data/ps3.15-2026c-table-e1-1.tsv`, the basic-profile column of Table E.1-1 (edition 2026c) as shipped
by dicom-anonymizer 2.1.0 on PyPI (Kitware Europe, BSD-3-Clause; see the file's header and
`data/dicom-anonymizer-LICENSE.txt`), extracted with `scripts/extract_ps315_table.py`.
"""

from __future__ import annotations

import re
from pathlib import Path

from pydicom.datadict import keyword_for_tag

from breastgpt.deid.profile import (BASIC_PROFILE, NEVER_SHIFTED, NOT_IN_STANDARD, PROFILE_EDITION, Action,
                                    action_for, in_removed_group)

DATA = Path(__file__).parent / "data"
ORACLE = DATA / f"ps3.15-{PROFILE_EDITION}-table-e1-1.tsv"
DOC = Path(__file__).resolve().parents[2] / "docs" / "deidentification.md"
# Pinned so that a new difference from the standard is a deliberate, documented change.
EXPECTED_DIFFERENCES = 12


def _oracle() -> tuple[dict[int, str], dict[str, str]]:
    """Exact tags → code, and repeating-group rows (`60xx,3000`) → code."""
    exact, masked = {}, {}
    for line in ORACLE.read_text(encoding="utf-8").splitlines()[3:]:
        tag, code, _name = line.split("\t")
        if "x" in tag:
            masked[tag] = code
        else:
            exact[int(tag.replace(",", ""), 16)] = code
    return exact, masked


def _tag_text(tag: int) -> str:
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X})"


def _differences() -> dict[int, str]:
    return {tag: row.keyword for tag, row in BASIC_PROFILE.items() if row.action.value not in row.standard_choices()}


def test_oracle_is_the_whole_published_table() -> None:
    exact, masked = _oracle()
    assert len(exact) == 652 and sorted(masked) == ["50xx,xxxx", "60xx,3000", "60xx,4000"]
    assert exact[0x00400009] == "X" and exact[0x00100010] == "Z"  # Scheduled Procedure Step ID, Patient's Name


def test_every_published_attribute_has_our_row_with_the_published_code() -> None:
    exact, _ = _oracle()
    ours = {tag: row.standard for tag, row in BASIC_PROFILE.items() if row.standard != NOT_IN_STANDARD}
    assert sorted(_tag_text(tag) for tag in set(exact) - set(ours)) == []
    assert sorted(_tag_text(tag) for tag in set(ours) - set(exact)) == []
    assert {_tag_text(tag): (code, exact[tag]) for tag, code in ours.items() if code != exact[tag]} == {}


def test_masked_published_rows_are_removed_whole_groups() -> None:
    _, masked = _oracle()
    for pattern, code in masked.items():
        assert code == "X"
        for fill in ("00", "1E", "FE"):
            tag = int(pattern.replace("xx", fill, 1).replace(",", "").replace("xxxx", "0010"), 16)
            assert in_removed_group(tag), pattern


def test_every_difference_from_the_standard_is_noted_and_documented() -> None:
    differences = _differences()
    assert len(differences) == EXPECTED_DIFFERENCES, sorted(differences.values())
    assert sorted(BASIC_PROFILE[tag].keyword for tag in differences if not BASIC_PROFILE[tag].note) == []
    doc = DOC.read_text(encoding="utf-8")
    assert sorted(f"{_tag_text(tag)} {keyword}" for tag, keyword in differences.items()
                  if _tag_text(tag) not in doc) == []
    assert "(0002,0013)" in doc and "60xx" in doc  # file meta and overlay groups: outside the table's rows


def test_every_row_names_its_tag_correctly() -> None:
    known = {hex(tag): row.keyword for tag, row in BASIC_PROFILE.items()
             if keyword_for_tag(tag) and keyword_for_tag(tag) != row.keyword}
    assert known == {}
    # attributes newer than pydicom's dictionary carry the standard's name in keyword form
    assert all(re.fullmatch(r"[A-Z][A-Za-z0-9]+", row.keyword) for row in BASIC_PROFILE.values())


def test_key_rows() -> None:
    expected = {"PatientName": Action.DUMMY, "PatientID": Action.DUMMY, "PatientBirthDate": Action.ZERO,
                "OtherPatientIDsSequence": Action.REMOVE, "AccessionNumber": Action.ZERO,
                "InstitutionName": Action.REMOVE, "DeviceSerialNumber": Action.REMOVE, "StudyInstanceUID":
                Action.REPLACE_UID, "ImageComments": Action.REMOVE, "PatientSex": Action.KEEP,
                "PatientAge": Action.KEEP, "ReferencedPatientSequence": Action.REMOVE,
                "RequestAttributesSequence": Action.REMOVE, "ScheduledProcedureStepID": Action.REMOVE}
    by_keyword = {row.keyword: row.action for row in BASIC_PROFILE.values()}
    assert {key: by_keyword[key] for key in expected} == expected
    assert action_for(0x00080060) is None  # Modality: not in the table, kept


def test_removed_groups_and_never_shifted() -> None:
    assert in_removed_group(0x60003000) and in_removed_group(0x50200010) and not in_removed_group(0x7FE00010)
    assert 0x00100030 in NEVER_SHIFTED
