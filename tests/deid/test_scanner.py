"""The PHI scanner catches a planted leak in each place, masks what it reports, and avoids trivial false hits."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from breastgpt.deid import DeidPolicy, PhiLeakError, PhiScanner, Pseudonymizer, deidentify_file
from breastgpt.deid.scanner import mask
from tests.deid.conftest import PATIENT_A, Cohort


@pytest.fixture()
def scanner(cohort: Cohort) -> PhiScanner:
    return PhiScanner.from_files(cohort.sources())


@pytest.fixture()
def clean_output(cohort: Cohort, pseudonymizer: Pseudonymizer, tmp_path: Path) -> Path:
    return Path(deidentify_file(cohort.mg1, tmp_path / "out", pseudonymizer, DeidPolicy(source="t")).output)


def _kinds(findings) -> list[str]:
    return sorted({finding.kind for finding in findings})


def test_leak_in_a_file_name(scanner: PhiScanner, clean_output: Path) -> None:
    leaked = clean_output.with_name(f"Vandermeer_{clean_output.name}")
    clean_output.rename(leaked)
    findings = scanner.scan_tree(clean_output.parents[2])
    assert _kinds(findings) == ["patient_name"] and findings[0].where.startswith("file name")
    assert "Vandermeer" not in findings[0].where  # the location itself is redacted


def test_leak_in_a_folder_name(scanner: PhiScanner, tmp_path: Path) -> None:
    (tmp_path / "tree" / "mrn4471902").mkdir(parents=True)
    findings = scanner.scan_tree(tmp_path / "tree")
    assert [(finding.where, finding.kind) for finding in findings] == [("folder name @0", "patient_id")]


def test_leak_in_a_json_record(scanner: PhiScanner, tmp_path: Path) -> None:
    record = {"id": "x1", "messages": [{"role": "user", "content": "Prior exam 12/03/1961 was normal."}]}
    assert _kinds(scanner.check_record(record)) == ["birth_date"]
    path = tmp_path / "records.jsonl"
    lines = [{"id": "a", "patient_key": "PABC"}, {"id": "b", "note": "Thistlewood\u00a0family"}]
    path.write_text("\n".join(json.dumps(line) for line in lines))  # non-ASCII escaped in the file
    findings = scanner.scan_file(path)
    assert any(finding.where.startswith("records.jsonl#1") or "#1" in finding.where for finding in findings)
    assert _kinds(findings) == ["patient_name"]


def test_leak_in_a_log_line(scanner: PhiScanner, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO):
        logging.getLogger("breastgpt.test").info("processing accession ACC20230915X for rows=24")
    # the planted accession number embeds the study date, so both are reported
    assert _kinds(scanner.check_text(caplog.text, "log")) == ["accession_number", "study_date"]


def test_leak_in_a_dicom_sequence_item(scanner: PhiScanner, clean_output: Path) -> None:
    ds = pydicom.dcmread(clean_output)
    item = Dataset()
    item.PatientID = PATIENT_A.patient_id
    ds.ReferencedStudySequence = Sequence([item])
    ds.save_as(clean_output)
    findings = scanner.scan_file(clean_output)
    parsed = [finding for finding in findings if ">(0008,1110)[0]>(0010,0020)" in finding.where]
    assert len(parsed) == 1 and parsed[0].kind == "patient_id"
    assert any(finding.where.endswith(tuple("0123456789")) and " bytes @" in finding.where for finding in findings)


def test_leak_in_a_private_tag(scanner: PhiScanner, clean_output: Path) -> None:
    ds = pydicom.dcmread(clean_output)
    ds.private_block(0x0011, "SOMEVENDOR", create=True).add_new(0x01, "LO", "Pat: Rosalind V.")
    ds.save_as(clean_output)
    findings = scanner.scan_file(clean_output)
    assert any(">(0011,1001)" in finding.where and finding.kind == "patient_name" for finding in findings)


def test_leak_of_an_original_uid(scanner: PhiScanner, cohort: Cohort) -> None:
    uid = cohort.instances["mg2"].sop_uid
    assert _kinds(scanner.check_text(f"ref {uid} end")) == ["uid"]
    assert scanner.check_text(f"ref {uid}7 end") == []  # a longer UID is another UID
    assert scanner.check_text(f"ref {uid}.4 end") == []  # a child UID is not this one


def test_birth_date_formats(scanner: PhiScanner) -> None:
    for text in ("19610312", "1961-03-12", "12/03/1961", "03/12/1961", "12.03.1961", "1961/03/12"):
        assert _kinds(scanner.check_text(f"born {text}.")) == ["birth_date"], text
    assert scanner.check_text("value 119610312") == []  # inside a longer number


def test_normalisation_of_case_blanks_and_separators(scanner: PhiScanner) -> None:
    for text in ("VANDERMEER ROSALIND", "vandermeer^rosalind", "Vandermeer_Rosalind", "Okonkwo \t Bartholomew",
                 "st  hildegard   BREAST centre"):
        assert scanner.check_text(text), text


def test_short_values_ignored_and_word_boundaries(tmp_path: Path) -> None:
    scanner = PhiScanner()
    scanner.add_value("patient_name", "Li^Ann")
    scanner.add_value("patient_id", "42")
    scanner.add_value("patient_id", "123")
    assert len(scanner) == 3  # "li ann", "ann", "123"; "li" and "42" are too short
    assert scanner.check_text("annotation of 42 rows, 1234 px") == []
    assert _kinds(scanner.check_text("seen by Ann today")) == ["patient_name"]
    assert _kinds(scanner.check_text("id=123;")) == ["patient_id"]
    scanner.add_value("patient_id", "AB123")
    assert _kinds(scanner.check_text("XAB123Y")) == ["patient_id"]  # mixed IDs match anywhere


def test_findings_and_errors_never_show_the_value(scanner: PhiScanner, tmp_path: Path) -> None:
    leaked = tmp_path / "out" / "Vandermeer_MRN4471902.json"
    leaked.parent.mkdir()
    leaked.write_text(json.dumps({"name": "Rosalind Vandermeer", "phone": "+44 1632 960123"}))
    with pytest.raises(PhiLeakError) as caught:
        scanner.assert_clean(tmp_path / "out", "ok text")
    message = str(caught.value)
    assert len(caught.value.findings) >= 5
    for value in ("vandermeer", "rosalind", "mrn4471902", "960123"):
        assert value not in message.lower()
    assert mask("mrn4471902") == "m********2" and mask("abc") == "a**"


def test_assert_clean_accepts_each_target_type(scanner: PhiScanner, clean_output: Path) -> None:
    ds = pydicom.dcmread(clean_output)
    scanner.assert_clean(clean_output, ds, "nothing here", b"bytes", {"k": ["v"]}, clean_output.parent)
    ds.StudyComments = "MRN4471902"
    with pytest.raises(PhiLeakError, match="patient_id"):
        scanner.assert_clean(ds)
    with pytest.raises(TypeError, match="cannot scan"):
        scanner.assert_clean(3.5)


def test_redact_masks_values_in_place(scanner: PhiScanner) -> None:
    assert scanner.redact("/data/Vandermeer^Rosalind/MRN4471902.dcm") == "/data/V********r^R******d/M********2.dcm"
    assert scanner.redact("acc ACC20230915X.") == "acc A**********X."  # overlapping matches merged
    assert scanner.redact("no identifiers") == "no identifiers"


def test_pixel_bytes_are_not_scanned_as_text(cohort: Cohort, pseudonymizer: Pseudonymizer, tmp_path: Path) -> None:
    """Image bytes that happen to spell a value are not a header leak; the header around them still is."""
    scanner = PhiScanner()
    scanner.add_value("patient_id", "9911")
    ds = pydicom.dcmread(cohort.mg1)
    ds.remove_private_tags()
    ds.PatientID = "SAFE"
    pixels = ds.pixel_array.copy()
    pixels.view("uint8").reshape(-1)[:6] = list(b"x9911x")
    ds.PixelData = pixels.tobytes()
    ds.PatientComments = "x"
    path = tmp_path / "p.dcm"
    ds.save_as(path)
    assert b"9911" in path.read_bytes()
    assert scanner.scan_file(path) == []
