"""`breastgpt bench run`: a thin command over `runner.run_bench` (the lead attaches `run` to the bench group).

`app` holds the same command on its own, for tests and for `python -m`-style use.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from breastgpt.bench.ablations import ABLATIONS
from breastgpt.bench.items import BenchDataError
from breastgpt.bench.runner import RunConfig, run_bench

_console = Console(stderr=True, soft_wrap=True)  # messages name paths: never break them


def run(
    bench: Path = typer.Option(..., "--bench", help="Bench records JSONL (split 'bench') or published bench JSON."),
    model: str = typer.Option(..., "--model", help="local:DIR (checkpoint folder) or openai:URL#MODEL."),
    out: Path = typer.Option(..., "--out", help="Run directory (responses, cache, run.json)."),
    judge: list[str] = typer.Option([], "--judge", help="openai:URL#MODEL judging open-ended answers (repeat for "
                                                        "several judges; each writes its own file)."),
    concurrency: int = typer.Option(4, "--concurrency", help="Requests in flight at once (endpoints)."),
    ablate: list[str] = typer.Option([], "--ablate", help=" | ".join(ABLATIONS.names()) + " (repeat; circular asks "
                                                          "every option rotation: n−1 extra prompts per closed item)."),
    corpus_root: Optional[Path] = typer.Option(None, "--corpus-root", help="Media root (default: bench folder)."),
    max_new_tokens: int = typer.Option(256, "--max-new-tokens", help="Answer length limit (tokens)."),
    seed: int = typer.Option(0, "--seed", help="Decoding seed and ablation seed."),
    api_key_env: Optional[str] = typer.Option(None, "--api-key-env", help="Env var holding the endpoint's key."),
    judge_api_key_env: list[str] = typer.Option([], "--judge-api-key-env",
                                                help="Env var of the judge key: once for all judges, or once per "
                                                     "--judge in the same order."),
    limit: Optional[int] = typer.Option(None, "--limit", help="Run only the first N bench items."),
    retry_failed: bool = typer.Option(True, "--retry-failed/--no-retry-failed",
                                      help="Ask again the items whose request failed in an earlier run."),
    timeout_s: float = typer.Option(120.0, "--timeout", help="Per-request timeout (seconds)."),
    max_retries: int = typer.Option(4, "--max-retries", help="Retries on 429/5xx/timeouts, with backoff."),
    breastgpt_server: Optional[bool] = typer.Option(None, "--breastgpt-server/--generic-server",
                                                    help="Endpoint kind (default: detect via /v1/models)."),
    batch_size: int = typer.Option(8, "--batch-size", help="Batch size of a local model."),
    volume_frames: int = typer.Option(4, "--volume-frames", help="Slices sent per volume to generic endpoints."),
    device: Optional[str] = typer.Option(None, "--device", help="Device of a local model (default: cuda if any)."),
    embeddings: bool = typer.Option(True, "--embeddings/--no-embeddings",
                                    help="Embed open-ended answers into RUN_DIR/embeddings.sqlite for `bench score`."),
    option_scores: bool = typer.Option(False, "--option-scores",
                                       help="Save the probability of every option of closed questions (local model: "
                                            "log-likelihood of each option; endpoint: logprobs when it returns them)."),
    as_json: bool = typer.Option(False, "--json", help="Print run.json instead of a summary."),
) -> None:
    """Ask a model every bench question (plus ablations), resumably; write answers `bench score` reads."""
    try:
        config = RunConfig(bench=bench, model=model, out=out, judges=tuple(judge), concurrency=concurrency,
                           ablations=tuple(ablate), corpus_root=corpus_root, max_new_tokens=max_new_tokens,
                           seed=seed, api_key_env=api_key_env, judge_api_key_env=tuple(judge_api_key_env), limit=limit,
                           retry_failed=retry_failed, timeout_s=timeout_s, max_retries=max_retries,
                           breastgpt_server=breastgpt_server, batch_size=batch_size, volume_frames=volume_frames,
                           device=device, embeddings=embeddings, option_scores=option_scores)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    try:
        with _progress() as bars:
            manifest = run_bench(config, progress=_tracker(bars))
    except (BenchDataError, FileNotFoundError) as exc:
        _console.print(f"error: {exc}", style="red", markup=False, soft_wrap=True)
        raise typer.Exit(code=2)
    if as_json:
        typer.echo(json.dumps(manifest, indent=1))
    else:
        _summary(manifest)
    if manifest["counts"]["failed"]:
        _console.print(f"{manifest['counts']['failed']} requests failed (listed in {out / 'run.json'}); run the "
                       f"same command again to retry them", style="yellow", markup=False, soft_wrap=True)
        raise typer.Exit(code=1)


def _progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=_console, transient=True)


def _tracker(bars: Progress) -> Any:
    tasks: dict[str, Any] = {}

    def update(phase: str, done: int, total: int) -> None:
        if phase not in tasks:
            tasks[phase] = bars.add_task(phase, total=total)
        bars.update(tasks[phase], completed=done, total=total)

    return update


def _summary(manifest: dict[str, Any]) -> None:
    out = Console()
    out.print(f"model {manifest['model']['name']} ({manifest['model']['id']})", markup=False)
    for variant, v in manifest["variants"].items():
        out.print(f"  {variant:16s} {v['answered']:>6d} answered  {v['failed']:>4d} failed  "
                  f"{v['refused']:>4d} refused  ({v['asked_this_run']} asked now, {v['from_cache']} from cache)",
                  markup=False)
    if manifest.get("circular_cost"):
        out.print(f"  {manifest['circular_cost']['text']}", markup=False)
    for j in manifest["judges"]:
        out.print(f"  judge {j['model']}: {j['ok']} scored, {j['unparseable']} unparseable, {j['error']} errors "
                  f"-> {j['file']}", markup=False)


app = typer.Typer(help="Run the benchmark against a model.", add_completion=False, pretty_exceptions_enable=False)
app.command("run")(run)


@app.callback()
def _group() -> None:
    """Keeps `run` an explicit sub-command, as under `breastgpt bench`."""
