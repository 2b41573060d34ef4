"""`breastgpt corpus ...`: templates, build, audit, stats, export, import, verify (thin over the Python API)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import typer

app = typer.Typer(name="corpus", help="Build, audit and inspect the BreastStage instruction corpus.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)


def _echo_json(obj: object) -> None:
    typer.echo(json.dumps(obj, indent=2, sort_keys=True, default=str))


@app.command("templates")
def templates_cmd(as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
    """List the task templates with counts per stage, modality and family."""
    from breastgpt.corpus.templates import load_templates

    ts = load_templates()
    rows = [{"id": t.id, "stage": t.stage, "modality": t.modality, "family": t.family, "fields": list(t.fields),
             "builder": t.builder, "clinical_target": t.clinical_target, "questions": len(t.questions)}
            for t in ts.templates]
    counts = {"total": len(rows), "by_stage": dict(Counter(r["stage"] for r in rows)),
              "by_modality": dict(Counter(r["modality"] for r in rows)),
              "by_family": dict(Counter(r["family"] for r in rows)),
              "by_stage_modality": dict(Counter(f"{r['stage']}/{r['modality']}" for r in rows))}
    if as_json:
        _echo_json({"counts": counts, "templates": rows, "templates_sha256": ts.digest})
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{len(rows)} task templates")
    for col in ("id", "stage", "modality", "family", "fields", "target"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["id"], r["stage"], r["modality"], r["family"], ",".join(r["fields"]),
                      r["clinical_target"] or "")
    console = Console()
    console.print(table)
    for key in ("by_stage", "by_modality", "by_family", "by_stage_modality"):
        console.print(f"{key}: " + ", ".join(f"{k}={v}" for k, v in sorted(counts[key].items())))


@app.command("build")
def build_cmd(
    sources: str = typer.Option(..., "--sources", help="name=path,... or a JSON/YAML file {name: path}."),
    out: Path = typer.Option(..., "--out", help="Output corpus folder (resumable)."),
    workers: int = typer.Option(1, "--workers", min=1),
    executor: str = typer.Option("local", "--executor", help="local | dask"),
    dask_address: str = typer.Option(None, "--dask-address", help="Scheduler address (dask); default: local."),
    seed: int = typer.Option(0, "--seed", help="Salts the patient split and template subsampling."),
    secret_env: str = typer.Option("BREASTGPT_DEID_SECRET", "--secret-env",
                                   help="Environment variable holding the pseudonymisation secret."),
    templates_per_sample: int = typer.Option(None, "--templates-per-sample", min=1),
    retry_quarantined: bool = typer.Option(False, "--retry-quarantined",
                                           help="Redo items an earlier run quarantined."),
    allow_partial: bool = typer.Option(False, "--allow-partial",
                                       help="Accept sources that give no record or lose more than 20 % of their "
                                            "cases (otherwise exit status 3)."),
    ignore_dataset_splits: bool = typer.Option(False, "--ignore-dataset-splits",
                                               help="Split every source by the patient hash alone, ignoring the "
                                                    "datasets' own test splits."),
    external: str = typer.Option(None, "--external",
                                 help="SOURCE[,SOURCE:SITE...]: hold these sources (or sites) out whole as the "
                                      "'external' bench partition."),
    preprocessing: Path = typer.Option(None, "--preprocessing",
                                       help="JSON file of preprocessing settings (docs/corpus.md); default: "
                                            "the documented defaults."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Build (or resume) a corpus: adapters → normalise → templates → records, with per-item state.

    Exit status 0: built and accepted; 2: not built (bad spec, missing secret, PHI); 3: built, but a source gave no
    record or lost more than 20 % of its cases (per-source table of reasons on stderr; --allow-partial accepts)."""
    from dataclasses import asdict

    from breastgpt.corpus.build import (BuildConfig, BuildError, IncompleteBuildError, build_corpus,
                                        parse_sources)
    from breastgpt.corpus.completeness import outcome_table
    from breastgpt.corpus.splits import SplitConfig, SplitError, parse_external
    from breastgpt.preprocessing import Preprocessing, PreprocessingError, read_preprocessing_file

    try:
        split = SplitConfig(salt=f"breaststage-seed{seed}", honour_dataset_test=not ignore_dataset_splits,
                            external=parse_external(external) if external else ())
        settings = read_preprocessing_file(preprocessing) if preprocessing else Preprocessing()
        config = BuildConfig(out=out, sources=parse_sources(sources), workers=workers, executor=executor,
                             dask_address=dask_address, seed=seed, secret_env=secret_env, split=split,
                             templates_per_sample=templates_per_sample, progress=not as_json,
                             retry_quarantined=retry_quarantined, allow_partial=allow_partial,
                             limits=settings)
        summary, status = build_corpus(config), 0
    except IncompleteBuildError as exc:
        summary, status = exc.summary, 3
    except (BuildError, SplitError, KeyError, FileNotFoundError, PreprocessingError) as exc:
        typer.echo(f"corpus build failed: {exc}", err=True)
        raise typer.Exit(2) from exc
    result = asdict(summary) | {"work_done": summary.work_done, "out": str(out)}
    if as_json:
        _echo_json(result)
    else:
        typer.echo(f"{summary.records} records from {summary.discovered} samples into {out}: processed "
                   f"{summary.processed}, reused {summary.reused}, quarantined {summary.quarantined} "
                   f"(splits {summary.splits}; PHI gate {summary.phi_gate}; {summary.seconds:.1f} s)")
        typer.echo(outcome_table(summary.sources))
    if status:
        typer.echo(f"corpus build incomplete: {', '.join(summary.incomplete)} gave no record or lost more than "
                   f"{config.max_lost:.0%} of their cases; the corpus in {out} is written but not accepted. Fix the "
                   "inputs (see quarantine.jsonl and the table), or pass --allow-partial.", err=True)
        if as_json:
            typer.echo(outcome_table(summary.sources), err=True)
        raise typer.Exit(status)


