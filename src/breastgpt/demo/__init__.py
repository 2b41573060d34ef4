"""`breastgpt demo`: the pathway on a synthetic cohort, stage by stage, with a summary of what each stage showed.

Stages so far: synthesize DICOM studies with planted fake identifiers → inspect and decode every file →
de-identify (PS3.15 basic profile, keyed pseudonyms) → PHI scan of everything written. Later stages (corpus build
and audit, slide features, training, benchmark) append to `STAGES`.

Nothing here is a clinical result: the cohort is synthetic.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from breastgpt import RESEARCH_USE_NOTICE
from breastgpt.artifacts import atomic_write_json

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
    stages: list[StageResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(stage.ok for stage in self.stages)

    def table(self) -> Table:
        table = Table(title="BreastGPT demo — synthetic cohort (not clinical results)")
        for column in ("stage", "status", "seconds", "figures"):
            table.add_column(column)
        for stage in self.stages:
            figures = ", ".join(f"{k}={v}" for k, v in stage.figures.items())
            table.add_row(stage.name, "[green]ok" if stage.ok else f"[red]FAILED[/red] {stage.message}",
                          f"{stage.seconds:.1f}", figures)
        return table

    def write(self, path: Path) -> None:
        atomic_write_json(path, {"notice": RESEARCH_USE_NOTICE, "ok": self.ok, "out": self.out,
                                 "stages": [asdict(stage) for stage in self.stages]}, sort_keys=False)


@dataclass
class DemoContext:
    out: Path
    quick: bool
    secret: bytes
    console: Console
    state: dict[str, object] = field(default_factory=dict)

    def progress(self) -> Progress:
        return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        console=self.console, transient=True)


def stage_synthesize(ctx: DemoContext) -> dict[str, object]:
    """Synthetic screening mammography studies (CC + MLO per breast) as DICOM, with planted fake identifiers."""
    from breastgpt.synth.render import render_mammogram
    from breastgpt.synth.writers import write_dicom

    patients = 3 if ctx.quick else 8
    rng = np.random.default_rng(7)
    raw = ctx.out / "raw_dicom"
    written = 0
    with ctx.progress() as progress:
        task = progress.add_task("synthesizing studies", total=patients * 4)
        for patient in range(patients):
            density = "ABCD"[patient % 4]
            for side in ("L", "R"):
                for view in ("CC", "MLO"):
                    pixels, _ = render_mammogram(rng, 256, 208, side, density)
                    key = f"demo-{patient:03d}-{side}{view}"
                    write_dicom(raw / f"patient{patient:03d}" / f"{side}_{view}.dcm", pixels, key=key,
                                laterality=side, view=view, window=(1200.0, 2400.0),
                                study_uid=None, patient_id=f"FAKEPHI-ID-{patient:05d}")
                    written += 1
                    progress.advance(task)
    ctx.state["raw"] = raw
    return {"patients": patients, "dicom_files": written}


def stage_inspect(ctx: DemoContext) -> dict[str, object]:
    """Every file through the readers: metadata and a decoded, display-ready image."""
    from breastgpt.io import MedicalFileError, decode_path, inspect_path

    files = sorted(p for p in Path(ctx.state["raw"]).rglob("*.dcm"))
    kinds: Counter[str] = Counter()
    failures = 0
    with ctx.progress() as progress:
        task = progress.add_task("reading", total=len(files))
        for path in files:
            try:
                info = inspect_path(path)
                decode_path(path)
                kinds[f"{info['kind']}/{info['modality']}/{info['laterality']}"] += 1
            except MedicalFileError as error:
                failures += 1
                log.warning("unreadable: %s", error.as_record())
            progress.advance(task)
    return {"read": sum(kinds.values()), "failed": failures, "by_kind": dict(sorted(kinds.items()))}


def stage_deidentify(ctx: DemoContext) -> dict[str, object]:
    """PS3.15 basic profile with keyed pseudonyms and per-patient date shifts."""
    from breastgpt.deid import DeidPolicy, Pseudonymizer, deidentify_folder

    out = ctx.out / "deidentified"
    files = sorted(Path(ctx.state["raw"]).rglob("*.dcm"))
    with ctx.progress() as progress:
        task = progress.add_task("de-identifying", total=len(files))
        report = deidentify_folder(ctx.state["raw"], out, Pseudonymizer(ctx.secret), DeidPolicy(source="demo"),
                                   on_result=lambda _: progress.advance(task))
    ctx.state["deidentified"] = out
    counts = report.counts
    patients = {result.patient_key for result in report.results if result.patient_key}
    if counts.get("written", 0) != len(files):
        raise RuntimeError(f"de-identification wrote {counts.get('written', 0)} of {len(files)} files: {counts}")
    return {**counts, "pseudonymous_patients": len(patients)}


def stage_phi_scan(ctx: DemoContext) -> dict[str, object]:
    """Every identifying value of the source headers is looked for in every output file, name and log."""
    from breastgpt.deid import PhiScanner

    scanner = PhiScanner.from_files(sorted(Path(ctx.state["raw"]).rglob("*.dcm")))
    findings = scanner.scan_tree(ctx.state["deidentified"])
    log_path = ctx.out / "demo.log"
    if log_path.exists():
        findings += scanner.scan_file(log_path, ctx.out)
    if findings:
        raise RuntimeError(f"{len(findings)} identifying value(s) found in outputs: {[str(f) for f in findings[:5]]}")
    return {"identifying_values_checked": len(scanner), "leaks": 0}


STAGES: list[tuple[str, Callable[[DemoContext], dict[str, object]]]] = [
    ("synthesize", stage_synthesize),
    ("inspect", stage_inspect),
    ("de-identify", stage_deidentify),
    ("PHI scan", stage_phi_scan),
]


def run_demo(out: Path, *, quick: bool = False, secret: bytes | None = None, console: Console | None = None) -> DemoSummary:
    """Run every stage in order; a failed stage is recorded and stops the stages that depend on it."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    console = console or Console(stderr=True)
    handler = logging.FileHandler(out / "demo.log", mode="w")
    logging.getLogger("breastgpt").addHandler(handler)
    logging.getLogger("breastgpt").setLevel(logging.INFO)
    if secret is None:
        console.print("[yellow]No pseudonym secret given: using a random one for this demo run.")
        secret = secrets.token_bytes(32)
    ctx = DemoContext(out=out, quick=quick, secret=secret, console=console)
    summary = DemoSummary(out=str(out))
    try:
        for name, stage in STAGES:
            console.print(f"[bold]▶ {name}[/bold] — {stage.__doc__.splitlines()[0]}")
            start = time.perf_counter()
            try:
                figures = stage(ctx)
                summary.stages.append(StageResult(name, True, time.perf_counter() - start, figures))
            except Exception as error:  # a failed stage is reported, never a traceback for the user
                log.exception("stage %s failed", name)
                summary.stages.append(StageResult(name, False, time.perf_counter() - start, {}, str(error)))
                break
    finally:
        logging.getLogger("breastgpt").removeHandler(handler)
        handler.close()
    summary.write(out / "summary.json")
    console.print(RESEARCH_USE_NOTICE)
    return summary
