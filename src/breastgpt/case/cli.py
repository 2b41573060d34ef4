"""`breastgpt case run` and `breastgpt case from-source`: thin wrappers over `breastgpt.case`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from breastgpt import RESEARCH_USE_NOTICE

app = typer.Typer(help="One patient's care pathway: case folders, stage-by-stage runs, case reports.",
                  no_args_is_help=True)
console = Console(stderr=True, soft_wrap=True)


@app.command("run")
def run_command(
    case: Path = typer.Argument(..., help="Case folder holding case.json (docs/pathway.md)."),
    model: Path = typer.Option(..., "--model", help="Checkpoint folder (local; nothing is downloaded)."),
    out: Path = typer.Option(..., "--out", help="Report folder: case_report.json, report.html, images/."),
    encoder: Optional[str] = typer.Option(None, "--encoder", help="Tile encoder for slide media (default: the one "
                                          "the checkpoint's slide branch was trained on; another is refused)."),
    encoder_weights: Optional[Path] = typer.Option(None, "--encoder-weights", help="Local weights for --encoder."),
    mpp: Optional[float] = typer.Option(None, "--mpp", help="µm/px for slides that do not declare it."),
    answer_style: str = typer.Option("letter", "--answer-style", help="Closed answers: letter | text (as the corpus)."),
    max_new_tokens: int = typer.Option(64, "--max-new-tokens"),
    device: Optional[str] = typer.Option(None, "--device", help="cpu or cuda (default: cuda when available)."),
) -> None:
    """Walk the case's studies in pathway order with the model and write the case report (resumable)."""
    from breastgpt.case.run import CaseSettings, run_case
    from breastgpt.case.schema import CaseError
    from breastgpt.io import MedicalFileError

    if answer_style not in ("letter", "text"):
        raise typer.BadParameter("use letter or text", param_hint="--answer-style")
    settings = CaseSettings(encoder=encoder, encoder_weights=str(encoder_weights) if encoder_weights else None,
                            slide_mpp=mpp, max_new_tokens=max_new_tokens, answer_style=answer_style, device=device)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), console=console) as progress:
        bar = progress.add_task("case questions", total=None)

        def on_step(step, total: int) -> None:
            progress.update(bar, total=total, advance=1,
                            description=f"study {step.study_index + 1}: {'reused' if step.reused else 'answered'}")
        try:
            report = run_case(case, model, out, settings, on_step=on_step)
        except (CaseError, MedicalFileError, FileNotFoundError, ValueError) as error:
            console.print(f"[red]error:[/red] {error}")
            raise typer.Exit(code=2) from error
    for study in report["studies"]:
        for q in study["questions"]:
            typer.echo(f"[{study['stage']}] {q['question'].splitlines()[0]}\n  → {q['answer']}")
    console.print(f"report: {out / 'report.html'}")
    console.print(f"[dim]{RESEARCH_USE_NOTICE}[/dim]")


@app.command("from-source")
def from_source_command(
    source: str = typer.Argument(..., help="Corpus source name, e.g. pathway_cohort or institutional."),
    root: Path = typer.Argument(..., help="The dataset folder (an institutional manifest with stage/date columns)."),
    out: Path = typer.Option(..., "--out", help="Folder for one case folder per patient."),
    min_stages: int = typer.Option(3, "--min-stages", min=1, max=3, help="Stages a patient needs to get a case."),
    secret_env: str = typer.Option("BREASTGPT_DEID_SECRET", "--secret-env",
                                   help="Environment variable holding the pseudonym secret."),
) -> None:
    """Write a case folder per patient of a source, named by the keyed patient pseudonym."""
    from breastgpt.case.build import cases_from_source
    from breastgpt.deid.pseudonym import Pseudonymizer

    secret = os.environ.get(secret_env, "")
    if not secret:
        console.print(f"[red]error:[/red] {secret_env} is empty: set it to the pseudonym secret (as for corpus build)")
        raise typer.Exit(code=2)
    pseudo = Pseudonymizer(secret.encode("utf-8"))
    with Progress(TextColumn("cases"), MofNCompleteColumn(), console=console, transient=True) as progress:
        bar = progress.add_task("cases", total=None)
        folders = cases_from_source(source, root, out, pseudo.patient_key, min_stages,
                                    progress=lambda: progress.advance(bar))
    if not folders:
        console.print(f"[red]error:[/red] no patient in {root} has {min_stages} stages; nothing was written")
        raise typer.Exit(code=1)
    typer.echo(f"{len(folders)} case folders in {out}")
