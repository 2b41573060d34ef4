"""Leakage audit (SPEC §4.4): run before any evaluation; a clean corpus produces no findings.

Checks, all across splits (train/val against bench and each other):
  patients_in_several_splits   one (source, patient key) with records in two splits
  identical_media              the same bytes (sha256) used by records of two splits, under any names
  near_duplicate_media         perceptual duplicates (pHash AND dHash within Hamming thresholds): resized or
                               re-encoded copies, also across sources (public breast sets re-export each other)
  repeated_text                the same question+answer pair in two splits, for answers that come from a report,
                               a model or an unknown origin (label-derived answers repeat by design: identical
                               labels give identical templated text; answers under `min_words` words are
                               boilerplate), and repeated report text
  media_integrity              a media file missing or whose bytes do not match the sha256 in its record
  letter_imbalance             a closed-question answer letter correct more often than 1/n + margin, beyond chance
  option_set_leak              a closed template whose option sets tell the answer: outside the training split, the
                               offered option most often correct in training beats the template's most frequent
                               answer by more than a margin, beyond chance (`stats.option_set_leak`)
  unanswerable_from_pixels     records of a template whose answer the corpus's preprocessing (preprocessing.json)
                               removes from the pixels, e.g. breast side after orientation normalisation, lung
                               findings in a soft-tissue CT window (`templates.evidence`); a corpus without
                               preprocessing.json is not checked (said under `info`)
Duplicates between sources inside one split are not leakage; they are listed under `info`.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from breastgpt.corpus.records import Record, read_records_jsonl
from breastgpt.corpus.stats import letter_balance, option_set_leak

LEAKAGE_CHECKS = ("patients_in_several_splits", "identical_media", "near_duplicate_media", "repeated_text",
                  "media_integrity", "letter_imbalance", "option_set_leak", "unanswerable_from_pixels")
_TOKENS = re.compile(r"<image>|<video>|<slide>")
_SPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class AuditConfig:
    phash_threshold: int = 8  # Hamming distance on 64-bit pHash
    dhash_threshold: int = 10  # and on 64-bit dHash: both must hold
    near_duplicates: bool = True
    min_words: int = 8  # shorter non-label answers ("Normal study.") are boilerplate, not leakage
    letter_margin: float = 0.05
    letter_alpha: float = 1e-3  # one-sided binomial p-value below which an excess is not chance
    option_margin: float = 0.10  # offered-option prior over the template's prior, in accuracy
    option_alpha: float = 1e-3  # one-sided sign-test p-value below which that gain is not chance


@dataclass
class AuditReport:
    n_records: int
    n_media: int
    findings: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: {k: [] for k in LEAKAGE_CHECKS})
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def leakage(self) -> bool:
        return any(self.findings.values())

    def to_json(self) -> dict[str, Any]:
        return {"leakage": self.leakage, "n_records": self.n_records, "n_media": self.n_media,
                "counts": {k: len(v) for k, v in self.findings.items()}, "findings": self.findings,
                "info": self.info}

    def to_text(self) -> str:
        lines = [f"audited {self.n_records} records, {self.n_media} media files: "
                 + ("LEAKAGE FOUND" if self.leakage else "clean")]
        for check, rows in self.findings.items():
            if rows:
                lines.append(f"- {check}: {len(rows)}")
                lines.extend(f"    {json.dumps(r, sort_keys=True)}" for r in rows[:10])
                if len(rows) > 10:
                    lines.append(f"    ... {len(rows) - 10} more in the JSON report")
        for key, value in self.info.items():
            lines.append(f"  info {key}: {value if not isinstance(value, list) else len(value)}")
        return "\n".join(lines)


def audit_corpus(corpus_dir: Path, config: AuditConfig | None = None) -> AuditReport:
    """Audit a build folder (records.jsonl + media relative to it)."""
    corpus_dir = Path(corpus_dir)
    path = corpus_dir / "records.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found — point `corpus audit` at a folder written by `corpus build`")
    return audit_records(read_records_jsonl(path), corpus_dir, config)


def audit_records(records: list[Record], media_root: Path, config: AuditConfig | None = None) -> AuditReport:
    config = config or AuditConfig()
    media = _media_table(records)
    report = AuditReport(n_records=len(records), n_media=len(media))
    report.findings["patients_in_several_splits"] = patients_in_several_splits(records)
    actual = _hash_files(media, Path(media_root), report)
    report.findings["identical_media"] = identical_media(media, actual)
    if config.near_duplicates:
        cross, within = near_duplicates(media, actual, Path(media_root), config)
        report.findings["near_duplicate_media"] = cross
        report.info["near_duplicates_within_split_across_sources"] = within
    report.findings["repeated_text"] = repeated_text(records, config)
    balance = letter_balance(records, margin=config.letter_margin, alpha=config.letter_alpha)
    report.findings["letter_imbalance"] = [g for g in balance if g["flagged"]]
    report.info["letter_balance"] = balance
    options = option_set_leak(records, margin=config.option_margin, alpha=config.option_alpha)
    report.findings["option_set_leak"] = [t for t in options if t["flagged"]]
    report.info["option_sets"] = options
    report.findings["unanswerable_from_pixels"] = unanswerable_from_pixels(records, Path(media_root), report)
    return report


def unanswerable_from_pixels(records: Iterable[Record], corpus_dir: Path, report: AuditReport) -> list[dict[str, Any]]:
    """Per template whose conditions the corpus's preprocessing breaks: its record count and the broken
    conditions (the answerability contract, `breastgpt.corpus.templates.evidence`)."""
    from breastgpt.corpus.templates import load_templates
    from breastgpt.corpus.templates.evidence import unmet_conditions
    from breastgpt.preprocessing import read_preprocessing

    settings = read_preprocessing(corpus_dir)
    if settings is None:
        report.info["answerability"] = "not checked: the corpus has no preprocessing.json"
        return []
    known = {t.id: t for t in load_templates().templates}
    counts: dict[str, int] = defaultdict(int)
    for record in records:
        counts[record.template_id] += 1
    report.info["answerability"] = {"checked_templates": sum(1 for t in counts if t in known),
                                    "records_of_unknown_templates": sum(n for t, n in counts.items() if t not in known)}
    return [{"template": t, "records": n, "unmet": unmet_conditions(known[t], settings)}
            for t, n in sorted(counts.items()) if t in known and unmet_conditions(known[t], settings)]


# ---------------------------------------------------------------------------------------------------- checks


def patients_in_several_splits(records: Iterable[Record]) -> list[dict[str, Any]]:
    splits: dict[tuple[str, str], set[str]] = defaultdict(set)
    for r in records:
        if r.patient_key != "unknown":
            splits[(r.source, r.patient_key)].add(r.split)
    return [{"source": s, "patient_key": p, "splits": sorted(v)} for (s, p), v in sorted(splits.items()) if len(v) > 1]


@dataclass
class _Media:
    path: str
    recorded_sha256: str
    kind: str
    splits: set[str] = field(default_factory=set)
    sources: set[str] = field(default_factory=set)


def _media_table(records: Iterable[Record]) -> dict[str, _Media]:
    table: dict[str, _Media] = {}
    for r in records:
        for m in r.media:
            entry = table.setdefault(m.path, _Media(m.path, m.sha256, m.kind))
            entry.splits.add(r.split)
            entry.sources.add(r.source)
    return table


def _hash_files(media: dict[str, _Media], root: Path, report: AuditReport) -> dict[str, str]:
    """sha256 of each media file's bytes; a missing file or a mismatch with its record is a finding."""
    actual = {}
    for path, entry in sorted(media.items()):
        if entry.kind == "slide":  # a slide is referenced by its feature file; its identity is the slide's sha256
            actual[path] = entry.recorded_sha256
            continue
        file = root / path
        if not file.is_file():
            report.findings["media_integrity"].append({"path": path, "problem": "missing"})
            continue
        digest = hashlib.sha256(file.read_bytes()).hexdigest()
        actual[path] = digest
        if entry.recorded_sha256 and digest != entry.recorded_sha256:
            report.findings["media_integrity"].append({"path": path, "problem": "sha256 differs from the record"})
    return actual


