"""The resumable corpus build: adapters → normalise_media → templates → records, with per-item state.

Layout of a build folder:
  records.jsonl, records.parquet     the corpus (sorted by source, sample id, template order; then the pathway
                                     records linking each patient's studies, `breastgpt.corpus.pathway`)
  media/                             content-addressed normalised media (written by normalise_media)
  manifest.json                      sha256 of every output and media file + config + code/template versions
  preprocessing.json                 how the media were normalised (breastgpt.preprocessing); training copies it
                                     into the checkpoint, and inference applies it to raw files
  bench_manifest.json                the frozen benchmark (splits.write_bench_manifest)
  quarantine.jsonl                   inputs that could not be used: keyed input name, reason, hint (no raw
                                     identifier; see breastgpt.corpus.quarantine)
  build_summary.json                 work done in this run (counts, seconds) — the only non-deterministic file
  .state/items/<key>.json            one file per sample, named by a keyed state key: input fingerprint + its
                                     outputs (atomic)

A sample whose state file exists with the same fingerprint is reused: an unchanged re-run does no work, and a
killed build resumes where it stopped. The final files are assembled from the state files in sorted order, so
the corpus bytes do not depend on worker scheduling.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping

from breastgpt.artifacts import MANIFEST_NAME, Manifest, artifact_problems, remove_stale_temps
from breastgpt.corpus.build_items import (STATE_DIR, ItemTask, input_keys, process_item, read_item_state,
                                          slide_feature_id, state_reference)
from breastgpt.corpus.completeness import MAX_LOST_FRACTION, incomplete_sources, outcome_table, source_outcomes
from breastgpt.corpus.pathway import pathway_records, study_from_item
from breastgpt.corpus.quarantine import input_reference, quarantine_row
from breastgpt.corpus.records import Record, atomic_write_json, write_jsonl, write_records_parquet
from breastgpt.corpus.splits import SPLIT_NAMES, SplitConfig, assign_splits, write_bench_manifest
from breastgpt.corpus.templates import load_templates
from breastgpt.preprocessing import PREPROCESSING_FILE, Preprocessing, write_preprocessing

log = logging.getLogger(__name__)
DEFAULT_SECRET_ENV = "BREASTGPT_DEID_SECRET"
EXECUTORS = ("local", "dask")
OUTPUT_FILES = ("records.jsonl", "records.parquet", "bench_manifest.json", "quarantine.jsonl", PREPROCESSING_FILE)


class BuildError(RuntimeError):
    """The build cannot proceed (bad sources spec, missing secret, PHI found in outputs)."""


class IncompleteBuildError(BuildError):
    """The corpus was written, but a source gave no record or lost too many cases (`completeness`); the build
    is not accepted without `allow_partial`. Carries the summary with its per-source table."""

    def __init__(self, summary: "BuildSummary") -> None:
        self.summary = summary
        super().__init__(f"source(s) {', '.join(summary.incomplete)} incomplete; the corpus was written but not "
                         "accepted — fix the inputs (see the table and quarantine.jsonl) or pass --allow-partial\n"
                         + outcome_table(summary.sources))


@dataclass(frozen=True)
class SourceSpec:
    name: str
    root: Path


@dataclass(frozen=True)
class BuildConfig:
    out: Path
    sources: tuple[SourceSpec, ...]
    workers: int = 1
    executor: str = "local"  # local: ProcessPoolExecutor (or in-process at 1 worker); dask: distributed
    dask_address: str | None = None  # scheduler address; None starts a LocalCluster
    dask_processes: bool = True
    seed: int = 0  # salts the split hash and the optional per-sample template subsampling
    secret_env: str = DEFAULT_SECRET_ENV
    split: SplitConfig | None = None  # None: default proportions salted with the seed
    templates_per_sample: int | None = None  # None: every applicable template
    progress: bool = False
    retry_quarantined: bool = False  # redo items quarantined by an earlier run (e.g. after fixing a reader)
    limits: Preprocessing = field(default_factory=Preprocessing)  # how media are normalised (preprocessing.json)
    answer_style: str = "letter"  # closed answers: "letter" ("B. <option>", the published style) or "text"
    media_position: str = "before"  # placeholders "before" the question (published layout) or "after" the text
    allow_partial: bool = False  # accept sources with no record or more than max_lost of their cases lost
    max_lost: float = MAX_LOST_FRACTION

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise BuildError(f"workers must be >= 1, got {self.workers}")
        if self.executor not in EXECUTORS:
            raise BuildError(f"executor {self.executor!r} not in {EXECUTORS}")
        names = [s.name for s in self.sources]
        if len(set(names)) != len(names):
            raise BuildError(f"a source is named twice in {names}")
        if not 0.0 <= self.max_lost <= 1.0:
            raise BuildError(f"max_lost {self.max_lost} is not a fraction in [0, 1]")
        if self.media_position not in ("before", "after"):
            raise BuildError(f"media_position {self.media_position!r} is not 'before' or 'after'")
        unknown = [e for e in (self.split.external if self.split else ()) if e.split(":")[0] not in names]
        if unknown:
            raise BuildError(f"--external {unknown}: not among the sources {names}; name a source (or SOURCE:SITE)")

    def split_config(self) -> SplitConfig:
        return self.split or SplitConfig(salt=f"breaststage-seed{self.seed}")


@dataclass
class BuildSummary:
    discovered: int = 0
    processed: int = 0  # items normalised and rendered in this run
    reused: int = 0  # items whose state was valid and unchanged
    quarantined: int = 0
    records: int = 0
    splits: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    executor: str = "local"
    workers: int = 1
    phi_gate: str = "skipped"
    sources: dict[str, dict[str, Any]] = field(default_factory=dict)  # completeness.SourceOutcome.as_dict per source
    incomplete: list[str] = field(default_factory=list)  # sources with no record or too many cases lost
    accepted: bool = True  # False: incomplete and not allowed (`allow_partial`)

    @property
    def work_done(self) -> int:
        return self.processed


# ---------------------------------------------------------------------------------------------------- sources


def parse_sources(spec: str) -> tuple[SourceSpec, ...]:
    """`name=path,name=path` or a JSON/YAML file holding {name: path} (or {"sources": {name: path}})."""
    candidate = Path(spec)
    if "=" not in spec and candidate.is_file():
        return _sources_from_file(candidate)
    out = []
    for part in filter(None, (p.strip() for p in spec.split(","))):
        name, sep, root = part.partition("=")
        if not sep or not name.strip() or not root.strip():
            raise BuildError(f"sources spec part {part!r} is not name=path; example: cbis_ddsm=/data/CBIS,busi=/data/BUSI")
        out.append(SourceSpec(name.strip(), Path(root.strip()).expanduser()))
    if not out:
        raise BuildError(f"sources spec {spec!r} names no source")
    return tuple(out)


def _sources_from_file(path: Path) -> tuple[SourceSpec, ...]:
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() in (".yaml", ".yml"):
        import yaml

        data = yaml.safe_load(text)
    else:
        data = json.loads(text)
    if isinstance(data, dict) and set(data) == {"sources"}:
        data = data["sources"]
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        raise BuildError(f"{path}: expected a mapping of source name -> dataset folder, got {type(data).__name__}")
    base = path.parent
    return tuple(SourceSpec(k, (base / Path(v).expanduser()).resolve()) for k, v in data.items())


# ---------------------------------------------------------------------------------------------------- pseudonyms


def load_pseudonymizer(secret_env: str) -> Any:
    try:
        from breastgpt.deid.pseudonym import Pseudonymizer
    except ImportError as exc:  # pragma: no cover - the deid package ships with breastgpt
        raise BuildError("breastgpt.deid.pseudonym is missing; the build cannot pseudonymise patients") from exc
    value = os.environ.get(secret_env, "")
    if not value:
        raise BuildError(f"environment variable {secret_env} is empty: set it to a secret of at least 16 bytes "
                         "(e.g. `export BREASTGPT_DEID_SECRET=$(python -c 'import secrets; print(secrets.token_hex(32))')`)"
                         " and keep it: patient keys and splits depend on it")
    return Pseudonymizer(value.encode("utf-8"))


# ---------------------------------------------------------------------------------------------------- discovery


def discover_all(config: BuildConfig, adapters: Mapping[str, Any] | None) -> tuple[list[Any], list[Any]]:
    """All samples of all sources sorted by (source, sample id), plus discovery problems as (error kind,
    SourceProblem) pairs."""
    from breastgpt.corpus.sources.base import SourceProblem, get_adapter

    samples, problems = [], []
    for spec in config.sources:
        adapter = adapters[spec.name] if adapters and spec.name in adapters else get_adapter(spec.name)
        if not spec.root.is_dir():
            raise BuildError(f"source {spec.name}: folder {spec.root} does not exist; check the sources spec")
        seen: set[str] = set()
        for item in adapter.discover(spec.root):
            if isinstance(item, SourceProblem):
                problems.append(("source_problem", item))
            elif item.sample_id in seen:
                where = str(item.media[0]) if item.media else "."
                problems.append(("duplicate_sample_id", SourceProblem(item.source, where, "sample id seen twice")))
            else:
                seen.add(item.sample_id)
                samples.append(item)
    samples.sort(key=lambda s: (s.source, s.sample_id))
    return samples, problems


def problem_rows(config: BuildConfig, problems: list[Any], pseudo: Any) -> list[dict[str, Any]]:
    """Discovery problems as quarantine rows: keyed input names, scrubbed reasons."""
    roots = {spec.name: spec.root for spec in config.sources}
    rows = []
    for error, problem in problems:
        reference = input_reference(roots[problem.source], problem.path)
        rows.append(quarantine_row(problem.source, pseudo.input_key(problem.source, reference), reference, error,
                                   problem.reason, _DISCOVERY_HINTS[error],
                                   known=[problem.path, str(roots[problem.source])]))
    return rows


_DISCOVERY_HINTS = {
    "source_problem": "the row or file does not match the dataset's published layout; fix it or leave it out",
    "duplicate_sample_id": "two inputs give the same sample id; remove the duplicate copy",
}


def _file_stat(path: Path) -> list[Any]:
    try:
        st = path.stat()
    except OSError:
        return [str(path), None, None]
    if path.is_dir():  # a DICOM series folder: its members' stats
        return [str(path), [_file_stat(p) for p in sorted(path.iterdir())], None]
    return [str(path), st.st_size, st.st_mtime_ns]


def fingerprint(sample: Any, patient_key: str, study_key: str, split: str, code: Mapping[str, str]) -> str:
    """Hash of everything an item's output depends on: input file stats, labels, keys, split, code versions."""
    payload = {
        "source": sample.source, "sample_id": sample.sample_id, "patient_key": patient_key, "study_key": study_key,
        "modality": sample.modality, "kind": sample.kind, "labels": sample.labels, "report": sample.report,
        "meta": sample.meta, "split": split, "media": [_file_stat(Path(p)) for p in sample.media],
        "masks": [_file_stat(Path(p)) for p in sample.masks], "code": dict(code),
        "box_masks": [[*_file_stat(Path(m.path)), m.label] for m in sample.box_masks],
        "box_policy": [sample.box_policy, sample.box_required], "missing": sample.missing,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def code_versions(config: BuildConfig, normaliser: Callable[..., Any]) -> dict[str, str]:
    from breastgpt import __version__

    return {"breastgpt": __version__, "templates": load_templates().digest,
            "normaliser": f"{normaliser.__module__}.{getattr(normaliser, '__qualname__', type(normaliser).__name__)}",
            "limits": json.dumps(asdict(config.limits), sort_keys=True), "answer_style": config.answer_style,
            "media_position": config.media_position,
            "templates_per_sample": str(config.templates_per_sample), "seed": str(config.seed)}


def make_tasks(config: BuildConfig, samples: list[Any], pseudo: Any, normaliser: Callable[..., Any]) -> list[ItemTask]:
    roots = {spec.name: spec.root for spec in config.sources}
    keys = [(s.source, pseudo.patient_key(s.source, s.patient_id), pseudo.study_key(s.source, s.study_id or s.sample_id))
            for s in samples]
    splits = assign_splits(((src, pk, s.dataset_split, s.meta.get("site_id")) for (src, pk, _), s in zip(keys, samples)),
                           config.split_config())
    code = code_versions(config, normaliser)
    tasks = []
    for (source, pk, sk), sample in zip(keys, samples):
        split = splits[(source, pk)]
        tasks.append(ItemTask(sample=sample, patient_key=pk, study_key=sk, split=split,
                              fingerprint=fingerprint(sample, pk, sk, split, code), out=config.out,
                              normaliser=normaliser, seed=config.seed, limits=config.limits,
                              state_key=pseudo.input_key(source, state_reference(sample.sample_id)),
                              root=roots[source], input_keys={},
                              answer_style=config.answer_style, media_position=config.media_position,
                              templates_per_sample=config.templates_per_sample,
                              feature_key=slide_feature_id(pseudo, source, sample.sample_id)
                              if sample.kind == "slide" else None))
    return tasks


# ---------------------------------------------------------------------------------------------------- executors


def _progress(enabled: bool, total: int, label: str) -> Any:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    progress = Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                        disable=not enabled, transient=False)
    return progress, progress.add_task(label, total=total)