@app.command("quarantine-key")
def quarantine_key_cmd(
    inputs: list[str] = typer.Argument(..., help="Files or folders under ROOT, or table rows as NAME.csv:LINE."),
    source: str = typer.Option(..., "--source", help="The source name given to `corpus build`."),
    root: Path = typer.Option(..., "--root", help="The source folder given to `corpus build`."),
    secret_env: str = typer.Option("BREASTGPT_DEID_SECRET", "--secret-env",
                                   help="Environment variable holding the pseudonymisation secret."),
) -> None:
    """Print the quarantine key of each input, to find a quarantined case among your own files."""
    from breastgpt.corpus.build import BuildError, load_pseudonymizer
    from breastgpt.corpus.quarantine import TABLE_ROW, input_reference

    try:
        pseudo = load_pseudonymizer(secret_env)
    except BuildError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from exc
    for text in inputs:
        location = text if TABLE_ROW.fullmatch(text) else Path(text).absolute()
        typer.echo(f"{pseudo.input_key(source, input_reference(root.absolute(), location))}  {text}")


@app.command("audit")
def audit_cmd(corpus_dir: Path = typer.Argument(..., help="A folder written by `corpus build`."),
              as_json: bool = typer.Option(False, "--json"),
              no_near_duplicates: bool = typer.Option(False, "--no-near-duplicates",
                                                      help="Skip perceptual hashing (faster).")) -> None:
    """Leakage audit; exit status 1 and a report (audit_report.json/.txt) when leakage is found."""
    from breastgpt.corpus.audit import AuditConfig, audit_corpus, write_report

    try:
        report = audit_corpus(corpus_dir, AuditConfig(near_duplicates=not no_near_duplicates))
    except FileNotFoundError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from exc
    write_report(report, corpus_dir)
    if as_json:
        _echo_json(report.to_json())
    else:
        typer.echo(report.to_text())
    if report.leakage:
        raise typer.Exit(1)


@app.command("stats")
def stats_cmd(corpus_dir: Path = typer.Argument(...), as_json: bool = typer.Option(False, "--json")) -> None:
    """Counts per stage/modality/family/source/template, letter balance, provenance; JSON + PNG chart."""
    from breastgpt.corpus.stats import write_stats

    try:
        stats = write_stats(corpus_dir)
    except FileNotFoundError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from exc
    if as_json:
        _echo_json(stats)
        return
    typer.echo(f"{stats['records']} records, {stats['patients']} patients, {stats['media']} media")
    for key in ("by_stage", "by_modality", "by_family", "by_source", "by_split", "provenance_share"):
        typer.echo(f"{key}: " + ", ".join(f"{k}={v}" for k, v in stats[key].items()))
    for g in stats["letter_balance"]:
        typer.echo(f"letters n={g['n_options']}: {g['shares']} (limit {g['limit']}"
                   f"{', FLAGGED' if g['flagged'] else ''})")
    typer.echo(f"wrote {corpus_dir / 'corpus_stats.json'} and {corpus_dir / 'corpus_stats.png'}")


