"""Quarantine rows that name no one: a keyed name for the failed input, its source, the reason and a hint.

A failed input is named by its *reference*: its path relative to the source folder (a file or a folder), or
`<table file>:<line>` for a row of one of the dataset's tables. Quarantine rows carry
`Pseudonymizer.input_key(source, reference)` (`Q` + 16 base32 characters, an HMAC under the build secret) in
place of the reference, so they can be shared without revealing case names, patient ids or UIDs, while the data
holder recomputes the key for their own files: `breastgpt corpus quarantine-key --source NAME --root DIR FILE...`
(or `input_reference` + `Pseudonymizer.input_key`). A table row reference (no folder, no file stem of a case) is
shown as it is, so a table problem can be found without any command.

Reasons and hints are scrubbed before they are written (`scrub`): the failed input's own identifiers (ids, every
file and folder name of its paths, the source folder) and anything shaped like a path, a quoted value, a UID or
an id are replaced by placeholders.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path, PurePath
from typing import Any

# A row of one of the dataset's own tables, e.g. `train.csv:12` or `Radiology-manual-annotations.xlsx:40`.
TABLE_ROW = re.compile(r"[^/\\:]+\.(?:csv|tsv|txt|xlsx|xls|json):\d+")
_QUOTED = re.compile(r"'[^'\n]*'|\"[^\"\n]*\"")
_PATH = re.compile(r"(?:[A-Za-z]:)?[^\s'\"(),;]*[/\\][^\s'\"(),;]*")
_UID = re.compile(r"(?<![\w.])\d+(?:\.\d+){3,}(?![\w.])")
# Tokens shaped like ids: letters with 3+ digits (MRN4471902, mdb001), 2+ separators with a digit (TCGA-A1-A0SB,
# Mass-Test_P_00016_LEFT_CC), or 5+ digits. Technical words of the same shape are left alone.
_ID = re.compile(r"(?<![\w.-])(?:(?=[\w.-]*[A-Za-z])(?=(?:[\w.-]*\d){3})[\w.-]+|(?=(?:[\w.]*[-_]){2})(?=[\w.-]*\d)"
                 r"[\w.-]+|\d{5,})(?![\w.-])")
_TECHNICAL = re.compile(r"(?i)(?:jpeg|jpeg2000|jp2k?|uint|int|float|utf|iso[-_]ir|rgb|ybr_full(?:_422)?)[-_]?\d*")
MIN_KNOWN_LENGTH = 3  # shorter own values (a row number "3", a side "L") are not identifiers worth removing
MIN_KNOWN_DIGITS = 5  # digit-only own values shorter than this are row numbers (see build_items.MIN_DIGIT_ID_LENGTH)


def input_reference(root: str | Path, location: str | Path) -> str:
    """How the data holder names an input: a table row (`train.csv:12`) as it is, a path under `root` relative
    to it (posix; `.` for the folder itself), anything else unchanged."""
    text = str(location).strip()
    if TABLE_ROW.fullmatch(text):
        return text
    path, base = Path(text), Path(root)
    for candidate, folder in ((path, base), (path.absolute(), base.absolute()), (path.resolve(), base.resolve())):
        try:
            return candidate.relative_to(folder).as_posix() or "."
        except ValueError:
            continue
    return text


def quarantine_row(source: str, key: str, reference: str, error: str, problem: str, hint: str = "",
                   known: Iterable[str] = ()) -> dict[str, Any]:
    """One quarantine row; `known` are the failed input's own raw identifiers (removed from the texts)."""
    own = [*known, reference]
    row = {"source": source, "key": key, "error": error, "problem": scrub(problem, own), "hint": scrub(hint, own),
           "find": f"breastgpt corpus quarantine-key --source {source} --root SOURCE_FOLDER FILE_OR_TABLE_ROW"}
    if TABLE_ROW.fullmatch(reference):
        row["table_row"] = reference
    return row


def scrub(text: str, known: Iterable[str] = ()) -> str:
    """`text` with every known value and everything shaped like a path, quoted value, UID or id replaced."""
    for value in sorted(_known_forms(known), key=len, reverse=True):
        text = re.sub(rf"(?<![A-Za-z0-9]){re.escape(value)}(?![A-Za-z0-9])", "<id>", text, flags=re.IGNORECASE)
    text = _QUOTED.sub("'<value>'", text)
    text = _PATH.sub("<path>", text)
    text = _UID.sub("<uid>", text)
    return _ID.sub(lambda match: match.group(0) if _TECHNICAL.fullmatch(match.group(0)) else "<id>", text)


def _known_forms(values: Iterable[str]) -> set[str]:
    """Each value, and for a path or table row each of its parts and file stems."""
    forms = set()
    for value in values:
        text = str(value or "").strip()
        if TABLE_ROW.fullmatch(text):
            continue  # shown as it is: names a dataset table and a line, no case
        parts = [text, *re.split(r"[/\\:]+", text)]
        parts += [PurePath(part).stem for part in parts if part]
        forms.update(part for part in parts if _worth_removing(part))
    return forms


def _worth_removing(text: str) -> bool:
    if text.isdigit():
        return len(text) >= MIN_KNOWN_DIGITS
    return len(text) >= MIN_KNOWN_LENGTH