def run_tasks(tasks: list[ItemTask], config: BuildConfig) -> Iterator[tuple[str, str, int]]:
    """Process items on the configured executor, yielding (key, status, n_records) as they finish."""
    if not tasks:
        return
    if config.executor == "dask":
        yield from _run_dask(tasks, config)
    elif config.workers == 1:
        for task in tasks:
            yield process_item(task)
    else:
        with ProcessPoolExecutor(max_workers=config.workers) as pool:
            futures = [pool.submit(process_item, t) for t in tasks]
            for fut in as_completed(futures):
                yield fut.result()


def _run_dask(tasks: list[ItemTask], config: BuildConfig) -> Iterator[tuple[str, str, int]]:
    from distributed import Client, LocalCluster, as_completed as dask_completed

    cluster = None
    if config.dask_address:
        client = Client(config.dask_address)
    else:
        cluster = LocalCluster(n_workers=config.workers, threads_per_worker=1, processes=config.dask_processes,
                               dashboard_address=None)
        client = Client(cluster)
    try:
        futures = client.map(process_item, tasks, pure=False)
        for fut in dask_completed(futures):
            yield fut.result()
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


# ---------------------------------------------------------------------------------------------------- build


def build_corpus(config: BuildConfig, *, adapters: Mapping[str, Any] | None = None,
                 normaliser: Callable[..., Any] | None = None) -> BuildSummary:
    """Discover, process pending items, and finalise. `adapters`/`normaliser` override the registry (tests)."""
    from breastgpt.corpus.build_items import default_normaliser, state_is_current

    start = time.perf_counter()
    normaliser = normaliser or default_normaliser()
    pseudo = load_pseudonymizer(config.secret_env)
    config.out.mkdir(parents=True, exist_ok=True)
    samples, problems = discover_all(config, adapters)
    tasks = make_tasks(config, samples, pseudo, normaliser)
    summary = BuildSummary(discovered=len(samples), executor=config.executor, workers=config.workers)
    pending = [t for t in tasks if not state_is_current(read_item_state(config.out, t.state_key, records=False), t,
                                                        retry_quarantined=config.retry_quarantined)]
    summary.reused = len(tasks) - len(pending)
    for task in pending:  # quarantine keys are needed only by the items that run
        task.input_keys = input_keys(pseudo, task.sample, task.root)
    progress, bar = _progress(config.progress, len(pending), "corpus items")
    with progress:
        for _key, _status, _n in run_tasks(pending, config):
            summary.processed += 1
            progress.advance(bar)
    rows = problem_rows(config, problems, pseudo)
    key = finalise_key(config, tasks, rows)
    if summary.processed or not restore_finalised(config.out, key, summary):
        manifest = finalise(config, tasks, rows, samples, summary)
        record_finalised(config.out, key, summary, [MANIFEST_NAME, *manifest["files"]])
    summary.accepted = config.allow_partial or not summary.incomplete
    summary.seconds = round(time.perf_counter() - start, 3)
    atomic_write_json(config.out / "build_summary.json", asdict(summary) | {
        "work_done": summary.work_done, "machine": f"{platform.platform()} ({os.cpu_count()} CPUs)"})
    if not summary.accepted:
        raise IncompleteBuildError(summary)
    return summary


