"""`breastgpt bench score | report | compare`: thin commands over the scoring API (no model is ever loaded)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from breastgpt.artifacts import atomic_write_text
from breastgpt.bench.aggregate import PAPER_COLUMNS, comparison, full_rows, resolve_open_metric, score_run
from breastgpt.bench.items import BenchDataError, load_items, read_jsonl
from breastgpt.bench.metric_registry import open_options
from breastgpt.bench.report import first_screen, format_interval, format_p, json_safe, render_html, write_report
from breastgpt.bench.scoring import ScoreConfig, load_run, score_responses

app = typer.Typer(help="Score saved benchmark answers offline and write reports.", no_args_is_help=True,
                  add_completion=False, pretty_exceptions_enable=False)
_console = Console(stderr=True, soft_wrap=True)  # messages name paths: never break them
_OPEN_METRIC_HELP = " | ".join(("auto", *open_options()))


def _config(resamples: int, seed: int, embeddings: bool, open_metric: str,
            primary_judge: str | None = None) -> ScoreConfig:
    try:
        return ScoreConfig(n_resamples=resamples, seed=seed, embeddings=embeddings, open_metric=open_metric,
                           primary_judge=primary_judge)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


def _human_grades(path: Optional[Path]) -> dict[str, int] | None:
    if path is None:
        return None
    grades = {}
    for n, obj in read_jsonl(path):
        if not isinstance(obj.get("item_id"), str) or not isinstance(obj.get("score"), int):
            raise BenchDataError(f"{path}:{n}: human grades need {{item_id: str, score: int}} per line")
        grades[obj["item_id"]] = obj["score"]
    return grades


def _train_items(path: Optional[Path]) -> list[Any] | None:
    if path is None:
        return None
    train = load_items(path, split="train")
    if not train:
        raise BenchDataError(f"{path}: no record with split 'train'; pass the corpus records.jsonl that the model "
                             f"was trained from")
    return train


_TRAIN_HELP = "Corpus records JSONL (its split 'train' rows): the per-template training prior baseline."


def _fail(exc: Exception) -> None:
    # markup off: messages quote data such as "[x1,y1,x2,y2]"; soft_wrap keeps file paths on one line
    _console.print(f"error: {exc}", style="red", markup=False, soft_wrap=True)
    raise typer.Exit(code=2)


def _first_screen_table(title: str, first: dict[str, Any]) -> Table:
    """The report's first screen in the terminal, one row per paper column (so it stays readable when narrow): the
    model, the external partition, circular accuracy and each baseline, the minimum detectable difference, and ⚑
    where a shortcut flag was raised."""
    table = Table(title=title)
    table.add_column("column", overflow="fold")
    for row in first["rows"]:
        table.add_column(row["short"], justify="right", overflow="fold")
    table.add_column("MDD", justify="right")
    table.add_column("flag", overflow="fold")
    for n, column in enumerate(first["columns"]):
        mdd = first["mdd"][n]
        table.add_row(Text(column), *[Text(_cell_text(row["cells"][n])) for row in first["rows"]],
                      Text("—" if mdd is None else f"{100 * mdd:.1f}"), Text("⚑" if first["flags"][n] else ""))
    return table


def _cell_text(v: dict[str, Any] | None) -> str:
    return "—" if v is None else f"{100 * v['point']:.2f}\n{format_interval(v)}"


def _warn(lines: list[str]) -> None:
    for w in lines:
        _console.print(f"warning: {w}", style="yellow", markup=False, soft_wrap=True)


def _print_judges(judge: dict[str, Any]) -> None:
    out = Console(soft_wrap=True)
    for j in judge.get("judges", []):
        mean = j["mean_score"]
        score = "—" if mean is None else f"{100 * mean['point']:.1f} {format_interval(mean)}"
        out.print(f"judge {j['judge_model']}{' (primary)' if j['primary'] else ''}: mean {score}; "
                  f"{j['family_check']['text']}", markup=False)
    for a in judge.get("judge_agreement", []) + judge.get("human_agreement", []):
        who = f"{a['judge_model']} vs human grades" if "judge_model" in a else f"{a['a']} vs {a['b']}"
        rho, kappa = a["spearman"], a["kappa_quadratic"]
        out.print(f"agreement {who} (n={a['n']}): Spearman ρ {_num(rho['point'])} {format_interval(rho, 1, 2)}, "
                  f"quadratic κ {_num(kappa['point'])} {format_interval(kappa, 1, 2)}", markup=False)


def _num(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


@app.command("score")
def score_cmd(
    items: Path = typer.Argument(..., help="Bench items JSONL (corpus records)."),
    run_dir: Path = typer.Argument(..., help="Run directory with responses*.jsonl (and judgements*.jsonl)."),
    out: Optional[Path] = typer.Option(None, help="Output folder (default: RUN_DIR/score)."),
    resamples: int = typer.Option(10_000, help="Bootstrap resamples over patients."),
    seed: int = typer.Option(0, help="Bootstrap seed."),
    embeddings: bool = typer.Option(True, help="Compute embedding similarity with the packaged model."),
    open_metric: str = typer.Option("auto", help=_OPEN_METRIC_HELP),
    human_grades: Optional[Path] = typer.Option(None, help="JSONL {item_id, score} graded by humans."),
    primary_judge: Optional[str] = typer.Option(None, help="Judge model feeding the open column (default: the "
                                                           "first judgement file by name)."),
    train: Optional[Path] = typer.Option(None, "--train", help=_TRAIN_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print the report JSON instead of a table."),
) -> None:
    """Score a run directory against the bench items and write report.json, item_scores.jsonl, report.html."""
    config = _config(resamples, seed, embeddings, open_metric, primary_judge)
    try:
        with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                      console=_console, transient=True) as progress:
            progress.add_task(f"scoring {run_dir} ({resamples} resamples)", total=None)
            bench_items = load_items(items)
            train_items = _train_items(train)
            scores, inputs = score_run(bench_items, run_dir, config, _human_grades(human_grades), train_items)
            inputs = [Path(items), *inputs, *([Path(train)] if train is not None else [])]
            report = write_report(scores, out or Path(run_dir) / "score", inputs)
    except (BenchDataError, FileNotFoundError) as exc:
        _fail(exc)
    if as_json:
        typer.echo(json.dumps(report, indent=1))
        return
    Console().print(_first_screen_table(f"{report['model']} (open = {report['open_metric']})", first_screen(report)))
    _print_judges(report["judge"])
    _warn(report["warnings"])


@app.command("report")
def report_cmd(
    report_json: Path = typer.Argument(..., help="report.json written by `bench score`."),
    out: Optional[Path] = typer.Option(None, help="HTML path (default: next to report.json)."),
) -> None:
    """Re-render report.html from a report.json (no re-scoring)."""
    try:
        report = json.loads(Path(report_json).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        _fail(BenchDataError(f"{report_json}: cannot read report JSON ({exc})"))
    if report.get("schema") != "breastgpt.bench.report/1":
        _fail(BenchDataError(f"{report_json}: schema {report.get('schema')!r} is not a bench report"))
    target = out or Path(report_json).with_name("report.html")
    atomic_write_text(target, render_html(report))
    _console.print(f"wrote {target}")


@app.command("compare")
def compare_cmd(
    items: Path = typer.Argument(..., help="Bench items JSONL."),
    run_a: Path = typer.Argument(..., help="Run directory of model A."),
    run_b: Path = typer.Argument(..., help="Run directory of model B."),
    resamples: int = typer.Option(10_000, help="Bootstrap resamples over patients."),
    seed: int = typer.Option(0, help="Bootstrap seed."),
    embeddings: bool = typer.Option(False, help="Include embedding similarity in the open-ended difference."),
    open_metric: str = typer.Option("auto", help=_OPEN_METRIC_HELP),
    train: Optional[Path] = typer.Option(None, "--train", help=_TRAIN_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Paired differences A − B on the same items, resampling the same patients for both models; p-values are
    Holm-adjusted across the columns; each column shows both models and the baselines beside them."""
    config = _config(resamples, seed, embeddings, open_metric)
    try:
        bench_items = load_items(items)
        ra, rb = load_run(run_a, bench_items), load_run(run_b, bench_items)
        da, db = score_responses(bench_items, ra, config), score_responses(bench_items, rb, config)
        metric = resolve_open_metric(config, full_rows(da, bench_items))
        result = {"model_a": ra.model, "model_b": rb.model,
                  **comparison(bench_items, da, db, config, metric, _train_items(train))}
    except (BenchDataError, FileNotFoundError) as exc:
        _fail(exc)
    if as_json:
        typer.echo(json.dumps(json_safe(result), indent=1))
        return
    Console().print(_compare_table(f"{ra.model} (A) − {rb.model} (B), points", result["differences"]))
    _warn(result["warnings"])


