"""The per-attribute action table of the DICOM Basic Application Level Confidentiality Profile, as data.

The table is `basic_profile.tsv` beside this module: every attribute of DICOM PS3.15 Annex E, Table E.1-1
"Application Level Confidentiality Profile Attributes", edition 2026c, with the standard's basic-profile code, the
single action we apply, and a note where that action is not one of the code's choices. A test checks it against an
independently published extraction of the same table (`tests/deid/data/`); docs/deidentification.md explains
every difference. Action codes (PS3.15 E.1.1):

- D  replace with a non-zero-length dummy value consistent with the VR
- Z  replace with a zero-length value
- X  remove
- K  keep (sequences are kept but their items are cleaned recursively)
- C  clean: replace with values of similar meaning that carry no identity (here: dates shifted per patient)
- U  replace with a non-zero-length UID that is consistent within the set of instances

The standard writes compound codes (Z/D, X/Z, X/D, X/Z/D, X/Z/U*) whose choice depends on the attribute's type
in the IOD. We resolve them to the most removing choice, except sequences of references to other images (X/Z/U*),
which are kept with their UIDs replaced (U*) so derived images still point at their sources.

Options we apply on top (PS3.15 E.3, codes from CID 7050):
- Retain Longitudinal Temporal Information with Modified Dates (DCM 113107), when date shifting is on: every date
  attribute that the basic profile would remove, empty or replace is shifted by the patient's offset instead (C).
- Retain Patient Characteristics (DCM 113108), restricted to Patient's Sex and Patient's Age.
Attributes absent from this table are handled by VR in `breastgpt.deid.dataset` (names emptied, non-DICOM UIDs
replaced, free text removed, dates shifted or emptied); the file meta group by `dataset.FILE_META_KEPT`.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from enum import Enum
from importlib import resources

PROFILE_EDITION = "2026c"
TABLE_FILE = "basic_profile.tsv"
NOT_IN_STANDARD = "-"  # the standard column of attributes we act on although Table E.1-1 does not list them


class Action(str, Enum):
    DUMMY = "D"
    ZERO = "Z"
    REMOVE = "X"
    KEEP = "K"
    CLEAN = "C"
    REPLACE_UID = "U"


@dataclass(frozen=True)
class ProfileRow:
    keyword: str
    standard: str  # the code as printed in Table E.1-1 (may be compound), or NOT_IN_STANDARD
    action: Action
    note: str = ""  # why, where the action is not one of the standard's choices

    def standard_choices(self) -> frozenset[str]:
        """The actions the standard's code allows (U* counts as K: items kept, their UIDs replaced)."""
        choices = set(self.standard.replace("U*", "K").split("/"))
        return frozenset(choices - {NOT_IN_STANDARD})


def load_profile_table() -> dict[int, ProfileRow]:
    """Tag (as a 32-bit int) → row, read from the packaged table."""
    text = resources.files("breastgpt.deid").joinpath(TABLE_FILE).read_text(encoding="utf-8")
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    table = {}
    for row in csv.DictReader(lines, delimiter="\t"):
        tag = int(row["tag"].replace(",", ""), 16)
        if tag in table:
            raise ValueError(f"{TABLE_FILE}: tag {row['tag']} listed twice")
        table[tag] = ProfileRow(row["keyword"], row["standard"], Action(row["action"]), row["note"] or "")
    return table


BASIC_PROFILE: dict[int, ProfileRow] = load_profile_table()
"""Tag (as a 32-bit int) → row of PS3.15 Table E.1-1 with the action we apply."""

# Whole repeating groups the profile removes: curves (50xx) and overlays (60xx; overlay data and comments can
# carry burned-in names, and the pipeline does not use overlays).
REMOVED_GROUP_RANGES: tuple[tuple[int, int], ...] = ((0x5000, 0x50FF), (0x6000, 0x60FF))

# Date attributes never shifted even with the modified-dates option: the birth date re-identifies on its own and
# the patient's age (kept) carries what the analyses need.
NEVER_SHIFTED: frozenset[int] = frozenset({0x00100030, 0x00100032, 0x001021D0})

# The DICOM root: UIDs under it name standard things (SOP classes, transfer syntaxes, coding schemes), not people.
DICOM_UID_ROOT = "1.2.840.10008."

# CID 7050 codes written into De-identification Method Code Sequence (0012,0064).
CODE_BASIC_PROFILE = ("113100", "Basic Application Confidentiality Profile")
CODE_CLEAN_PIXEL_DATA = ("113101", "Clean Pixel Data Option")
CODE_MODIFIED_DATES = ("113107", "Retain Longitudinal Temporal Information Modified Dates Option")
CODE_PATIENT_CHARACTERISTICS = ("113108", "Retain Patient Characteristics Option")


def action_for(tag: int) -> ProfileRow | None:
    """The table row for a public tag, or None when the standard's table does not list it."""
    return BASIC_PROFILE.get(int(tag))


def in_removed_group(tag: int) -> bool:
    group = int(tag) >> 16
    return any(low <= group <= high for low, high in REMOVED_GROUP_RANGES)
