"""Patient-level splits and the frozen benchmark manifest (SPEC §4.4).

A patient's split is a pure function of (salt, source, patient key): a salted SHA-256 mapped to [0, 1) and cut at
the cumulative proportions. Nothing about other patients enters it, so adding patients or whole sources never
moves anyone already assigned. A dataset's own test split is honoured by default (`honour_dataset_test`): a
patient with any sample in the dataset's test split goes to the benchmark as a whole (all their samples), and the
other patients of a source that has an official test split are divided between train and val only, so that
source's benchmark is exactly its official test set (results stay comparable with published ones). Sources
without an official test split are hashed into all three splits.

External validation: `external` names whole sources (`cbis_ddsm`) or sites of a source (`rsna_screening:2`, the
sample's `site_id`) whose patients all go to the "external" partition, held out of training and validation; the
bench reports them beside the internal bench split (docs/evaluation.md).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from breastgpt.config import ConfigError, StrictConfig
from breastgpt.corpus.records import Record, atomic_write_json

SPLIT_NAMES: tuple[str, ...] = ("train", "val", "bench", "external")
BENCH_SPLITS: tuple[str, ...] = ("bench", "external")  # the splits a bench is run on
MANIFEST_VERSION = 1


class SplitError(ConfigError):
    """A bad split configuration, a benchmark manifest that does not verify, or a records file without the split a
    run reads (`train.data.MissingSplitError`)."""


@dataclass(frozen=True)
class SplitConfig(StrictConfig):
    """Proportions of patients per split (must sum to 1) and the salt of the hash."""

    error = SplitError
    section = "split config"

    train: float = 0.8
    val: float = 0.05
    bench: float = 0.15
    salt: str = "breaststage-v1"
    honour_dataset_test: bool = True  # dataset's own test split -> bench for the whole patient (see module doc)
    external: tuple[str, ...] = ()  # SOURCE or SOURCE:SITE held out whole as the "external" partition

    def validate(self) -> None:
        props = (self.train, self.val, self.bench)
        if min(props) < 0 or abs(sum(props) - 1.0) > 1e-9:
            raise SplitError(f"split proportions train/val/bench = {props} must be >= 0 and sum to 1")
        if not self.salt:
            raise SplitError("split salt must be a non-empty string")
        if isinstance(self.external, (list, str)):  # built in code from a list or 'a,b:2' text
            object.__setattr__(self, "external", parse_external(self.external))
        bad = [e for e in self.external if not e or e.startswith(":") or e.endswith(":") or e.count(":") > 1]
        if bad:
            raise SplitError(f"external entries {bad} are not SOURCE or SOURCE:SITE (e.g. cbis_ddsm,rsna_screening:2)")

    @classmethod
    def prepare(cls, data: dict[str, Any], where: str) -> dict[str, Any]:
        data = dict(data)
        if isinstance(data.get("external"), str):  # "a,b:2", as on the command line
            data["external"] = parse_external(data["external"])
        return data


def unit_hash(salt: str, source: str, patient_key: str) -> float:
    """A uniform number in [0, 1) from the salted hash of (source, patient key)."""
    digest = hashlib.sha256(f"{salt}\x00{source}\x00{patient_key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def parse_external(spec: str | list[str] | tuple[str, ...] | None) -> tuple[str, ...]:
    """'a,b:2' (or a list) -> ('a', 'b:2'): sources or SOURCE:SITE entries held out as the external partition."""
    if spec is None:
        return ()
    parts = spec.split(",") if isinstance(spec, str) else list(spec)
    return tuple(dict.fromkeys(p.strip() for p in parts if p.strip()))


def is_external(source: str, site: str | None, config: SplitConfig) -> bool:
    return source in config.external or (site is not None and f"{source}:{site}" in config.external)


def split_for_patient(source: str, patient_key: str, config: SplitConfig, site: str | None = None) -> str:
    if is_external(source, site, config):
        return "external"
    u = unit_hash(config.salt, source, patient_key)
    if u < config.train:
        return "train"
    if u < config.train + config.val:
        return "val"
    return "bench"


def assign_splits(patients: Iterable[tuple[Any, ...]], config: SplitConfig) -> dict[tuple[str, str], str]:
    """Map (source, patient_key) -> split for every (source, patient_key, dataset_split[, site]) row given.

    With `honour_dataset_test`, any row in the dataset's test split sends the whole patient to the benchmark, and
    the remaining patients of that source go to train or val (never bench). A patient with any sample from an
    external site goes to the external partition whole (it outranks the bench).
    """
    out: dict[tuple[str, str], str] = {}
    in_test: set[tuple[str, str]] = set()
    external: set[tuple[str, str]] = set()
    for source, key, dataset_split, *site in patients:
        site_id = None if not site or site[0] is None else str(site[0])
        out.setdefault((source, key), split_for_patient(source, key, config))
        if dataset_split == "test":
            in_test.add((source, key))
        if is_external(source, site_id, config):
            external.add((source, key))
    if config.honour_dataset_test:
        official = {source for source, _ in in_test}
        for patient in out:
            if patient in in_test:
                out[patient] = "bench"
            elif patient[0] in official:
                out[patient] = _train_or_val(*patient, config)
    for patient in external:
        out[patient] = "external"
    return out


def _train_or_val(source: str, patient_key: str, config: SplitConfig) -> str:
    """Train/val by the same hash, at the train:val ratio (for sources whose bench is their official test set)."""
    total = config.train + config.val
    if total == 0:
        return "train"
    return "train" if unit_hash(config.salt, source, patient_key) < config.train / total else "val"


# ---------------------------------------------------------------------------------------------------- manifest


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def prompt_hash(rec: Record) -> str:
    """Hash of everything the model is shown (system + user turns, in order)."""
    shown = [m for m in rec.messages if m["role"] != "assistant"]
    return _sha(json.dumps(shown, sort_keys=True, ensure_ascii=False))


def answer_hash(rec: Record) -> str:
    """Hash of the reference answer text and its structured label."""
    answer = [m["content"] for m in rec.messages if m["role"] == "assistant"]
    return _sha(json.dumps({"answer": answer, "label": rec.label}, sort_keys=True, ensure_ascii=False))


def manifest_item(rec: Record) -> dict[str, Any]:
    return {"id": rec.id, "media_sha256": [m.sha256 for m in rec.media], "prompt_sha256": prompt_hash(rec),
            "answer_sha256": answer_hash(rec)}


def build_bench_manifest(records: Iterable[Record], *, split: str = "bench") -> dict[str, Any]:
    """The frozen items of `split`; the bench split's manifest also freezes the external partition."""
    kept = BENCH_SPLITS if split == "bench" else (split,)
    items = sorted((manifest_item(r) | ({"split": r.split} if r.split != split else {}) for r in records
                    if r.split in kept), key=lambda i: i["id"])
    digest = _sha(json.dumps(items, sort_keys=True))
    return {"version": MANIFEST_VERSION, "split": split, "n_items": len(items), "items_sha256": digest,
            "items": items}


