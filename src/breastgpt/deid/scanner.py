"""PHI scanner: collect identifying values from source headers, then look for any of them in outputs.

The scanner checks text, bytes, JSON-like records, parsed DICOM datasets (every element, recursively, private
tags included), file names and whole folders. Findings never carry a found value in clear: they show its type
and a masked form, and locations (file paths) are redacted the same way, so findings are safe to log.

Matching works on normalised text (see `phi_values.normalise`). Boundaries depend on the value's shape, to keep
false positives low without missing leaks: all-digit values (IDs, dates, phones) may not touch other digits,
UIDs may not continue into longer UIDs, purely alphabetic values (names, places) may not touch other letters,
and mixed values (IDs like "AB12345") match anywhere.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from breastgpt.deid.phi_values import PhiValue, expand, normalise, normalise_with_map, values_from_dataset
from breastgpt.io.dicom import read_dataset
from breastgpt.io.errors import MedicalFileError

MIN_VALUE_LENGTH = 3
MAX_TEXT_FILE_BYTES = 512 * 1024**2
_BOUNDARIES = {
    "digits": (r"(?<![0-9])", r"(?![0-9])"),
    "uid": (r"(?<![0-9.])", r"(?!\.?[0-9])"),
    "alpha": (r"(?<![a-z])", r"(?![a-z])"),
    "mixed": ("", ""),
}


@dataclass(frozen=True)
class Finding:
    """One leak: where (redacted), what type of value, and the value masked."""

    where: str
    kind: str
    masked: str

    def __str__(self) -> str:
        return f"{self.where}: {self.kind} {self.masked}"


class PhiLeakError(Exception):
    """Identifying values were found where none may be."""

    def __init__(self, findings: list[Finding]) -> None:
        self.findings = findings
        shown = "; ".join(str(finding) for finding in findings[:10])
        more = f" (+{len(findings) - 10} more)" if len(findings) > 10 else ""
        super().__init__(f"{len(findings)} PHI finding(s): {shown}{more} — the output must not be released; "
                         "fix the step that wrote it and re-run de-identification")


def mask(value: str) -> str:
    """First and last character kept for long values, only the first for short ones; length preserved."""
    if len(value) <= 4:
        return value[:1] + "*" * (len(value) - 1)
    return value[0] + "*" * (len(value) - 2) + value[-1]


class PhiScanner:
    """Holds the identifying values of a set of source files and finds them in outputs."""

    def __init__(self, min_length: int = MIN_VALUE_LENGTH) -> None:
        self.min_length = min_length
        self._kinds: dict[str, str] = {}  # normalised value → value type
        self._patterns: list[re.Pattern[str]] | None = None

    @classmethod
    def from_files(cls, paths: Iterable[str | Path]) -> PhiScanner:
        scanner = cls()
        for path in paths:
            scanner.add_file(path)
        return scanner

    def __len__(self) -> int:
        return len(self._kinds)

    def add_value(self, kind: str, value: str) -> None:
        """Add one identifying value (e.g. a patient id from a dataset's CSV) and its alternative forms."""
        for phi in expand(kind, str(value)):
            self._add(phi)

    def add_dataset(self, dataset: Dataset) -> None:
        for phi in values_from_dataset(dataset):
            self._add(phi)

    def add_file(self, path: str | Path) -> None:
        """Collect from a source DICOM header (raises the `breastgpt.io.errors` types for unreadable files)."""
        self.add_dataset(read_dataset(path, header_only=True))

    def _add(self, phi: PhiValue) -> None:
        text = phi.text if phi.kind == "uid" else normalise(phi.text)
        if len(text) >= self.min_length and text not in self._kinds:
            self._kinds[text] = phi.kind
            self._patterns = None

    # -- checking -----------------------------------------------------------------------------------------

    def check_text(self, text: str, where: str = "text") -> list[Finding]:
        normalised, origin = normalise_with_map(text)
        findings = []
        for start, end in self._spans(normalised):
            value = normalised[start:end]
            findings.append(Finding(f"{where} @{origin[start]}", self._kinds[value], mask(value)))
        return findings

    def check_bytes(self, data: bytes, where: str = "bytes") -> list[Finding]:
        return self.check_text(data.decode("latin-1"), where)

    def check_record(self, record: object, where: str = "record") -> list[Finding]:
        """Every key and string value of a JSON-like structure, with its path in the structure."""
        findings = []
        for path, text in _walk_record(record, ""):
            findings.extend(self.check_text(text, f"{where}{self.redact(path)}"))
        return findings

    def check_dataset(self, dataset: Dataset, where: str = "dataset") -> list[Finding]:
        """Every element value, recursively into sequences, file meta and private tags included."""
        findings = []
        meta = getattr(dataset, "file_meta", None)
        for prefix, part in (("meta", meta), ("", dataset)):
            if part is not None:
                findings.extend(self._check_items(part, f"{where}{prefix}"))
        return findings

    def _check_items(self, dataset: Dataset, where: str) -> list[Finding]:
        findings = []
        for element in dataset:
            location = f"{where}>{element.tag}"
            if element.VR == "SQ":
                for index, item in enumerate(element.value):
                    findings.extend(self._check_items(item, f"{location}[{index}]"))
            elif element.tag != 0x7FE00010 and element.value not in (None, "", b""):
                findings.extend(self.check_text(_element_text(element.value), location))
        return findings

    def scan_file(self, path: str | Path, root: str | Path | None = None) -> list[Finding]:
        """The file's name (relative to `root`) and its contents: DICOM parsed and raw, JSON walked, bytes."""
        path = Path(path)
        shown = str(path.relative_to(root)) if root is not None else str(path)
        findings = self.check_text(shown, "file name")
        where = self.redact(shown)
        if path.stat().st_size > MAX_TEXT_FILE_BYTES:
            raise ValueError(f"{where}: file is larger than {MAX_TEXT_FILE_BYTES} bytes; scan it in parts")
        data = path.read_bytes()
        dataset = _try_dicom(path)
        if dataset is not None:
            findings.extend(self.check_dataset(dataset, where))
            data = _without_pixel_data(data, dataset)
        elif path.suffix.lower() in (".json", ".jsonl"):
            findings.extend(self._check_json(data, where))
        findings.extend(self.check_bytes(data, f"{where} bytes"))
        return findings

    def scan_tree(self, root: str | Path) -> list[Finding]:
        """Every file and folder name under `root`, and every file's contents."""
        root = Path(root)
        findings = []
        for path in sorted(root.rglob("*")):
            if path.is_dir():
                findings.extend(self.check_text(str(path.relative_to(root)), "folder name"))
            elif path.is_file():
                findings.extend(self.scan_file(path, root))
        return findings

    def assert_clean(self, *targets: object) -> None:
        """Raise `PhiLeakError` if any target leaks: Path (file or folder), str (text), bytes, Dataset, or
        a JSON-like dict/list."""
        findings = []
        for target in targets:
            findings.extend(self.check(target))
        if findings:
            raise PhiLeakError(findings)

    def check(self, target: object) -> list[Finding]:
        if isinstance(target, Path):
            return self.scan_tree(target) + self.check_text(target.name, "folder name") if target.is_dir() \
                else self.scan_file(target)
        if isinstance(target, str):
            return self.check_text(target)
        if isinstance(target, bytes | bytearray):
            return self.check_bytes(bytes(target))
        if isinstance(target, Dataset):
            return self.check_dataset(target)
        if isinstance(target, Mapping | list | tuple):
            return self.check_record(target)
        raise TypeError(f"cannot scan a {type(target).__name__}; pass a Path, str, bytes, Dataset, dict or list")

    def redact(self, text: str) -> str:
        """`text` with every identifying value replaced by its masked form (for logs and messages)."""
        normalised, origin = normalise_with_map(text)
        pieces, last = [], 0
        for start, end in _merge(self._spans(normalised)):
            begin, finish = origin[start], origin[end - 1] + 1
            pieces += [text[last:begin], mask(text[begin:finish])]
            last = finish
        return "".join(pieces) + text[last:]

    def _spans(self, normalised: str) -> list[tuple[int, int]]:
        spans = []
        for pattern in self._compiled():
            spans.extend(match.span() for match in pattern.finditer(normalised))
        return sorted(spans)

    def _compiled(self) -> list[re.Pattern[str]]:
        if self._patterns is None:
            groups: dict[str, list[str]] = {shape: [] for shape in _BOUNDARIES}
            for value, kind in self._kinds.items():
                groups[_shape(value, kind)].append(value)
            self._patterns = [re.compile(before + _trie_pattern(values) + after)
                              for shape, (before, after) in _BOUNDARIES.items() if (values := groups[shape])]
        return self._patterns

    def _check_json(self, data: bytes, where: str) -> list[Finding]:
        """Parse JSON / JSON Lines so that escaped characters (\\u00e9) are compared decoded."""
        findings = []
        try:
            text = data.decode("utf-8")
            documents = [json.loads(line) for line in text.splitlines() if line.strip()] \
                if where.endswith(".jsonl") else [json.loads(text)]
        except (UnicodeDecodeError, json.JSONDecodeError):
            return findings  # the raw-bytes check still runs
        for index, document in enumerate(documents):
            findings.extend(self.check_record(document, f"{where}#{index}"))
        return findings


def _merge(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Overlapping matches (a date inside an accession number) become one span."""
    merged: list[tuple[int, int]] = []
    for start, end in spans:
        if merged and start < merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


def _shape(value: str, kind: str) -> str:
    if kind == "uid" or re.fullmatch(r"[0-9]+(\.[0-9]+)+", value) and kind not in ("birth_date", "study_date"):
        return "uid"
    if re.fullmatch(r"[0-9 ./-]+", value):
        return "digits"
    if not re.search(r"[0-9]", value):
        return "alpha"
    return "mixed"


def _trie_pattern(values: list[str]) -> str:
    """One regex alternation shaped as a prefix tree: fast for thousands of values, longest match first."""
    trie: dict = {}
    for value in values:
        node = trie
        for char in value:
            node = node.setdefault(char, {})
        node[""] = {}
    return _trie_node(trie)


def _trie_node(node: dict) -> str:
    ends = "" in node
    branches = [re.escape(char) + _trie_node(child) for char, child in sorted(node.items()) if char]
    if not branches:
        return ""
    body = branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"
    return f"(?:{body})?" if ends else body


def _walk_record(record: object, path: str) -> Iterable[tuple[str, str]]:
    if isinstance(record, Mapping):
        for key, value in record.items():
            yield path, str(key)
            yield from _walk_record(value, f"{path}.{key}")
    elif isinstance(record, list | tuple):
        for index, value in enumerate(record):
            yield from _walk_record(value, f"{path}[{index}]")
    elif record is not None:
        yield path, str(record)


def _element_text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("latin-1")
    if isinstance(value, MultiValue | list | tuple):
        return "\\".join(str(part) for part in value)
    return str(value)


def _try_dicom(path: Path) -> Dataset | None:
    try:
        return read_dataset(path)
    except MedicalFileError:
        return None


def _without_pixel_data(data: bytes, dataset: Dataset) -> bytes:
    """The file bytes with the Pixel Data value cut out: image bytes give chance matches, never headers."""
    if "PixelData" not in dataset:
        return data
    length = len(dataset.PixelData)
    start = data.find(b"\xe0\x7f\x10\x00")
    while start != -1:
        for header, size_at in ((12, 8), (8, 4)):  # explicit VR (OB/OW + 2 reserved), implicit VR
            size = int.from_bytes(data[start + size_at:start + size_at + 4], "little")
            if size == length or (size == 0xFFFFFFFF and header == 12):
                end = start + header + (length if size == length else _encapsulated_length(data, start + 12))
                return data[:start] + b"\x00" + data[end:]
        start = data.find(b"\xe0\x7f\x10\x00", start + 1)
    return data


def _encapsulated_length(data: bytes, offset: int) -> int:
    """Bytes from `offset` to the end of the sequence delimiter of encapsulated pixel data (items walked)."""
    position = offset
    while position + 8 <= len(data):
        tag = data[position:position + 4]
        if tag == b"\xfe\xff\xdd\xe0":
            return position + 8 - offset
        if tag != b"\xfe\xff\x00\xe0":
            break
        position += 8 + int.from_bytes(data[position + 4:position + 8], "little")
    return len(data) - offset