def finalise(config: BuildConfig, tasks: list[ItemTask], problems: list[dict[str, Any]], samples: list[Any],
             summary: BuildSummary) -> dict[str, Any]:
    """Assemble the corpus from item states in sorted order, gate it for PHI, write outputs and the manifest
    (returned)."""
    records, rows, quarantine, referenced, studies = [], [], list(problems), set(), []
    missing: dict[str, Counter[str]] = {spec.name: Counter() for spec in config.sources}
    for task in tasks:
        state = read_item_state(config.out, task.state_key)
        if state is None or state["fingerprint"] != task.fingerprint:
            raise BuildError(f"item {task.state_key} has no current state after processing; re-run the build")
        # as the item found them (an empty ROI mask is only seen when the worker decodes it)
        missing[task.sample.source].update(state.get("missing", task.sample.missing))
        if state["status"] == "quarantined":
            quarantine.append(state["problem"])
            continue
        referenced.update(state["media"]["paths"], state["media"].get("mask_paths", []))
        rows.extend(state["records"])
        records.extend(Record.from_dict(r) for r in state["records"])
        studies.append(study_from_item(task.sample, task.patient_key, task.study_key, task.split, state))
    pathway = pathway_records(studies, config.answer_style, config.media_position)
    records.extend(pathway)
    rows.extend(r.to_dict() for r in pathway)  # the states hold their records' `to_dict` rows
    summary.phi_gate = phi_gate(records, quarantine, samples)
    quarantine = redact_quarantine(quarantine, samples)
    summary.quarantined = len(quarantine)
    summary.records = len(records)
    outcomes = source_outcomes([spec.name for spec in config.sources], samples, quarantine, records, missing)
    summary.sources = {name: outcome.as_dict(config.max_lost) for name, outcome in outcomes.items()}
    summary.incomplete = incomplete_sources(outcomes, config.max_lost)
    summary.splits = {s: sum(1 for r in records if r.split == s) for s in SPLIT_NAMES}
    write_jsonl(config.out / "records.jsonl", rows)
    write_records_parquet(config.out / "records.parquet", rows)
    write_bench_manifest(records, config.out / "bench_manifest.json")
    write_preprocessing(config.out, config.limits)
    write_jsonl(config.out / "quarantine.jsonl", sorted(quarantine, key=lambda q: json.dumps(q, sort_keys=True)))
    prune_media(config.out, referenced)
    return write_manifest(config, referenced)


