"""``breastgpt model ...``: build a BreastGPT checkpoint from a local Qwen3-VL folder, verify one, export one."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console

app = typer.Typer(help="BreastGPT model checkpoints (Qwen3-VL + slide branch).", no_args_is_help=True)
_console = Console(stderr=True, soft_wrap=True)  # messages name paths: never break them


@app.command("init")
def init_command(
    base: Path = typer.Option(..., "--base", help="Local Qwen3-VL-{4B,8B}-Instruct checkpoint folder."),
    out: Path = typer.Option(..., "--out", help="Folder to create (must not exist unless --overwrite)."),
    size: str = typer.Option(None, "--size", help="8b or 4b: check the base has that flavour's shapes."),
    seed: int = typer.Option(0, "--seed", help="Seed for the slide branch's initial weights."),
    learnable_selection: bool = typer.Option(
        False, "--learnable-selection",
        help="The paper's learnable selection ablation (concept queries, Gumbel top-k) instead of the "
             "training-free greedy; its selectors start untrained."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --out folder."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON on stdout."),
) -> None:
    """Add <|histo_pad|>, copy Qwen3-VL's weights, initialise the slide branch, write a verified checkpoint."""
    from transformers.utils import logging as hf_logging

    from breastgpt.artifacts import ArtifactError
    from breastgpt.model.init_checkpoint import init_checkpoint

    if size is not None and size not in ("4b", "8b"):
        raise typer.BadParameter(f"--size must be 4b or 8b, got {size!r}")
    hf_logging.set_verbosity_error()  # the per-key "newly initialised" table is expected: the slide branch
    try:
        with _console.status("building checkpoint") as status:
            result = init_checkpoint(base, out, size=size, seed=seed, overwrite=overwrite,
                                     progress=lambda msg: status.update(msg),
                                     config_overrides=_selection_overrides(learnable_selection))
    except (ArtifactError, FileNotFoundError, ValueError) as exc:
        _console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(code=2) from exc
    summary = {
        "out": str(result.out_dir),
        "histo_token_id": result.histo_token_id,
        "vocab_size": result.vocab_size,
        "vocab_size_kept": result.vocab_size_kept,
        "parameters": result.parameters,
        "slide_parameters": result.slide_parameters,
    }
    if as_json:
        typer.echo(json.dumps(summary))
    else:
        for key, value in summary.items():
            _console.print(f"{key}: {value}")


def _selection_overrides(learnable: bool) -> dict | None:
    """Config overrides for `init_checkpoint`: the published selection defaults, learnable when asked."""
    return {"selection_config": {"learnable": True}} if learnable else None


@app.command("verify")
def verify_command(
    path: Path = typer.Argument(..., help="A checkpoint folder written by `model init`."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON on stdout."),
) -> None:
    """Re-hash a checkpoint against its manifest; exit 1 if anything differs."""
    from breastgpt.artifacts import artifact_problems

    problems = artifact_problems(path, exhaustive=True)
    if as_json:
        typer.echo(json.dumps({"path": str(path), "ok": not problems, "problems": problems}))
    else:
        for problem in problems:
            _console.print(f"[red]{problem}[/red]")
        if not problems:
            _console.print(f"{path}: manifest verifies")
    if problems:
        raise typer.Exit(code=1)


@app.command("export")
def export_command(
    checkpoint: Path = typer.Argument(..., help="A BreastGPT checkpoint folder (`model init` or `train` output)."),
    out: Path = typer.Option(..., "--out", help="Folder to create (must not exist unless --overwrite)."),
    fmt: str = typer.Option("qwen3-vl", "--format", help="Target format; qwen3-vl: a plain Qwen3-VL folder "
                            "without the slide branch (see its README.md)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --out folder."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON on stdout."),
) -> None:
    """Write the checkpoint in another model format, with a README and a manifest saying what was left out."""
    from breastgpt.artifacts import ArtifactError
    from breastgpt.model.export import FORMATS, export_qwen3_vl

    if fmt not in FORMATS:
        raise typer.BadParameter(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    try:
        with _console.status("exporting"):
            result = export_qwen3_vl(checkpoint, out, overwrite=overwrite)
    except (ArtifactError, FileNotFoundError, ValueError) as exc:
        _console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(code=2) from exc
    summary = {"out": str(result.out_dir), "format": fmt, "tensors_kept": result.tensors_kept,
               "tensors_left_out": result.tensors_left_out, "parameters_left_out": result.parameters_left_out}
    if as_json:
        typer.echo(json.dumps(summary))
    else:
        for key, value in summary.items():
            _console.print(f"{key}: {value}")
        _console.print("left out: the slide branch; token selection is not reproduced (see README.md in --out)")