def identical_media(media: dict[str, _Media], actual: dict[str, str]) -> list[dict[str, Any]]:
    groups: dict[str, list[_Media]] = defaultdict(list)
    for path, digest in actual.items():
        groups[digest].append(media[path])
    out = []
    for digest, entries in sorted(groups.items()):
        splits = set().union(*(e.splits for e in entries))
        if len(splits) > 1:
            out.append({"sha256": digest, "paths": sorted(e.path for e in entries), "splits": sorted(splits),
                        "sources": sorted(set().union(*(e.sources for e in entries)))})
    return out


def _normalise_text(text: str) -> str:
    return _SPACE.sub(" ", _TOKENS.sub("", text)).strip().lower()


def repeated_text(records: Iterable[Record], config: AuditConfig) -> list[dict[str, Any]]:
    pairs: dict[str, dict[str, set]] = defaultdict(lambda: {"splits": set(), "ids": set(), "kind": set()})
    for r in records:
        prov = r.answer_provenance.kind
        answer = _normalise_text(r.message("assistant"))
        if prov == "label" or len(answer.split()) < config.min_words:
            continue
        question = _normalise_text(r.message("user"))
        keys = [("question+answer", question + "\x00" + answer)]
        if r.task_family == "report":
            keys.append(("report_text", answer))
        for kind, key in keys:
            entry = pairs[hashlib.sha256(f"{kind}\x00{key}".encode()).hexdigest()]
            entry["splits"].add(r.split)
            entry["ids"].add(r.id)
            entry["kind"].add(kind)
    return [{"text_sha256": h, "kind": next(iter(e["kind"])), "splits": sorted(e["splits"]),
             "record_ids": sorted(e["ids"])[:20]} for h, e in sorted(pairs.items()) if len(e["splits"]) > 1]