def write_bench_manifest(records: Iterable[Record], path: Path, *, split: str = "bench") -> dict[str, Any]:
    manifest = build_bench_manifest(records, split=split)
    atomic_write_json(Path(path), manifest)
    return manifest


@dataclass
class ManifestCheck:
    ok: bool
    problems: list[str] = field(default_factory=list)


def verify_manifest(path: Path, records: Iterable[Record], *, media_root: Path | None = None) -> ManifestCheck:
    """Check that `records` are exactly the frozen benchmark: same ids, prompts, answers and media hashes.

    With `media_root`, the media files themselves are re-hashed too (catches a replaced image whose record
    still carries the old hash).
    """
    path = Path(path)
    try:
        frozen = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise SplitError(f"{path}: cannot read benchmark manifest ({exc}); rebuild it with `corpus build`") from exc
    problems: list[str] = []
    items = frozen.get("items", [])
    if _sha(json.dumps(items, sort_keys=True)) != frozen.get("items_sha256"):
        problems.append(f"{path}: items_sha256 does not match the items (manifest edited?)")
    split = frozen.get("split", "bench")
    kept = BENCH_SPLITS if split == "bench" else (split,)
    by_id = {r.id: r for r in records if r.split in kept}
    frozen_ids = {i["id"] for i in items}
    for missing in sorted(frozen_ids - set(by_id)):
        problems.append(f"item {missing}: in the manifest but not in the records")
    for extra in sorted(set(by_id) - frozen_ids):
        problems.append(f"item {extra}: in the records but not in the manifest")
    for item in items:
        rec = by_id.get(item["id"])
        if rec is not None:
            problems.extend(_item_problems(item, rec, media_root, split))
    return ManifestCheck(not problems, problems)


def _slide_problems(item_id: str, ref: Any, media_root: Path) -> list[str]:
    """A slide reference carries the slide's sha256 (leakage checks compare slides) and names the feature file
    extracted from it, which a fresh corpus may not have yet: when present it must come from that slide."""
    file = media_root / ref.path
    if not file.is_file():
        return []
    from breastgpt.pathology.features import read_attrs

    try:
        made_from = read_attrs(file).get("slide_sha256")
    except OSError as exc:
        return [f"item {item_id}: feature file {ref.path} unreadable ({exc})"]
    if made_from != ref.sha256:
        return [f"item {item_id}: feature file {ref.path} was extracted from another slide (slide_sha256 differs)"]
    return []


def _item_problems(item: dict[str, Any], rec: Record, media_root: Path | None, split: str) -> list[str]:
    problems = []
    if item.get("split", split) != rec.split:
        problems.append(f"item {rec.id}: frozen in split {item.get('split', split)!r}, now {rec.split!r}")
    now = manifest_item(rec)
    for key in ("media_sha256", "prompt_sha256", "answer_sha256"):
        if now[key] != item[key]:
            problems.append(f"item {rec.id}: {key} changed")
    if media_root is not None:
        for ref in rec.media:
            if ref.kind == "slide":
                problems.extend(_slide_problems(rec.id, ref, Path(media_root)))
                continue
            file = Path(media_root) / ref.path
            if not file.is_file():
                problems.append(f"item {rec.id}: media {ref.path} missing under {media_root}")
            elif hashlib.sha256(file.read_bytes()).hexdigest() != ref.sha256:
                problems.append(f"item {rec.id}: media {ref.path} bytes do not match its sha256")
    return problems
