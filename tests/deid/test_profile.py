"""The action table is data that agrees with pydicom's data dictionary and the basic profile."""

from __future__ import annotations

from pydicom.datadict import keyword_for_tag

from breastgpt.deid.profile import BASIC_PROFILE, NEVER_SHIFTED, Action, action_for, in_removed_group


def test_every_row_names_its_tag_correctly() -> None:
    wrong = {hex(tag): row.keyword for tag, row in BASIC_PROFILE.items() if keyword_for_tag(tag) != row.keyword}
    assert wrong == {}
    assert len(BASIC_PROFILE) >= 250


def test_standard_codes_and_resolved_actions_agree() -> None:
    for tag, row in BASIC_PROFILE.items():
        codes = set(row.standard.replace("*", "").split("/"))
        assert codes <= {"D", "Z", "X", "K", "C", "U"}, hex(tag)
        # a resolved action is one of the standard's choices, or one of our documented departures
        departures = {"PatientName", "PatientID", "PatientSex", "PatientAge", "ReferencedImageSequence",
                      "SourceImageSequence", "GraphicAnnotationSequence", "PersonIdentificationCodeSequence",
                      "VerifyingObserverSequence", "VerifyingObserverIdentificationCodeSequence"}
        assert row.action.value in codes or row.keyword in departures, row.keyword


def test_key_rows() -> None:
    expected = {"PatientName": Action.DUMMY, "PatientID": Action.DUMMY, "PatientBirthDate": Action.ZERO,
                "OtherPatientIDsSequence": Action.REMOVE, "AccessionNumber": Action.ZERO,
                "InstitutionName": Action.REMOVE, "DeviceSerialNumber": Action.REMOVE, "StudyInstanceUID":
                Action.REPLACE_UID, "ImageComments": Action.REMOVE, "PatientSex": Action.KEEP,
                "PatientAge": Action.KEEP, "ReferencedPatientSequence": Action.REMOVE,
                "RequestAttributesSequence": Action.REMOVE}
    by_keyword = {row.keyword: row.action for row in BASIC_PROFILE.values()}
    assert {key: by_keyword[key] for key in expected} == expected
    assert action_for(0x00080060) is None  # Modality: not in the table, kept


def test_removed_groups_and_never_shifted() -> None:
    assert in_removed_group(0x60003000) and in_removed_group(0x50200010) and not in_removed_group(0x7FE00010)
    assert 0x00100030 in NEVER_SHIFTED
