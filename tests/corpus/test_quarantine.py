"""Quarantine rows: references, scrubbing and keys (the canary test over every adapter is
test_quarantine_privacy.py)."""

from __future__ import annotations

from pathlib import Path

from breastgpt.corpus.quarantine import input_reference, quarantine_row, scrub
from breastgpt.deid.pseudonym import Pseudonymizer


def test_references_are_relative_paths_or_table_rows(tmp_path: Path) -> None:
    root = tmp_path / "CBIS"
    assert input_reference(root, root / "Mass-Test_P_00016_LEFT_CC" / "1-1.dcm") == "Mass-Test_P_00016_LEFT_CC/1-1.dcm"
    assert input_reference(root, root) == "."
    assert input_reference(root, "mass_case_description_test_set.csv:12") == "mass_case_description_test_set.csv:12"
    assert input_reference(root, "/elsewhere/x.dcm") == "/elsewhere/x.dcm"


def test_scrub_removes_own_values_and_identifier_shapes_but_keeps_the_reason() -> None:
    text = ("/data/CBIS/Mass-Test_P_00016_LEFT_CC/1.3.6.1.4.1.9590.100.1.2.1234/1-1.dcm: DICOM file is truncated "
            "(expected 2048 bytes, got 300) for patient MRN4471902 in 'Kestrel ward'; case Thistlewood")
    scrubbed = scrub(text, known=["Thistlewood"])
    assert scrubbed == ("<path> DICOM file is truncated (expected 2048 bytes, got 300) for patient <id> in "
                        "'<value>'; case <id>")
    assert scrub("no clinical row for TCGA-A1-A0SB; image 1.2.826.0.1.3680043.2.1 at 20586000") == \
        "no clinical row for <id>; image <uid> at <id>"
    kept = "transfer syntax JPEG2000 in uint16 and utf-8, BI-RADS 4, pydicom 3.0.2"
    assert scrub(kept) == kept


def test_rows_carry_the_key_and_show_table_rows_only() -> None:
    key = Pseudonymizer(b"k" * 32).input_key("rsna_screening", "train.csv:7")
    row = quarantine_row("rsna_screening", key, "train.csv:7", "source_problem", "image file x/10006.dcm not found")
    assert row["key"] == key and key.startswith("Q") and len(key) == 17 and row["table_row"] == "train.csv:7"
    assert row["problem"] == "image file <path> not found"
    file_row = quarantine_row("busi", key, "benign/benign (3).png", "corrupt_file", "benign (3).png: truncated")
    assert "table_row" not in file_row and file_row["problem"] == "<id>: truncated"
    assert Pseudonymizer(b"k" * 32).input_key("busi", "a.png") != Pseudonymizer(b"j" * 32).input_key("busi", "a.png")
