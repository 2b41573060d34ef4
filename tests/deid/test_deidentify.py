"""Acceptance (issue 2, point 4): no planted identifier survives anywhere; keys, shifts and UIDs stay consistent."""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
from pathlib import Path

import numpy as np
import pydicom
import pytest

from breastgpt.deid import (BurnedInPolicy, DeidPolicy, PhiScanner, Pseudonymizer, Rect, deidentify_file,
                            deidentify_folder)
from breastgpt.deid.pipeline import SUMMARY_NAME
from tests.deid.conftest import PATIENT_A, PATIENT_B, Cohort

OUTPUT_NAME = re.compile(r"P[A-Z2-7]{16}/S[A-Z2-7]{16}/I[A-Z2-7]{16}\.dcm")
US_POLICY = DeidPolicy(source="test", burned_in=BurnedInPolicy(use_ultrasound_regions=True))


def _raw_variants(value: str) -> list[bytes]:
    forms = {value, value.upper(), value.lower(), value.replace("^", " "), value.replace("^", "_")}
    return [form.encode("latin-1") for form in forms]


def _run_all(cohort: Cohort, out: Path, pseudonymizer: Pseudonymizer, caplog: pytest.LogCaptureFixture):
    with caplog.at_level(logging.DEBUG):
        report = deidentify_folder(cohort.root, out, pseudonymizer, US_POLICY, source_map=out.parent / "map.json")
    return report


def test_no_planted_identifier_survives(cohort: Cohort, pseudonymizer: Pseudonymizer, tmp_path: Path,
                                        caplog: pytest.LogCaptureFixture) -> None:
    out = tmp_path / "deid"
    report = _run_all(cohort, out, pseudonymizer, caplog)
    assert report.counts == {"written": 4}
    files = sorted(path for path in out.rglob("*") if path.is_file())
    assert len(files) == 5  # four images and the summary
    planted = PATIENT_A.planted() + PATIENT_B.planted()
    for path in files:
        raw = path.read_bytes()
        leaked = [value for value in planted for form in _raw_variants(value) if form in raw]
        assert leaked == [], (path.name, leaked)
        assert all(value.lower() not in str(path.relative_to(out)).lower() for value in planted)
    assert all(OUTPUT_NAME.fullmatch(path.relative_to(out).as_posix()) for path in files if path.suffix == ".dcm")
    assert caplog.records and all(value.lower() not in caplog.text.lower() for value in planted)
    scanner = PhiScanner.from_files(cohort.sources())
    assert scanner.scan_tree(out) == []
    assert scanner.check_text(caplog.text, "log") == []
    scanner.assert_clean(out, caplog.text)


def test_scanner_knows_every_planted_value(cohort: Cohort) -> None:
    """Guards the test above: a scanner blind to the planted values would pass it vacuously."""
    scanner = PhiScanner.from_files(cohort.sources())
    for value in PATIENT_A.planted() + PATIENT_B.planted():
        assert scanner.check_text(f"x {value} x"), value
    assert scanner.check_text(cohort.instances["mg1"].sop_uid)


def test_private_tags_overlays_and_other_ids_are_gone(cohort: Cohort, pseudonymizer: Pseudonymizer,
                                                      tmp_path: Path) -> None:
    result = deidentify_file(cohort.mg1, tmp_path / "out", pseudonymizer, DeidPolicy(source="test"))
    ds = pydicom.dcmread(result.output)
    tags = [element.tag for element in ds.iterall()]
    assert [tag for tag in tags if tag.is_private] == []
    assert [tag for tag in tags if 0x6000 <= tag.group <= 0x60FF] == []
    for keyword in ("OtherPatientIDs", "ReferencedPatientSequence", "RequestAttributesSequence", "InstitutionName",
                    "OperatorsName", "DeviceSerialNumber", "StationName", "PatientAddress", "ImageComments",
                    "StudyDescription"):
        assert keyword not in ds, keyword
    assert ds.PatientBirthDate == "" and ds.AccessionNumber == "" and ds.ReferringPhysicianName == ""
    item = ds.ContributingEquipmentSequence[0]  # kept sequence, cleaned recursively
    assert item.Manufacturer == "FAKEVENDOR" and "InstitutionName" not in item and "OperatorsName" not in item
    assert "SourceApplicationEntityTitle" not in ds.file_meta and "ScheduledProcedureStepID" not in ds
    assert (ds.file_meta.ImplementationVersionName, ds.file_meta.ImplementationClassUID) == \
        ("BREASTGPT_DEID", pydicom.uid.PYDICOM_IMPLEMENTATION_UID)
    assert sorted(element.keyword for element in ds.file_meta) == [
        "FileMetaInformationGroupLength", "FileMetaInformationVersion", "ImplementationClassUID",
        "ImplementationVersionName", "MediaStorageSOPClassUID", "MediaStorageSOPInstanceUID", "TransferSyntaxUID"]
    assert ds.preamble == b"\x00" * 128


