"""DICOM de-identification (PS3.15 basic profile), keyed pseudonyms and the PHI scanner.

`Pseudonymizer` turns a secret into stable patient/study keys, UIDs and date shifts; `deidentify_file` and
`deidentify_folder` write de-identified copies; `PhiScanner` collects identifying values from source headers and
gates outputs with `assert_clean` (raising `PhiLeakError`).
"""

from breastgpt.deid.pipeline import DeidBatchReport, DeidPolicy, DeidResult, deidentify_file, deidentify_folder
from breastgpt.deid.pixels import BurnedInPolicy, Rect
from breastgpt.deid.pseudonym import Pseudonymizer
from breastgpt.deid.scanner import Finding, PhiLeakError, PhiScanner

__all__ = [
    "BurnedInPolicy", "DeidBatchReport", "DeidPolicy", "DeidResult", "Finding", "PhiLeakError", "PhiScanner",
    "Pseudonymizer", "Rect", "deidentify_file", "deidentify_folder",
]