def _compare_table(title: str, rows: list[dict[str, Any]]) -> Table:
    """One row per reported column: the difference with its interval and Holm-adjusted p, both models, and the
    baselines beside them."""
    order = {k: n for n, k in enumerate([c[0] for c in PAPER_COLUMNS] + ["closed", "open", "external closed"])}
    rows = sorted(rows, key=lambda r: order.get(r["where"], len(order)))
    names = sorted({n for r in rows for n, v in r["baselines"].items() if v is not None})
    table = Table(title=title)
    for head in ["column", "A − B", "p (Holm)", "A", "B", *names]:
        table.add_column(head, justify="right", overflow="fold")
    for r in rows:
        cells = [r["where"], _score_text(r["difference"]), format_p(r["p_holm"]), _score_text(r["a"]),
                 _score_text(r["b"])]
        table.add_row(*[Text(c) for c in cells + [_score_text(r["baselines"].get(n)) for n in names]])
    return table


def _score_text(iv: dict[str, Any] | None) -> str:
    return "—" if iv is None else f"{100 * iv['point']:.1f} {format_interval(iv)}"


def _attach_run() -> None:
    """`bench run` lives in run_cli (it talks to models); attached here so the group has all four verbs."""
    from breastgpt.bench.run_cli import run

    app.command("run")(run)


_attach_run()


@app.command("import-swift")
def import_swift_cmd(
    results: Path = typer.Argument(..., help="ms-swift inference result JSONL (`swift infer --result_path`)."),
    items: Path = typer.Option(..., "--items", help="Bench items JSONL (corpus records) the results answer."),
    out: Path = typer.Option(..., "--out", help="Run directory to write responses.jsonl into (for `bench score`)."),
    model: str = typer.Option(..., "--model", help="Model name recorded with each response."),
) -> None:
    """Import an ms-swift result file as a run directory: each line matched to its bench item."""
    from breastgpt.bench.items import import_swift_results, response_to_dict, write_jsonl_atomic

    try:
        bench_items = load_items(items)
        responses = import_swift_results(results, bench_items, model)
    except (BenchDataError, FileNotFoundError) as exc:
        _fail(exc)
    if not responses:
        _fail(BenchDataError(f"{results}: no result lines"))
    duplicates = len(responses) - len({r.item_id for r in responses})
    if duplicates:
        _fail(BenchDataError(f"{results}: {duplicates} lines answer an item already answered"))
    write_jsonl_atomic(Path(out) / "responses.jsonl", (response_to_dict(r) for r in responses))
    typer.echo(f"imported {len(responses)} responses for {len(responses)} of {len(bench_items)} items "
               f"-> {Path(out) / 'responses.jsonl'}")