def test_pipeline_attributes_and_pixels_are_kept(cohort: Cohort, pseudonymizer: Pseudonymizer,
                                                 tmp_path: Path) -> None:
    result = deidentify_file(cohort.mg1, tmp_path / "out", pseudonymizer, DeidPolicy(source="test"))
    ds, src = pydicom.dcmread(result.output), pydicom.dcmread(cohort.mg1)
    for keyword in ("Modality", "ImageLaterality", "ViewPosition", "PhotometricInterpretation", "PixelSpacing",
                    "ImagerPixelSpacing", "WindowCenter", "WindowWidth", "BodyPartExamined", "Manufacturer",
                    "ManufacturerModelName", "PatientSex", "PatientAge", "BitsStored", "SOPClassUID"):
        assert ds[keyword].value == src[keyword].value, keyword
    np.testing.assert_array_equal(ds.pixel_array, src.pixel_array)
    assert ds.PatientIdentityRemoved == "YES"
    assert [item.CodeValue for item in ds.DeidentificationMethodCodeSequence] == ["113100", "113108", "113107"]
    assert all(item.CodingSchemeDesignator == "DCM" for item in ds.DeidentificationMethodCodeSequence)
    assert ds.PatientID == ds.PatientName == result.patient_key == pseudonymizer.patient_key("test", "MRN4471902")


def test_same_patient_same_key_and_date_shift(cohort: Cohort, pseudonymizer: Pseudonymizer, tmp_path: Path) -> None:
    policy = DeidPolicy(source="test")
    mg, ct = (deidentify_file(path, tmp_path / "out", pseudonymizer, policy) for path in (cohort.mg1, cohort.ct))
    assert mg.patient_key == ct.patient_key and mg.study_key != ct.study_key
    shift = pseudonymizer.date_shift_days("test", PATIENT_A.patient_id)
    for result, source_date in ((mg, "20230915"), (ct, "20240102")):
        ds = pydicom.dcmread(result.output)
        expected = (dt.date.fromisoformat(source_date) + dt.timedelta(days=shift)).strftime("%Y%m%d")
        assert ds.StudyDate == ds.SeriesDate == ds.ContentDate == expected
        assert ds.AcquisitionDateTime == expected + "101530.25+0100"  # time and offset kept
        assert ds.ContributingEquipmentSequence[0].ContributionDateTime == expected + "120000"  # nested DT
        assert ds.StudyTime == "101500"


def test_different_secrets_give_different_keys(cohort: Cohort, tmp_path: Path) -> None:
    policy = DeidPolicy(source="test")
    one = deidentify_file(cohort.mg1, tmp_path / "a", Pseudonymizer(b"A" * 32), policy)
    two = deidentify_file(cohort.mg1, tmp_path / "b", Pseudonymizer(b"B" * 32), policy)
    assert one.patient_key != two.patient_key and one.study_key != two.study_key
    assert pydicom.dcmread(one.output).StudyInstanceUID != pydicom.dcmread(two.output).StudyInstanceUID