# ---------------------------------------------------------------------------------------------------- near-dups


def perceptual_hashes(file: Path) -> tuple[int, int] | None:
    """(pHash, dHash) as 64-bit ints for a 2-D image, or the middle slice of an NPZ volume; None otherwise."""
    import imagehash
    from PIL import Image

    suffix = "".join(file.suffixes).lower()
    if suffix.endswith((".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")):
        with Image.open(file) as im:
            grey = im.convert("L")
    elif suffix.endswith(".npz"):
        with np.load(file, allow_pickle=False) as data:
            array = np.asarray(data[data.files[0]])
        if array.ndim < 2:
            return None
        plane = array[array.shape[0] // 2] if array.ndim >= 3 else array
        plane = plane.astype(np.float32)
        span = float(plane.max() - plane.min()) or 1.0
        grey = Image.fromarray(((plane - plane.min()) / span * 255).astype(np.uint8))
    else:
        return None
    return int(str(imagehash.phash(grey)), 16), int(str(imagehash.dhash(grey)), 16)


def near_duplicates(media: dict[str, _Media], actual: dict[str, str], root: Path,
                    config: AuditConfig) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Pairs of distinct files within both thresholds: (across splits, within one split across sources)."""
    paths, ph, dh = [], [], []
    for path in sorted(actual):
        hashes = perceptual_hashes(root / path)
        if hashes is not None:
            paths.append(path)
            ph.append(hashes[0])
            dh.append(hashes[1])
    cross, within = [], []
    for i, j, dp, dd in _close_pairs(np.array(ph, dtype=np.uint64), np.array(dh, dtype=np.uint64), config):
        a, b = media[paths[i]], media[paths[j]]
        if actual[a.path] == actual[b.path]:
            continue  # byte-identical: reported by identical_media
        row = {"a": a.path, "b": b.path, "phash_distance": dp, "dhash_distance": dd,
               "splits": sorted(a.splits | b.splits), "sources": sorted(a.sources | b.sources)}
        if len(a.splits | b.splits) > 1:
            cross.append(row)
        elif a.sources != b.sources:
            within.append(row)
    return cross, within


def _close_pairs(ph: np.ndarray, dh: np.ndarray, config: AuditConfig, block: int = 2048):
    """All i<j with popcount(ph_i ^ ph_j) <= tp and popcount(dh_i ^ dh_j) <= td, blockwise (memory O(block·N))."""
    n = len(ph)
    for start in range(0, n, block):
        stop = min(start + block, n)
        dp = np.bitwise_count(ph[start:stop, None] ^ ph[None, start:])
        dd = np.bitwise_count(dh[start:stop, None] ^ dh[None, start:])
        rows, cols = np.nonzero((dp <= config.phash_threshold) & (dd <= config.dhash_threshold))
        for r, c in zip(rows.tolist(), cols.tolist()):
            i, j = start + r, start + c
            if i < j:
                yield i, j, int(dp[r, c]), int(dd[r, c])


def write_report(report: AuditReport, out_dir: Path) -> tuple[Path, Path]:
    """audit_report.json and audit_report.txt, atomically."""
    from breastgpt.corpus.records import atomic_write_bytes, atomic_write_json

    json_path, text_path = Path(out_dir) / "audit_report.json", Path(out_dir) / "audit_report.txt"
    atomic_write_json(json_path, report.to_json())
    atomic_write_bytes(text_path, (report.to_text() + "\n").encode())
    return json_path, text_path


__all__ = ["AuditConfig", "AuditReport", "audit_corpus", "audit_records", "write_report"]
