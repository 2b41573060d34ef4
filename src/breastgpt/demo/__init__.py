"""`breastgpt demo`: the whole care pathway on a synthetic cohort, on a laptop CPU, stage by stage.

De-identification showcase (DICOM with planted fake identifiers → inspect → de-identify → PHI scan) → a
synthetic cohort over five modalities in the public datasets' own layouts → corpus build → leakage audit → the
image-dependent task set → slide tile features → the demo model and tokenizer → CPU training of BreastGPT and of
the thumbnail comparator → benchmark with shortcut ablations → learning criterion and paired comparison → HTML
report. Stages skip work whose outputs verify (per-stage manifests, the corpus build's item states, training
checkpoints, the bench answer cache), so an interrupted demo resumes.

Nothing here is a clinical result: the cohort is synthetic.
"""

from __future__ import annotations

import logging
import os
import platform
import secrets
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from breastgpt import RESEARCH_USE_NOTICE, __version__
from breastgpt.artifacts import atomic_write_json
from breastgpt.demo.settings import DemoSettings, settings_for

log = logging.getLogger("breastgpt.demo")


@dataclass
class StageResult:
    name: str
    ok: bool
    seconds: float
    figures: dict[str, object]
    message: str = ""


@dataclass
class DemoSummary:
    out: str
    settings: dict[str, Any] = field(default_factory=dict)
    machine: dict[str, Any] = field(default_factory=dict)
    created: str = ""
    stages: list[StageResult] = field(default_factory=list)
    results: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return all(stage.ok for stage in self.stages)

    @property
    def criterion_met(self) -> bool | None:
        model = self.results.get("models", {}).get("breastgpt")
        return None if model is None else bool(model["criterion"]["passed"])

    def table(self) -> Table:
        table = Table(title=f"BreastGPT demo — synthetic cohort (not clinical results), {self.seconds:.0f} s")
        for column in ("stage", "status", "seconds", "figures"):
            table.add_column(column)
        for stage in self.stages:
            figures = ", ".join(f"{k}={v}" for k, v in stage.figures.items())
            table.add_row(stage.name, "[green]ok" if stage.ok else f"[red]FAILED[/red] {stage.message}",
                          f"{stage.seconds:.1f}", figures)
        return table

    def tables(self) -> list[Table]:
        from breastgpt.demo.report import comparison_rich_table, learning_rich_table, pathway_rich_table

        out = [self.table()]
        if self.results:
            out.append(learning_rich_table(self.results))
            for extra in (comparison_rich_table(self.results), pathway_rich_table(self.results)):
                if extra is not None:
                    out.append(extra)
        return out

    def as_dict(self) -> dict[str, Any]:
        return {"notice": RESEARCH_USE_NOTICE, "ok": self.ok, "criterion_met": self.criterion_met, "out": self.out,
                "created": self.created, "version": __version__, "seconds": round(self.seconds, 1),
                "settings": self.settings, "machine": self.machine,
                "stages": [asdict(stage) for stage in self.stages], "results": self.results}

    def write(self, path: Path) -> None:
        atomic_write_json(path, self.as_dict(), sort_keys=False)


@dataclass
class DemoContext:
    out: Path
    settings: DemoSettings
    secret: bytes
    console: Console
    state: dict[str, Any] = field(default_factory=dict)

    @property
    def quick(self) -> bool:
        return self.settings.name == "quick"

    def progress(self) -> Progress:
        return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        console=self.console, transient=True)


def _stages() -> list[tuple[str, Callable[[DemoContext], dict[str, Any]]]]:
    from breastgpt.demo import cohort, deid, evaluate, training

    stages = [
        ("synthesize DICOM", deid.stage_synthesize),
        ("inspect", deid.stage_inspect),
        ("de-identify", deid.stage_deidentify),
        ("PHI scan", deid.stage_phi_scan),
        ("cohort", cohort.stage_cohort),
        ("corpus", cohort.stage_corpus),
        ("audit", cohort.stage_audit),
        ("task set", cohort.stage_task_set),
        ("slide features", cohort.stage_slides),
        ("model", training.stage_model),
        ("train breastgpt", training.stage_train_breastgpt),
        ("train thumbnail", training.stage_train_thumbnail),
        ("bench", evaluate.stage_bench),
        ("score", evaluate.stage_score),
        ("report", stage_report),
    ]
    return stages


