"""``breastgpt deid ...``: de-identify a DICOM folder, and scan outputs for identifiers from the sources.

The secret is read from a file or an environment variable, never from the command line (shell history and
process listings would keep it).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from breastgpt.deid.pipeline import DeidPolicy, deidentify_folder
from breastgpt.deid.pipeline import patient_id_from_folder as patient_id_from
from breastgpt.deid.pixels import BurnedInPolicy, Rect
from breastgpt.deid.pseudonym import SECRET_ENV_VAR, Pseudonymizer
from breastgpt.deid.scanner import PhiScanner
from breastgpt.io.errors import MedicalFileError

app = typer.Typer(help="De-identify DICOM files (PS3.15 basic profile, keyed pseudonyms) and scan for PHI.",
                  no_args_is_help=True)
_console = Console(stderr=True, soft_wrap=True)  # messages name paths: never break them


@app.command("run")
def run_command(
    src: Path = typer.Argument(..., help="Folder of source DICOM files (searched recursively)."),
    dst: Path = typer.Argument(..., help="Output folder (outside the source folder)."),
    source: str = typer.Option("local", "--source", help="Dataset name; namespaces patient and study keys."),
    secret_file: Optional[Path] = typer.Option(None, "--secret-file", help="File holding the secret."),
    secret_env: str = typer.Option(SECRET_ENV_VAR, "--secret-env", help="Environment variable holding the secret."),
    keep_region: list[str] = typer.Option([], "--keep-region", help="x0,y0,x1,y1 pixel rectangle to keep in images "
                                          "at risk of burned-in text (repeatable); the rest is blacked out."),
    us_regions: bool = typer.Option(False, "--us-regions", help="Keep ultrasound imaging regions, black out the rest."),
    no_shift_dates: bool = typer.Option(False, "--no-shift-dates", help="Empty dates instead of shifting them."),
    patient_id_from_folder: bool = typer.Option(False, "--patient-id-from-folder", help="Take the patient id from "
                                                "the first folder level under SRC instead of the header."),
    source_map: Optional[Path] = typer.Option(None, "--source-map", help="Write reference→source path map here "
                                              "(sensitive; must be outside the output folder)."),
    as_json: bool = typer.Option(False, "--json", help="Print the counts and results as JSON on stdout."),
) -> None:
    """De-identify every DICOM file under SRC into DST; unreadable files are recorded, not fatal."""
    try:
        pseudonymizer = Pseudonymizer.from_file(secret_file) if secret_file else Pseudonymizer.from_env(secret_env)
        policy = DeidPolicy(source=source, shift_dates=not no_shift_dates,
                            burned_in=BurnedInPolicy(tuple(_parse_rect(text) for text in keep_region), us_regions))
    except (ValueError, TypeError) as exc:
        _console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(code=2) from exc
    total = sum(1 for path in src.rglob("*") if path.is_file()) if src.is_dir() else 0
    columns = (TextColumn("de-identifying"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=_console, disable=as_json) as progress:
        task = progress.add_task("deid", total=total)
        try:
            report = deidentify_folder(src, dst, pseudonymizer, policy, source_map=source_map,
                                       patient_id_for=patient_id_from(src) if patient_id_from_folder else None,
                                       on_result=lambda _: progress.advance(task))
        except (ValueError, NotADirectoryError) as exc:
            _console.print(f"[red]error:[/red] {exc}")
            raise typer.Exit(code=2) from exc
    if as_json:
        typer.echo(json.dumps({"counts": report.counts,
                               "files": [result.public_record(dst.resolve()) for result in report.results]}))
    else:
        _console.print(" ".join(f"{status}: {count}" for status, count in sorted(report.counts.items())))


@app.command("scan")
def scan_command(
    target: Path = typer.Argument(..., help="File or folder to check (outputs, corpus, logs)."),
    reference: list[Path] = typer.Option(..., "--reference", help="Source DICOM file or folder whose header "
                                         "values must not appear (repeatable)."),
    as_json: bool = typer.Option(False, "--json", help="Print findings as JSON on stdout."),
) -> None:
    """Exit 1 if any identifying value of the reference headers appears in TARGET (names, contents, bytes)."""
    scanner = PhiScanner()
    unreadable = 0
    for path in _files(reference):
        try:
            scanner.add_file(path)
        except MedicalFileError:
            unreadable += 1
    if not target.exists():
        _console.print(f"[red]error:[/red] {target}: not found — check the path")
        raise typer.Exit(code=2)
    findings = scanner.check(target)
    if as_json:
        typer.echo(json.dumps({"values": len(scanner), "unreadable_references": unreadable,
                               "findings": [vars(finding) for finding in findings]}))
    else:
        for finding in findings:
            _console.print(str(finding), markup=False)
        _console.print(f"{len(findings)} finding(s) from {len(scanner)} reference values "
                       f"({unreadable} reference file(s) unreadable)")
    if findings:
        raise typer.Exit(code=1)


def _parse_rect(text: str) -> Rect:
    parts = text.split(",")
    if len(parts) != 4 or not all(part.strip().lstrip("-").isdigit() for part in parts):
        raise ValueError(f"--keep-region {text!r}: expected four integers x0,y0,x1,y1")
    return Rect(*(int(part) for part in parts))


def _files(paths: list[Path]) -> list[Path]:
    files = []
    for path in paths:
        files.extend(sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path])
    return files
