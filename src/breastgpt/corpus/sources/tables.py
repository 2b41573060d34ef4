"""Reading the metadata tables that datasets ship (CSV with `,`/`;`/tab, XLS/XLSX) and mapping their codes.

Tables are read as strings (never type-guessed) so ids like `00012` keep their zeros; a missing table or column
is reported with the file name and the columns that were found, so a user can tell a wrong root from a changed
release.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import pandas as pd


class TableError(ValueError):
    """A metadata table is missing, unreadable or lacks a required column."""


def read_table(path: Path, *, sep: str | None = None, sheet: str | int | None = 0,
               required: Iterable[str] = ()) -> pd.DataFrame:
    """Read a CSV/TSV/XLS(X) table as strings with stripped headers; check `required` columns exist."""
    if not path.is_file():
        raise TableError(f"{path}: metadata table not found — point the adapter at the dataset's download root")
    try:
        frame = _read_any(path, sep, sheet)
    except Exception as exc:  # pandas/openpyxl/xlrd raise many types for malformed files
        raise TableError(f"{path}: cannot read table ({type(exc).__name__}: {exc}) — re-download it") from exc
    frame.columns = [str(c).strip() for c in frame.columns]
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise TableError(f"{path}: missing column(s) {missing}; found {list(frame.columns)} — is this the "
                         "dataset's own file, unedited?")
    return frame.fillna("")


def _read_any(path: Path, sep: str | None, sheet: str | int | None) -> pd.DataFrame:
    suffix = path.suffix.lower()
    if suffix in (".xlsx", ".xlsm"):
        return pd.read_excel(path, sheet_name=sheet, dtype=str, engine="openpyxl")
    if suffix == ".xls":
        return pd.read_excel(path, sheet_name=sheet, dtype=str, engine="xlrd")
    if sep is None:
        sep = "\t" if suffix in (".tsv", ".txt") else ","
    return pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, encoding="utf-8-sig", comment=None)


def read_sheets(path: Path) -> dict[str, pd.DataFrame]:
    """Every sheet of a workbook, as strings, keyed by sheet name."""
    if not path.is_file():
        raise TableError(f"{path}: workbook not found — point the adapter at the dataset's download root")
    engine = "xlrd" if path.suffix.lower() == ".xls" else "openpyxl"
    try:
        sheets = pd.read_excel(path, sheet_name=None, dtype=str, engine=engine)
    except Exception as exc:
        raise TableError(f"{path}: cannot read workbook ({type(exc).__name__}: {exc}) — re-download it") from exc
    out = {}
    for name, frame in sheets.items():
        frame.columns = [str(c).strip() for c in frame.columns]
        out[str(name).strip()] = frame.fillna("")
    return out


@dataclass
class Tree:
    """One walk of a download folder (symbolic links to folders are not followed): each folder's sub-folder
    names and each file name's paths, both sorted."""

    folders: dict[Path, list[str]]
    files: dict[str, list[Path]]


def walk_tree(root: Path) -> Tree:
    folders: dict[Path, list[str]] = {}
    files: dict[str, list[Path]] = {}
    for folder, subfolders, names in os.walk(root):
        here = Path(folder)
        folders[here] = sorted(subfolders)
        for name in names:
            files.setdefault(name, []).append(here / name)
    for paths in files.values():
        paths.sort()
    return Tree(folders, files)


def find_file(root: Path, *names: str, tree: Tree | None = None) -> Path | None:
    """The first of `names` (exact relative paths, then a recursive search by file name) present under root;
    `tree`: a walk of root already made."""
    for name in names:
        if (root / name).is_file():
            return root / name
    tree = tree or walk_tree(root)
    for name in names:
        hits = [p for p in tree.files.get(Path(name).name, []) if p.is_file()]
        if hits:
            return hits[0]
    return None


def cell(row: Any, *columns: str) -> str:
    """The first non-empty value among `columns` of a row, stripped ('' when none)."""
    for column in columns:
        value = row.get(column, "") if hasattr(row, "get") else ""
        if value is None or (isinstance(value, float) and math.isnan(value)):
            continue
        text = str(value).strip()
        if text and text.lower() not in ("nan", "none", "na", "n/a"):
            return text
    return ""


_BIRADS = re.compile(r"^(?:bi-?rads)?\s*([0-6])\s*([abc])?$", re.IGNORECASE)


def parse_birads(value: str) -> int | None:
    """'4a', 'BI-RADS 4', '3.0', 'BIRADS 5' -> int (4a/4b/4c fold to 4); '' -> None; otherwise ValueError."""
    text = str(value).strip().replace("_", " ")
    if not text:
        return None
    if re.fullmatch(r"[0-6]\.0", text):
        text = text[0]
    match = _BIRADS.match(text)
    if not match:
        raise ValueError(f"BI-RADS value {value!r} is not 0-6 (optionally 4a/4b/4c)")
    return int(match.group(1))


_DENSITY_NUM = {"1": "A", "2": "B", "3": "C", "4": "D"}


def parse_density(value: str) -> str | None:
    """'DENSITY C', 'C', '3', '3.0', 'ACR 3' -> 'C'; '' -> None; otherwise ValueError."""
    text = str(value).strip().upper().replace("DENSITY", "").replace("ACR", "").strip()
    if not text:
        return None
    if re.fullmatch(r"[1-4](\.0)?", text):
        return _DENSITY_NUM[text[0]]
    if text in ("A", "B", "C", "D"):
        return text
    raise ValueError(f"density value {value!r} is not A-D or 1-4")


def parse_bool(value: str) -> bool | None:
    """'1'/'0', 'yes'/'no', 'true'/'false', 'positive'/'negative' -> bool; '' -> None; otherwise ValueError."""
    text = str(value).strip().lower()
    if text in ("", "nan", "unknown", "not available", "[not available]", "[not evaluated]", "indeterminate",
                "equivocal", "[unknown]"):
        return None
    if text in ("1", "1.0", "yes", "y", "true", "positive", "pos", "+"):
        return True
    if text in ("0", "0.0", "no", "n", "false", "negative", "neg", "-"):
        return False
    raise ValueError(f"boolean value {value!r} is not one of 1/0, yes/no, positive/negative")


def lookup(mapping: dict[str, Any], value: str, what: str) -> Any:
    """Map a dataset code (case-insensitive) through `mapping`; an unknown code is a ValueError naming it."""
    key = str(value).strip().upper()
    for code, mapped in mapping.items():
        if code.upper() == key:
            return mapped
    raise ValueError(f"{what} code {value!r} not in {sorted(mapping)}")
