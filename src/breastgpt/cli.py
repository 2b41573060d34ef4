"""The `breastgpt` command line: a thin layer over the Python API (one sub-app per area)."""

from __future__ import annotations

import importlib
import json
import os
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from breastgpt import RESEARCH_USE_NOTICE, __version__

app = typer.Typer(
    name="breastgpt",
    help="BreastGPT — multimodal AI across the breast-cancer care pathway. " + RESEARCH_USE_NOTICE,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True, soft_wrap=True)  # messages name paths: never break them


def _print_version(value: bool) -> None:
    # An option callback runs while the arguments are parsed, before click asks for a sub-command; a plain
    # eager flag read in the group callback never runs because click stops first with "Missing command".
    if value:
        typer.echo(__version__)
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", help="Print the version and exit.", is_eager=True,
                                 callback=_print_version),
) -> None:
    del version  # handled by _print_version


@app.command()
def doctor(
    as_json: bool = typer.Option(False, "--json", help="Print the checks as JSON."),
) -> None:
    """Versions, available readers and decoders, GPU, free disk; exits non-zero when an essential piece is missing."""
    from breastgpt.doctor import as_json as checks_json, run_checks

    checks = run_checks()
    report = checks_json(checks)
    if as_json:
        typer.echo(json.dumps(report, indent=2))
    else:
        table = Table(title=f"breastgpt {__version__} — doctor")
        for column in ("check", "status", "detail", "fix"):
            table.add_column(column, overflow="fold")  # a narrow terminal folds the fix, never drops it
        for check in checks:
            status = "[green]ok" if check.ok else ("[red]MISSING" if check.essential else "[yellow]optional")
            table.add_row(check.name, status, check.detail, check.fix)
        Console().print(table)
        # Below the table, unwrapped, so the fix reads whole however narrow the terminal is.
        for check in checks:
            if not check.ok and check.essential:
                console.print(f"[red]MISSING[/red] {check.name}: {check.detail}. Fix: {check.fix}", highlight=False)
    if not report["ok"]:
        raise typer.Exit(code=1)


@app.command()
def inspect(
    path: Path = typer.Argument(..., help="A DICOM file, DICOM series folder, NIfTI/NRRD volume, slide or image."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    mpp: Optional[float] = typer.Option(None, "--mpp", help="µm per pixel at level 0, for slides that do not declare it."),
) -> None:
    """Normalised metadata of any supported file: kind, modality, dimensions, spacing, levels — never identifiers."""
    from breastgpt.io import MedicalFileError, inspect_path

    try:
        description = inspect_path(path, mpp=mpp)
    except MedicalFileError as error:
        console.print(f"[red]error:[/red] {error}")
        raise typer.Exit(code=2) from error
    if as_json:
        typer.echo(json.dumps(description, indent=2, default=str))
        return
    table = Table(title=str(path), show_header=False)
    for key, value in description.items():
        if key != "path":
            table.add_row(key, json.dumps(value, default=str) if isinstance(value, (dict, list)) else str(value))
    Console().print(table)


@app.command()
def demo(
    out: Path = typer.Option(Path("demo-out"), "--out", help="Folder for everything the demo writes."),
    quick: bool = typer.Option(False, "--quick", help="Smaller cohort, for tests."),
    secret_env: str = typer.Option("BREASTGPT_DEID_SECRET", help="Environment variable holding the pseudonym secret."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1,
                                          help="Torch threads for training and inference (default: $BREASTGPT_THREADS, "
                                               "else the cores not busy with other processes)."),
) -> None:
    """Run the pathway on a synthetic cohort (see docs/demo.md for what each stage shows)."""
    from breastgpt.demo import run_demo

    secret = os.environ.get(secret_env, "").encode() or None
    summary = run_demo(out, quick=quick, secret=secret, console=console, threads=threads)
    for table in summary.tables():
        Console().print(table)
    Console().print(f"Report: {out / 'report.html'}; figures: {out / 'summary.json'}")
    if not summary.ok:
        raise typer.Exit(code=1)


from breastgpt.infer import cli as _infer_cli  # noqa: E402 — light module; heavy imports happen per command

app.command("ask")(_infer_cli.ask)
app.command("predict")(_infer_cli.predict)
app.command("serve")(_infer_cli.serve)


# Area command groups, each beside its Python API. Only the group being run is imported, so that
# `breastgpt inspect` does not pay for importing transformers; the others are listed by name and help.
SUBAPPS: dict[str, tuple[str, str]] = {
    "deid": ("breastgpt.deid.cli", "De-identify DICOM files (PS3.15 basic profile, keyed pseudonyms)."),
    "slides": ("breastgpt.pathology.cli", "Whole-slide tiling, tile encoding, feature files, overlays."),
    "synth": ("breastgpt.synth.cli", "Write synthetic cohorts in each public dataset's on-disk layout."),
    "corpus": ("breastgpt.corpus.cli", "Build, audit and describe the BreastStage corpus."),
    "model": ("breastgpt.model.cli", "Build and describe BreastGPT checkpoints."),
    "train": ("breastgpt.train.cli", "Stage-1 / stage-2 supervised fine-tuning, full or LoRA, with exact resume."),
    "bench": ("breastgpt.bench.cli", "Score, compare and report BreastStage-Bench runs."),
    "case": ("breastgpt.case.cli", "One patient's care pathway: case folders, stage-by-stage runs, case reports."),
}
_registered: set[str] = set()


def register_subapps(names: list[str] | None = None) -> typer.Typer:
    """Attach the named groups (all when None) to the root app; unnamed ones get a listing-only placeholder."""
    wanted = set(SUBAPPS) if names is None else set(names)
    for name, (module_name, help_text) in SUBAPPS.items():
        if name in _registered:
            continue
        if name in wanted:
            module = importlib.import_module(module_name)
            app.add_typer(module.app, name=name, help=help_text)
            _registered.add(name)
    return app


def _group_in(argv: list[str]) -> list[str]:
    words = [word for word in argv if not word.startswith("-")]
    return [words[0]] if words and words[0] in SUBAPPS else []


def main() -> None:
    register_subapps(_group_in(sys.argv[1:]))
    _list_groups()
    app()


def _list_groups() -> None:
    """Show the groups in --help without importing them."""
    for name, (_, help_text) in SUBAPPS.items():
        if name not in _registered:
            placeholder = typer.Typer(help=help_text, no_args_is_help=True)

            @placeholder.command("help", hidden=True)
            def _help() -> None:  # a group needs one command to be a group
                pass

            app.add_typer(placeholder, name=name, help=help_text)
            _registered.add(name)


if __name__ == "__main__":
    main()
