"""The demo's HTML report and its printed summary tables (stages, learning criterion, slide vs thumbnail, care
pathway)."""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

import numpy as np
from rich.table import Table

from breastgpt import RESEARCH_USE_NOTICE
from breastgpt.artifacts import atomic_write_text

_TEMPLATE = Path(__file__).with_name("templates") / "demo_report.html.jinja"


def fmt_interval(iv: dict[str, Any] | None) -> str:
    if not iv or iv.get("point") is None:
        return "—"
    return f"{100 * iv['point']:.1f} [{100 * iv['low']:.1f}, {100 * iv['high']:.1f}]"


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f}"


def variants_of(results: dict[str, Any]) -> list[str]:
    rows = [row for m in results.get("models", {}).values() for row in m["table"]]
    names = {k for row in rows for k in row if isinstance(row[k], dict) and not k.startswith("full")}
    return [v for v in ("no_image", "shuffle_image", "permute_options") if v in names]


def accuracy_plot(results: dict[str, Any]) -> str:
    """Bars per modality: accuracy of each model and its ablations, with 95 % intervals (PNG, base64)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 3.4))
    ax = fig.subplots()
    models = results.get("models", {})
    series = [(f"{name}: {v}", name, v) for name in models for v in ["full", *variants_of(results)]
              if any(row.get(v) for row in models[name]["table"])]  # a model without an ablation gets no empty bars
    sets = [row["set"] for row in next(iter(models.values()))["table"]] if models else []
    width = 0.8 / max(1, len(series))
    for i, (label, name, variant) in enumerate(series):
        rows = {row["set"]: row.get(variant) for row in models[name]["table"]}
        pts = np.array([100 * rows[s]["point"] if rows.get(s) else np.nan for s in sets])
        low = np.array([100 * rows[s]["low"] if rows.get(s) else np.nan for s in sets])
        high = np.array([100 * rows[s]["high"] if rows.get(s) else np.nan for s in sets])
        err = np.clip(np.nan_to_num(np.stack([pts - low, high - pts])), 0, None)
        ax.bar(np.arange(len(sets)) + i * width, pts, width, yerr=err, capsize=2, label=label)
    chance = [100 * row["chance"] for row in next(iter(models.values()))["table"]] if models else []
    ax.scatter(np.arange(len(sets)) + 0.4 - width / 2, chance, marker="_", s=400, color="black", label="chance", zorder=3)
    ax.set_xticks(np.arange(len(sets)) + 0.4 - width / 2, sets, fontsize=8)
    ax.set_ylim(0, 100)
    ax.set_ylabel("accuracy (%)")
    ax.legend(fontsize=7, ncol=3)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def render_report(summary: dict[str, Any], results: dict[str, Any] | None, bench_reports: list[str]) -> str:
    import jinja2

    from breastgpt.demo.evaluate import MIN_OVER_CHANCE, MIN_OVER_NO_IMAGE

    env = jinja2.Environment(autoescape=True, undefined=jinja2.ChainableUndefined)
    env.filters["iv"] = fmt_interval
    env.filters["pct"] = _pct
    template = env.from_string(_TEMPLATE.read_text(encoding="utf-8"))
    return template.render(summary=summary, results=results, notice=RESEARCH_USE_NOTICE,
                           variants=variants_of(results or {}), plot=accuracy_plot(results) if results else "",
                           bench_reports=bench_reports, min_over_chance=round(100 * MIN_OVER_CHANCE),
                           min_over_no_image=round(100 * MIN_OVER_NO_IMAGE))


def write_bench_reports(ctx: Any) -> list[str]:
    """Each model's full bench report (`breastgpt bench report`), next to its run."""
    from breastgpt.bench.aggregate import score_run
    from breastgpt.bench.items import load_items
    from breastgpt.bench.report import write_report
    from breastgpt.bench.scoring import ScoreConfig

    items = load_items(ctx.state["task_set"] / "bench.jsonl")
    written = []
    for name in ("breastgpt", "thumbnail"):
        run_dir = ctx.state.get(f"bench:{name}")
        if run_dir is None:
            continue
        scores, inputs = score_run(items, run_dir, ScoreConfig(n_resamples=ctx.settings.bootstrap, embeddings=False))
        write_report(scores, Path(run_dir) / "report", inputs)
        written.append(str((Path(run_dir) / "report" / "report.html").relative_to(ctx.out)))
    return written


def learning_rich_table(results: dict[str, Any]) -> Table:
    variants = variants_of(results)
    table = Table(title="Image-dependent closed questions: accuracy % [95 % CI, patient bootstrap]")
    for column in ("model", "items", "n", "chance", "prior", "accuracy", *variants, "criterion"):
        table.add_column(column)
    for name, m in results.get("models", {}).items():
        for i, row in enumerate(m["table"]):
            verdict = "" if i or not m["criterion"] else "[green]met" if m["criterion"]["passed"] else "[red]not met"
            table.add_row(name if i == 0 else "", row["set"], str(row["n_items"]), _pct(row["chance"]),
                          _pct((row.get("prior") or {}).get("point")), fmt_interval(row["full"]),
                          *[fmt_interval(row.get(v)) for v in variants], verdict)
    return table


def comparison_rich_table(results: dict[str, Any]) -> Table | None:
    rows = results.get("slide_vs_thumbnail")
    if not rows:
        return None
    table = Table(title="Slide branch vs thumbnail comparator (paired, same items): accuracy % [95 % CI]")
    for column in ("items", "n", "BreastGPT", "thumbnail", "difference"):
        table.add_column(column)
    for row in rows:
        table.add_row(row["set"], str(row["n_items"]), fmt_interval(row["breastgpt"]), fmt_interval(row["thumbnail"]),
                      fmt_interval(row["difference"]))
    return table


def pathway_rich_table(results: dict[str, Any]) -> Table | None:
    rows = results.get("pathway")
    if not rows:
        return None
    table = Table(title="Care pathway items: accuracy % [95 % CI, patient bootstrap]")
    for column in ("items", "n", "patients", "chance", "with earlier media", "without", "difference"):
        table.add_column(column)
    for row in rows:
        table.add_row(row["set"], str(row["n_items"]), str(row["n_patients"]), _pct(row["chance"]),
                      fmt_interval(row["full"]), fmt_interval(row.get("no_prior_media")),
                      fmt_interval(row.get("difference")))
    return table


def write_html(path: Path, summary: dict[str, Any], results: dict[str, Any] | None, bench_reports: list[str]) -> Path:
    return atomic_write_text(path, render_report(summary, results, bench_reports))


__all__ = ["accuracy_plot", "comparison_rich_table", "fmt_interval", "learning_rich_table", "pathway_rich_table", "render_report",
           "write_bench_reports", "write_html"]
