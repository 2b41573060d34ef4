"""`synth --out DIR --patients N [--sources a,b] [--seed S] [--full-size]`: write synthetic cohorts in each
source's real layout (register as `breastgpt synth`)."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.progress import Progress

from breastgpt.synth.cohort import GENERATORS, generate

app = typer.Typer(help="Synthetic cohorts in each dataset's own on-disk layout.", no_args_is_help=True)


@app.command("generate")
def generate_command(
    out: Path = typer.Option(..., "--out", help="output folder; one sub-folder per source"),
    patients: int = typer.Option(8, "--patients", min=1, help="patients per source"),
    sources: str = typer.Option("", "--sources", help=f"comma-separated subset of: {','.join(GENERATORS)}"),
    seed: int = typer.Option(0, "--seed"),
    full_size: bool = typer.Option(False, "--full-size", help="realistic image sizes (slow, large)"),
    as_json: bool = typer.Option(False, "--json", help="print {source: root} as JSON"),
) -> None:
    """Write DIR/<source>/... for each source and print the per-source roots."""
    names = [s.strip() for s in sources.split(",") if s.strip()] or list(GENERATORS)
    unknown = [n for n in names if n not in GENERATORS]
    if unknown:
        raise typer.BadParameter(f"unknown source(s) {unknown}; known: {', '.join(GENERATORS)}", param_hint="--sources")
    with Progress(transient=True, disable=as_json) as progress:
        task = progress.add_task("synthesising", total=len(names))
        roots = generate(out, patients, names, seed, full_size, progress=lambda _: progress.advance(task))
    if as_json:
        typer.echo(json.dumps({k: str(v) for k, v in roots.items()}))
    else:
        for name, root in roots.items():
            typer.echo(f"{name}\t{root}")


@app.command("sources")
def list_sources() -> None:
    """List the sources that can be synthesised."""
    for name in GENERATORS:
        typer.echo(name)