# An unchanged re-run (no item processed, same items, problems and settings, every output file as this build left
# it) skips `finalise`: assembling, PHI-gating and hashing the whole corpus again was most of its time.
FINALISED = "finalised.json"
_FINALISED_FIELDS = ("quarantined", "records", "splits", "phi_gate", "sources", "incomplete")


def finalise_key(config: BuildConfig, tasks: list[ItemTask], problems: list[dict[str, Any]]) -> str:
    """Hash of everything `finalise` reads apart from the item states (which the fingerprints stand for)."""
    from breastgpt import __version__

    payload = {"items": [[t.state_key, t.fingerprint] for t in tasks], "problems": problems,
               "sources": [s.name for s in config.sources], "max_lost": config.max_lost, "seed": config.seed,
               "split": asdict(config.split_config()), "answer_style": config.answer_style,
               "media_position": config.media_position, "limits": asdict(config.limits), "breastgpt": __version__}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def _output_stats(out: Path, names: Iterable[str]) -> dict[str, list[int]] | None:
    stats = {}
    for name in names:
        try:
            st = (out / name).stat()
        except OSError:
            return None
        stats[name] = [st.st_size, st.st_mtime_ns]
    return stats


def record_finalised(out: Path, key: str, summary: BuildSummary, outputs: list[str]) -> None:
    """What `restore_finalised` checks: the key, the summary fields and the size and mtime of every output."""
    atomic_write_json(out / STATE_DIR / FINALISED, {
        "key": key, "summary": {f: getattr(summary, f) for f in _FINALISED_FIELDS}, "files": _output_stats(out, outputs)},
        indent=None)