def stage_report(ctx: DemoContext) -> dict[str, Any]:
    """Each model's bench report and the demo's HTML report (written again, complete, when the demo ends)."""
    from breastgpt.demo.report import write_bench_reports

    ctx.state["bench_reports"] = write_bench_reports(ctx)
    return {"html": "report.html", "bench_reports": len(ctx.state["bench_reports"])}


def machine_info(threads: int) -> dict[str, Any]:
    return {"platform": platform.platform(), "cpus": os.cpu_count(), "torch_threads": threads,
            "load_at_start": [round(x, 2) for x in os.getloadavg()]}


def torch_threads(requested: int | None) -> int:
    """Intra-op threads for the demo's trainings and inference (breastgpt.threads: explicit, env, free cores)."""
    from breastgpt.threads import apply_threads

    return apply_threads(requested)


def run_demo(out: Path, *, quick: bool = False, secret: bytes | None = None, console: Console | None = None,
             settings: DemoSettings | None = None, threads: int | None = None) -> DemoSummary:
    """Run every stage in order; a failed stage is recorded and stops the stages that depend on it."""
    started = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    console = console or Console(stderr=True)
    settings = settings or settings_for(quick)
    handler = logging.FileHandler(out / "demo.log", mode="w")
    logging.getLogger("breastgpt").addHandler(handler)
    logging.getLogger("breastgpt").setLevel(logging.INFO)
    if secret is None:
        console.print("[yellow]No pseudonym secret given: using a random one for the de-identification showcase.")
        secret = secrets.token_bytes(32)
    ctx = DemoContext(out=out, settings=settings, secret=secret, console=console)
    summary = DemoSummary(out=str(out), settings=settings.as_dict(), machine=machine_info(torch_threads(threads)),
                          created=datetime.now(timezone.utc).isoformat(timespec="seconds"))
    console.print(f"[bold]{RESEARCH_USE_NOTICE}[/bold] The cohort is synthetic.")
    try:
        _run_stages(ctx, summary)
    finally:
        logging.getLogger("breastgpt").removeHandler(handler)
        handler.close()
    summary.results = ctx.state.get("results", {})
    summary.seconds = time.perf_counter() - started
    summary.machine["load_at_end"] = [round(x, 2) for x in os.getloadavg()]
    summary.write(out / "summary.json")
    _write_report(ctx, summary)
    console.print(RESEARCH_USE_NOTICE)
    return summary


def _run_stages(ctx: DemoContext, summary: DemoSummary) -> None:
    for name, stage in _stages():
        ctx.console.print(f"[bold]▶ {name}[/bold] — {stage.__doc__.splitlines()[0]}")
        start = time.perf_counter()
        try:
            figures = stage(ctx)
            summary.stages.append(StageResult(name, True, time.perf_counter() - start, figures))
        except Exception as error:  # a failed stage is reported, never a traceback for the user
            log.exception("stage %s failed", name)
            summary.stages.append(StageResult(name, False, time.perf_counter() - start, {}, str(error)))
            break


def _write_report(ctx: DemoContext, summary: DemoSummary) -> None:
    from breastgpt.demo.report import write_html

    try:
        write_html(ctx.out / "report.html", summary.as_dict(), summary.results or None,
                   ctx.state.get("bench_reports", []))
    except Exception as error:  # the summary is already written; a report failure must not hide it
        log.exception("report failed")
        summary.stages.append(StageResult("report.html", False, 0.0, {}, str(error)))
        summary.write(ctx.out / "summary.json")


__all__ = ["DemoContext", "DemoSummary", "StageResult", "run_demo"]