def test_uids_stay_consistent_across_a_study(cohort: Cohort, pseudonymizer: Pseudonymizer, tmp_path: Path) -> None:
    policy = DeidPolicy(source="test")
    first, second = (pydicom.dcmread(deidentify_file(path, tmp_path / "out", pseudonymizer, policy).output)
                     for path in (cohort.mg1, cohort.mg2))
    assert first.StudyInstanceUID == second.StudyInstanceUID
    assert first.SeriesInstanceUID == second.SeriesInstanceUID
    assert first.FrameOfReferenceUID == second.FrameOfReferenceUID
    assert first.SOPInstanceUID != second.SOPInstanceUID
    assert first.SOPInstanceUID == first.file_meta.MediaStorageSOPInstanceUID
    assert second.SourceImageSequence[0].ReferencedSOPInstanceUID == first.SOPInstanceUID  # reference kept
    assert second.SourceImageSequence[0].ReferencedSOPClassUID == "1.2.840.10008.5.1.4.1.1.1.2"  # standard UID
    assert first.StudyInstanceUID == pseudonymizer.uid(cohort.instances["mg1"].study_uid)


def test_rerun_is_identical(cohort: Cohort, pseudonymizer: Pseudonymizer, tmp_path: Path) -> None:
    policy = DeidPolicy(source="test")
    one = deidentify_file(cohort.mg1, tmp_path / "a", pseudonymizer, policy)
    two = deidentify_file(cohort.mg1, tmp_path / "b", pseudonymizer, policy)
    assert Path(one.output).read_bytes() == Path(two.output).read_bytes()


def test_dates_emptied_without_shifting(cohort: Cohort, pseudonymizer: Pseudonymizer, tmp_path: Path) -> None:
    result = deidentify_file(cohort.mg1, tmp_path / "out", pseudonymizer, DeidPolicy(source="t", shift_dates=False))
    ds = pydicom.dcmread(result.output)
    assert ds.StudyDate == "" and ds.ContentDate == "" and "SeriesDate" not in ds and "AcquisitionDateTime" not in ds
    assert "ContributionDateTime" not in ds.ContributingEquipmentSequence[0]  # X/D in Table E.1-1
    assert [item.CodeValue for item in ds.DeidentificationMethodCodeSequence] == ["113100", "113108"]