def restore_finalised(out: Path, key: str, summary: BuildSummary) -> bool:
    """Fill `summary` from the last finalise when its key matches and its outputs are untouched."""
    try:
        done = json.loads((out / STATE_DIR / FINALISED).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return False
    if done.get("key") != key or not done.get("files") or _output_stats(out, done["files"]) != done["files"]:
        return False
    for name in _FINALISED_FIELDS:
        setattr(summary, name, done["summary"][name])
    return True


def prune_media(out: Path, referenced: Iterable[str]) -> int:
    """Delete media no record refers to (removed samples, quarantined items, temp files of killed writers)."""
    keep = {str(Path(p)) for p in referenced}
    removed = 0
    media_root = out / "media"
    if media_root.is_dir():
        for path in sorted(media_root.rglob("*")):
            if path.is_file() and str(path.relative_to(out)) not in keep:
                path.unlink()
                removed += 1
    remove_stale_temps(out)
    return removed




def write_manifest(config: BuildConfig, media: Iterable[str]) -> dict[str, Any]:
    """sha256 of every corpus file; deterministic (no times, no absolute paths) so equal builds compare equal."""
    from breastgpt import __version__

    manifest = Manifest.of_files(config.out, [*OUTPUT_FILES, *sorted(set(media))], stamp=False)
    split = config.split_config()
    manifest.meta = {
        "format": "breaststage-corpus", "version": 1, "breastgpt": __version__,
        "templates_sha256": load_templates().digest,
        "config": {"sources": [s.name for s in config.sources], "seed": config.seed, "split": asdict(split),
                   "templates_per_sample": config.templates_per_sample},
        "corpus_sha256": hashlib.sha256(json.dumps(manifest.files, sort_keys=True).encode()).hexdigest(),
    }
    manifest.write(config.out / MANIFEST_NAME)
    return manifest.to_dict()


def verify_build(out: Path) -> list[str]:
    """Problems with a finished build folder ([] when every file matches the manifest): 'done' means verified."""
    path = Path(out) / MANIFEST_NAME
    if not path.is_file():
        return [f"{path}: missing — the build did not finish; run `corpus build` again to resume"]
    return artifact_problems(out)


# ---------------------------------------------------------------------------------------------------- PHI gate


def _corpus_scanner(samples: list[Any]) -> Any:
    from breastgpt.corpus.build_items import add_patient_id, phi_scanner_class

    scanner_cls = phi_scanner_class()
    if scanner_cls is None:
        return None
    scanner = scanner_cls()
    for s in samples:
        add_patient_id(scanner, s.patient_id)
    return scanner


def phi_gate(records: list[Record], quarantine: list[dict[str, Any]], samples: list[Any]) -> str:
    """Every raw patient id of the whole build against every record's free text, before anything is written.

    Items were already checked against their own DICOM headers in the workers; this adds cross-sample leaks.
    """
    from breastgpt.corpus.build_items import record_texts, scan_texts

    scanner = _corpus_scanner(samples)
    if scanner is None:
        log.warning("breastgpt.deid.scanner is missing: the corpus PHI gate was skipped")
        return "skipped (breastgpt.deid.scanner missing)"
    findings = scan_texts(scanner, [pair for rec in records for pair in record_texts(rec)])
    if findings:
        raise BuildError(f"PHI gate: {len(findings)} finding(s) in records, nothing was finalised: "
                         + "; ".join(findings[:10]))
    return "passed"


def redact_quarantine(rows: list[dict[str, Any]], samples: list[Any]) -> list[dict[str, Any]]:
    """Mask raw identifiers in quarantine rows (paths of some datasets contain patient ids)."""
    scanner = _corpus_scanner(samples)
    if scanner is None:
        return rows
    return [{k: scanner.redact(v) if isinstance(v, str) else v for k, v in row.items()} for row in rows]
