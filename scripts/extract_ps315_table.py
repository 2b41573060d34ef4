"""Write PS3.15 Table E.1-1 (basic profile column) as TSV from a `dicomfields_<edition>.py` of dicom-anonymizer.

The test oracle `tests/deid/data/ps3.15-<edition>-table-e1-1.tsv` was made with this script. The module is read
with `ast` (never imported or executed): its lists of (group, element[, group mask, element mask]) tuples, one
list per action code, and the attribute name written after each tuple.

usage: python scripts/extract_ps315_table.py PATH/dicomfields_2026c.py --edition 2026c --version 2.1.0 \\
       --wheel-sha256 HASH > OUT.tsv
"""

from __future__ import annotations

import argparse
import ast
import re
from pathlib import Path

# dicom-anonymizer's list names → the action code printed in the standard's basic-profile column.
CODES = {"D_TAGS": "D", "Z_TAGS": "Z", "X_TAGS": "X", "U_TAGS": "U", "Z_D_TAGS": "Z/D", "X_Z_TAGS": "X/Z",
         "X_D_TAGS": "X/D", "X_Z_D_TAGS": "X/Z/D", "X_Z_U_STAR_TAGS": "X/Z/U*"}
_NAME = re.compile(r"#\s*(.+?)\s*$")


def rows(source: str) -> list[tuple[str, str, str]]:
    """(tag, code, name) per listed attribute; masked repeating groups are written with x for masked digits."""
    lines = source.splitlines()
    out = []
    for node in ast.parse(source).body:
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.value, ast.List)):
            continue
        code = CODES.get(getattr(node.targets[0], "id", ""))
        if code is None:
            continue
        for item in node.value.elts:
            numbers = ast.literal_eval(item)
            name = _NAME.search(lines[item.end_lineno - 1])
            out.append((_tag_text(numbers), code, name.group(1) if name else ""))
    return sorted(out)


def _tag_text(numbers: tuple[int, ...]) -> str:
    group, element = f"{numbers[0]:04X}", f"{numbers[1]:04X}"
    if len(numbers) == 4:
        group = "".join(d if m != "0" else "x" for d, m in zip(group, f"{numbers[2]:04X}"))
        element = "".join(d if m != "0" else "x" for d, m in zip(element, f"{numbers[3]:04X}"))
    return f"{group},{element}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("module", type=Path)
    parser.add_argument("--edition", required=True)
    parser.add_argument("--version", required=True, help="dicom-anonymizer version the module came from")
    parser.add_argument("--wheel-sha256", required=True, help="sha256 of the wheel the module was unpacked from")
    args = parser.parse_args()
    print(f"# DICOM PS3.15 {args.edition}, Annex E, Table E.1-1, Basic Profile column (tag, code, attribute name).")
    print(f"# Extracted with scripts/extract_ps315_table.py from dicom-anonymizer {args.version} (PyPI; Kitware "
          f"Europe; BSD-3-Clause, see dicom-anonymizer-LICENSE.txt), file {args.module.name}, wheel sha256 "
          f"{args.wheel_sha256}.")
    print("tag\tcode\tname")
    for row in rows(args.module.read_text(encoding="utf-8")):
        print("\t".join(row))


if __name__ == "__main__":
    main()