def test_ultrasound_is_quarantined_without_a_policy(cohort: Cohort, pseudonymizer: Pseudonymizer,
                                                    tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = deidentify_file(cohort.us, out, pseudonymizer, DeidPolicy(source="test"))
    assert result.status == "quarantined" and result.output is None
    assert "Burned In Annotation is YES" in result.reason and "keep regions" in result.reason
    assert not out.exists() or not any(out.rglob("*.dcm"))


def test_ultrasound_cleaned_with_its_regions(cohort: Cohort, pseudonymizer: Pseudonymizer, tmp_path: Path) -> None:
    result = deidentify_file(cohort.us, tmp_path / "out", pseudonymizer, US_POLICY)
    assert result.status == "written"
    ds = pydicom.dcmread(result.output)
    pixels = ds.pixel_array
    inside = pixels[6:30, 8:40]  # region (8,6)-(39,29), inclusive maxima
    assert (inside == 200).all()
    outside = pixels.copy()
    outside[6:30, 8:40] = 0
    assert (outside == 0).all() and pixels[2:5, 2:30].max() == 0  # the "text" band is black
    assert ds.BurnedInAnnotation == "NO"
    assert [item.CodeValue for item in ds.DeidentificationMethodCodeSequence][-1] == "113101"


def test_ultrasound_cleaned_with_explicit_rectangles(cohort: Cohort, pseudonymizer: Pseudonymizer,
                                                     tmp_path: Path) -> None:
    policy = DeidPolicy(source="test", burned_in=BurnedInPolicy(keep_regions=(Rect(0, 10, 48, 36),)))
    ds = pydicom.dcmread(deidentify_file(cohort.us, tmp_path / "out", pseudonymizer, policy).output)
    assert (ds.pixel_array[:10] == 0).all() and (ds.pixel_array[10:] == 200).all()
    assert ds.BurnedInAnnotation == "NO"


def test_keep_region_covering_everything_is_not_a_cleaning(cohort: Cohort, pseudonymizer: Pseudonymizer,
                                                           tmp_path: Path) -> None:
    policy = DeidPolicy(source="test", burned_in=BurnedInPolicy(keep_regions=(Rect(0, 0, 100, 100),)))
    result = deidentify_file(cohort.us, tmp_path / "out", pseudonymizer, policy)
    assert result.status == "quarantined" and "nothing would be blacked out" in result.reason


def test_batch_continues_past_bad_files(cohort: Cohort, pseudonymizer: Pseudonymizer, tmp_path: Path) -> None:
    (cohort.root / "notes.txt").write_text("not dicom")
    (cohort.root / "truncated.dcm").write_bytes(cohort.mg1.read_bytes()[:400])  # header cut before Patient ID
    (cohort.root / "empty.dcm").write_bytes(b"")
    seen = []
    out, source_map = tmp_path / "out", tmp_path / "secure" / "map.json"
    report = deidentify_folder(cohort.root, out, pseudonymizer, DeidPolicy(source="test"), source_map=source_map,
                               on_result=seen.append)
    assert report.counts == {"written": 3, "quarantined": 1, "failed": 3}
    assert len(seen) == 7
    failed = {Path(r.source).name: r.error_kind for r in report.results if r.status == "failed"}
    assert failed == {"notes.txt": "unsupported_format", "truncated.dcm": "missing_metadata",
                      "empty.dcm": "corrupt_file"}
    summary = json.loads((out / SUMMARY_NAME).read_text())
    assert summary["counts"] == report.counts and "source" not in summary["files"][0]
    assert str(cohort.root) not in (out / SUMMARY_NAME).read_text()
    mapping = json.loads(source_map.read_text())["files"]
    assert {entry["source"] for entry in mapping.values()} == {r.source for r in report.results}
    PhiScanner.from_files(cohort.sources()).assert_clean(out)


def test_batch_refuses_unsafe_folders(cohort: Cohort, pseudonymizer: Pseudonymizer, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="inside the source folder"):
        deidentify_folder(cohort.root, cohort.root / "out", pseudonymizer)
    with pytest.raises(ValueError, match="must not lie inside the output"):
        deidentify_folder(cohort.root, tmp_path / "out", pseudonymizer, source_map=tmp_path / "out" / "map.json")


def test_missing_patient_id_fails_unless_supplied(cohort: Cohort, pseudonymizer: Pseudonymizer,
                                                  tmp_path: Path) -> None:
    ds = pydicom.dcmread(cohort.mg1)
    ds.PatientID = ""
    bare = tmp_path / "bare.dcm"
    ds.save_as(bare)
    failed = deidentify_file(bare, tmp_path / "out", pseudonymizer)
    assert failed.status == "failed" and failed.error_kind == "missing_metadata"
    supplied = deidentify_file(bare, tmp_path / "out", pseudonymizer, patient_id="MRN4471902")
    assert supplied.status == "written" and supplied.patient_key == pseudonymizer.patient_key("local", "MRN4471902")


def test_policy_from_dict_rejects_unknown_keys() -> None:
    policy = DeidPolicy.from_dict({"source": "vindr", "burned_in": {"keep_regions": [[0, 0, 10, 10]]}})
    assert policy.burned_in.keep_regions == (Rect(0, 0, 10, 10),)
    with pytest.raises(ValueError, match=r"de-identification policy: unknown key\(s\) \['shift_date'\]"):
        DeidPolicy.from_dict({"source": "vindr", "shift_date": True})
    with pytest.raises(ValueError, match="empty or negative"):
        Rect(5, 5, 5, 10)


def test_very_old_ages_are_capped(cohort: Cohort, pseudonymizer: Pseudonymizer, tmp_path: Path) -> None:
    ds = pydicom.dcmread(cohort.mg1)
    ds.PatientAge = "094Y"
    old = tmp_path / "old.dcm"
    ds.save_as(old)
    assert pydicom.dcmread(deidentify_file(old, tmp_path / "out", pseudonymizer).output).PatientAge == "090Y"