@app.command("export")
def export_cmd(corpus_dir: Path = typer.Argument(...), out: Path = typer.Option(..., "--out"),
               fmt: str = typer.Option("swift", "--format", help="swift (JSONL) | llava (JSON)"),
               split: str = typer.Option(None, "--split", help="Only this split."),
               absolute: bool = typer.Option(False, "--absolute",
                                             help="Absolute media paths (default: relative to the corpus folder).")) -> None:
    """Export records to ms-swift JSONL (volumes as PNG frame lists) or LLaVA JSON."""
    from breastgpt.corpus.records import export_llava_json, read_records_jsonl

    if fmt not in ("swift", "llava"):
        typer.echo(f"unknown format {fmt!r}; use swift or llava", err=True)
        raise typer.Exit(2)
    records = [r for r in read_records_jsonl(corpus_dir / "records.jsonl") if split is None or r.split == split]
    if fmt == "llava":
        n = export_llava_json(records, out, str(corpus_dir.resolve()) if absolute else None)
        typer.echo(f"exported {n} records to {out}")
        raise typer.Exit(0 if n else 1)
    summary = _export_swift(records, corpus_dir, out, absolute)
    typer.echo(f"exported {summary.written} of {len(records)} records to {out} "
               f"({summary.frames_written} volume frames written under {corpus_dir / 'swift_frames'})")
    for reason, count in sorted({**summary.left_out}.items()):
        typer.echo(f"left out {count} {reason}")
    for reason, count in sorted({**summary.changed}.items()):
        typer.echo(f"{count} {reason}")
    if not absolute:
        typer.echo(f"media paths are relative to {corpus_dir}: run ms-swift there or set ROOT_IMAGE_DIR={corpus_dir.resolve()}")
    if not summary.written:
        raise typer.Exit(1)


def _export_swift(records: list, corpus_dir: Path, out: Path, absolute: bool):
    from rich.progress import Progress

    from breastgpt.corpus.swift_export import export_swift

    with Progress(transient=True) as progress:
        task = progress.add_task("exporting", total=len(records))
        return export_swift(records, corpus_dir, out, absolute=absolute,
                            progress=lambda done: progress.update(task, completed=done))


@app.command("import")
def import_cmd(published: Path = typer.Argument(..., help="Published BreastStage(-Bench) JSON/JSONL file."),
               out: Path = typer.Option(..., "--out", help="records.jsonl to write."),
               split: str = typer.Option("train", "--split", help="train | val | bench"),
               media_root: Path = typer.Option(None, "--media-root", help="Folder the image paths are relative to.")) -> None:
    """Import the published corpus files (ms-swift layout); what cannot be decided is marked unknown."""
    from breastgpt.bench.items import BenchDataError
    from breastgpt.bench.published import import_published
    from breastgpt.corpus.records import RecordError, write_records_jsonl

    try:
        records = import_published(published, split=split, media_root=media_root).records
    except (BenchDataError, RecordError, OSError) as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from exc
    write_records_jsonl(out, records)
    typer.echo(f"imported {len(records)} records to {out}: "
               + ", ".join(f"{k}={v}" for k, v in Counter(r.task_family for r in records).items()))


@app.command("verify")
def verify_cmd(corpus_dir: Path = typer.Argument(...)) -> None:
    """Check every corpus file against manifest.json and the bench items against bench_manifest.json."""
    from breastgpt.corpus.build import verify_build
    from breastgpt.corpus.records import read_records_jsonl
    from breastgpt.corpus.splits import verify_manifest

    problems = verify_build(corpus_dir)
    if not problems:
        check = verify_manifest(corpus_dir / "bench_manifest.json", read_records_jsonl(corpus_dir / "records.jsonl"),
                                media_root=corpus_dir)
        problems = check.problems
    for p in problems:
        typer.echo(p, err=True)
    if problems:
        raise typer.Exit(1)
    typer.echo(f"{corpus_dir}: verified")


@app.command("rephrase")
def rephrase_cmd(corpus_dir: Path = typer.Argument(...), out: Path = typer.Option(..., "--out"),
                 base_url: str = typer.Option(..., "--base-url", help="OpenAI-compatible endpoint, e.g. http://localhost:8000/v1"),
                 model: str = typer.Option(..., "--model"),
                 api_key_env: str = typer.Option("OPENAI_API_KEY", "--api-key-env")) -> None:
    """Optional: rewrite templated open answers with a model (provenance 'generated'); writes a new JSONL."""
    from breastgpt.corpus.generation import GenerationConfig, rephrase_records
    from breastgpt.corpus.records import read_records_jsonl, write_jsonl, write_records_jsonl

    result = rephrase_records(read_records_jsonl(corpus_dir / "records.jsonl"),
                              GenerationConfig(base_url=base_url, model=model, api_key_env=api_key_env))
    write_records_jsonl(out, result.records)
    write_jsonl(out.with_suffix(".rejected.jsonl"), result.rejected)
    typer.echo(f"rewrote {result.rewritten} answers, kept {len(result.rejected)} unchanged (rejected); wrote {out}")
