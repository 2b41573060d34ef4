"""Write a scored run as `report.json`, `item_scores.jsonl` and a self-contained `report.html`.

The HTML has no external references: styles are inline and the plots (per-cell accuracy with intervals,
confusion matrices, calibration) are PNGs embedded as base64. All files are written atomically and
`report.json` carries a manifest (sha256 of every input file, configuration, code version).
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import io
import json
import math
import platform
from pathlib import Path
from typing import Any

import jinja2
import numpy as np
from matplotlib.figure import Figure

from breastgpt.artifacts import atomic_write_text, code_version, sha256_file
from breastgpt.bench.aggregate import PAPER_COLUMNS, BenchScores, find_group
from breastgpt.bench.metric_registry import OPEN_FAMILIES, clinical_metrics, family_metrics, open_metric

SCHEMA = "breastgpt.bench.report/1"
_TEMPLATE = Path(__file__).with_name("templates") / "report.html.jinja"

def report_dict(scores: BenchScores, inputs: list[Path]) -> dict[str, Any]:
    df = scores.per_item
    return json_safe({
        "schema": SCHEMA, "model": scores.model, "open_metric": scores.open_metric,
        "config": dataclasses.asdict(scores.config),
        "manifest": {"inputs": [{"path": str(p), "sha256": sha256_file(p)} for p in inputs],
                     "code_version": code_version(), "python": platform.python_version(),
                     "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")},
        "counts": {"items": int((df["variant"] == "full").sum()),
                   "responses_by_variant": {k: int(v) for k, v in df["variant"].value_counts().items()},
                   "status_full": {k: int(v) for k, v in df[df["variant"] == "full"]["status"].value_counts().items()}},
        "clustering": scores.clustering, "paper_row": scores.paper_row, "groups": scores.groups,
        "clinical": scores.clinical, "shortcuts": scores.shortcuts, "judge": scores.judge,
        "paper_external": scores.paper_external, "calibration": scores.calibration, "circular": scores.circular,
        "warnings": scores.warnings,
    })


def json_safe(obj: Any) -> Any:
    """JSON-safe copy: NaN/inf -> None, numpy scalars -> Python."""
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def write_report(scores: BenchScores, out_dir: Path, inputs: list[Path]) -> dict[str, Any]:
    """Write report.json, item_scores.jsonl and report.html into out_dir; returns the report dict."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    report = report_dict(scores, inputs)
    # pandas writes NaN as null, so the per-item table goes out as JSON lines without a Python loop
    atomic_write_text(out_dir / "item_scores.jsonl", scores.per_item.to_json(orient="records", lines=True))
    atomic_write_text(out_dir / "report.json", json.dumps(report, indent=1, ensure_ascii=False))
    atomic_write_text(out_dir / "report.html", render_html(report))
    return report


# ------------------------------------------------------------------------------------------------------ HTML


def render_html(report: dict[str, Any]) -> str:
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    env.filters["pct"] = _pct
    env.filters["ci"] = format_interval
    env.filters["num"] = _num
    env.filters["pval"] = format_p
    env.filters["warnings"] = merged_warnings
    template = env.from_string(_TEMPLATE.read_text(encoding="utf-8"))
    plots = {"cells": _png(_cell_plot(report))}
    if report.get("calibration"):
        plots["reliability"] = _png(_reliability_plot(report["calibration"]))
    plots.update({f"confusion_{c['target']}": _png(_confusion_plot(c)) for c in report["clinical"]})
    plots.update({f"calibration_{c['target']}": _png(_calibration_plot(c)) for c in report["clinical"]
                  if c.get("calibration")})
    return template.render(r=report, plots=plots, sections=cell_sections(report["groups"]),
                           paper_columns=[c[0] for c in PAPER_COLUMNS], first=first_screen(report),
                           sources=source_table(report), short_labels=SHORT_LABELS,
                           clinical_metrics=list(clinical_metrics()),
                           by_provenance=[g for g in report["groups"] if g["grouping"] == "task_family×provenance"])


BASELINE_ROWS = (("chance", "chance (uniform guess)"), ("prior", "training prior (per template)"),
                 ("text_only", "text-only (no image)"), ("shuffled_image", "shuffled image"))
SHORT_LABELS = {"chance": "chance", "prior": "prior", "text_only": "text-only", "shuffled_image": "shuffled"}


def first_screen(report: dict[str, Any]) -> dict[str, Any]:
    """The paper's columns as rows to read across: the model (internal bench), the external held-out sources,
    circular accuracy, each baseline, the minimum detectable difference; and the shortcut flags per column."""
    columns = [c[0] for c in PAPER_COLUMNS] + ["closed", "open"]
    row = report["paper_row"]
    label = f"{report['model']} (internal bench)" if report.get("paper_external") else report["model"]
    rows = [{"label": label, "short": "model", "kind": "model", "cells": [row[c] for c in columns]}]
    if report.get("paper_external"):
        rows.append({"label": "external (held-out sources)", "short": "external", "kind": "model",
                     "cells": [report["paper_external"][c] for c in columns]})
    circular = [_circular_cell(report["groups"], c) for c in columns]
    if any(circular):
        rows.append({"label": "circular (right under every rotation)", "short": "circular", "kind": "model",
                     "cells": circular})
    for name, label in BASELINE_ROWS:
        cells = [(row[c] or {}).get("baselines", {}).get(name) for c in columns]
        if any(cells):
            rows.append({"label": label, "short": SHORT_LABELS[name], "kind": "baseline", "cells": cells})
    mdd = [((row[c] or {}).get("power") or {}).get("mdd") for c in columns]
    flags = {c: [s["flag"] for s in report["shortcuts"] if s["flag"] and _flag_column(s) == c] for c in columns}
    return {"columns": columns, "rows": rows, "mdd": mdd, "flags": [flags[c] for c in columns],
            "open_baselines_metric": (row.get("open") or {}).get("baselines_metric")}


def _circular_cell(groups: list[dict[str, Any]], column: str) -> dict[str, Any] | None:
    if column == "open":
        return None
    if column == "closed":
        return find_group(groups, "partition", {"partition": "internal"}, "circular_accuracy")
    _, stage, modality = next(c for c in PAPER_COLUMNS if c[0] == column)
    return find_group(groups, "partition×stage×modality", {"partition": "internal", "stage": stage,
                                                           "modality": modality}, "circular_accuracy")


def _flag_column(shortcut: dict[str, Any]) -> str | None:
    if shortcut["family"] == "closed_vqa":
        return "closed" if shortcut["where"] == "overall" else shortcut["where"]
    if shortcut["family"] in OPEN_FAMILIES and shortcut["where"] == "overall":
        return "open"
    return None


def source_table(report: dict[str, Any]) -> dict[str, Any]:
    """Per source: closed accuracy and the open-ended score, internal bench and external partition side by side."""
    metrics = ["accuracy", open_metric(report["open_metric"]).name]
    groups = [g for g in report["groups"] if g["grouping"] == "source×partition" and g["metric"] in metrics]
    sources = sorted({g["key"]["source"] for g in groups})
    partitions = [p for p in ("internal", "external") if any(g["key"]["partition"] == p for g in groups)]
    rows = [{"source": src, "cells": [next((g for g in groups if g["key"] == {"source": src, "partition": p}
                                           and g["metric"] == m), None) for p in partitions for m in metrics]}
            for src in sources]
    return {"partitions": partitions, "metrics": metrics, "rows": rows}


def format_p(value: float | None) -> str:
    """A p-value to three decimals; below 0.001 as '<0.001'."""
    if value is None or value != value:
        return "—"
    return "<0.001" if value < 0.001 else f"{value:.3f}"


def _pct(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else f"{100 * value:.{digits}f}"


def _num(value: float | None, digits: int = 2) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def format_interval(iv: dict[str, Any] | None, scale: float = 100, digits: int = 1) -> str:
    """'[low, high]' rounded; a zero-width interval is flagged instead of printed as an exact value."""
    if iv is None:
        return "—"
    if iv.get("low") is None or iv.get("high") is None:
        return "[undefined]"
    if iv["low"] == iv["high"]:
        return "[zero-width ⚠]"
    return f"[{scale * iv['low']:.{digits}f}, {scale * iv['high']:.{digits}f}]"


def cell_sections(groups: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The stage × modality × family × source cells as one small table per task family: a row per cell, a column
    per metric of that family, rows in the paper's column order then by source, a heading row per stage/modality."""
    order = {(stage, modality): n for n, (_, stage, modality) in enumerate(PAPER_COLUMNS)}
    cells: dict[tuple[str, ...], dict[str, dict[str, Any]]] = {}
    for g in groups:
        if g["grouping"] == "cell":
            k = g["key"]
            cells.setdefault((k["task_family"], k["stage"], k["modality"], k["source"]), {})[g["metric"]] = g
    sections = []
    # each task family's registered metrics, in column order (others stay in report.json's groups)
    for family, metrics in family_metrics().items():
        keys = sorted((k for k in cells if k[0] == family),
                      key=lambda k: (order.get((k[1], k[2]), len(order)), k[1], k[2], k[3]))
        shown = [m for m in metrics if any(m in cells[k] for k in keys)]
        if keys:
            sections.append({"family": family, "metrics": shown, "rows": [_cell_row(k, cells[k], shown)
                                                                          for k in keys]})
    return sections


def _cell_row(key: tuple[str, ...], by_metric: dict[str, dict[str, Any]], metrics: list[str]) -> dict[str, Any]:
    first = by_metric[metrics[0]] if metrics[0] in by_metric else next(iter(by_metric.values()))
    return {"stage": key[1], "modality": key[2], "source": key[3], "n_items": first["n_items"],
            "n_clusters": first["n_clusters"], "values": [by_metric.get(m) for m in metrics],
            "mdd": (first.get("power") or {}).get("mdd"),
            "warning": merged_warnings(by_metric, metrics)}


def merged_warnings(intervals: dict[str, Any], metrics: list[str] | tuple[str, ...]) -> str:
    """One line for a table row: a reason every metric shares ("only 6 patients") once, the others per metric."""
    reasons = {m: intervals[m]["warning"].split("; ") for m in metrics
               if isinstance(intervals.get(m), dict) and intervals[m].get("warning")}
    if not reasons:
        return ""
    shared = [r for r in next(iter(reasons.values())) if all(r in rs for rs in reasons.values())]
    own = [f"{m}: {r}" for m, rs in reasons.items() for r in rs if r not in shared]
    return "; ".join(shared + own)


def _png(fig: Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _cell_plot(report: dict[str, Any]) -> Figure:
    labels = [k for k, v in report["paper_row"].items() if v is not None]
    fig = Figure(figsize=(9, 3.6))
    ax = fig.subplots()
    if labels:
        cells = [report["paper_row"][k] for k in labels]
        pts = np.array([100 * c["point"] for c in cells])
        err = np.array([[100 * (c["point"] - (c["low"] if c["low"] is not None else c["point"])),
                         100 * ((c["high"] if c["high"] is not None else c["point"]) - c["point"])] for c in cells]).T
        # a percentile interval may sit just off the point (float32 totals, skewed resamples): bars need >= 0
        err = np.clip(err, 0, None)
        colors = ["#c0504d" if c["warning"] else "#4f81bd" for c in cells]
        ax.bar(labels, pts, yerr=err, capsize=4, color=colors)
    ax.set_ylim(0, 100)
    ax.set_ylabel("score (%)")
    ax.set_title(f"{report['model']}: accuracy per cell, 95% intervals over {report['clustering']['unit']} "
                 f"(red = small-subset warning)", fontsize=9)
    return fig


def _confusion_plot(clin: dict[str, Any]) -> Figure:
    conf = np.array(clin["confusion"])
    fig = Figure(figsize=(3.4, 3.0))
    ax = fig.subplots()
    ax.imshow(conf, cmap="Blues")
    ticks = clin.get("levels") or ["neg", "pos"]
    ax.set_xticks(range(len(ticks)), [f"{t:g}" if isinstance(t, float) else str(t) for t in ticks], fontsize=7)
    ax.set_yticks(range(len(ticks)), [f"{t:g}" if isinstance(t, float) else str(t) for t in ticks], fontsize=7)
    for (i, j), v in np.ndenumerate(conf):
        ax.text(j, i, str(v), ha="center", va="center", fontsize=7,
                color="white" if v > conf.max() / 2 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("truth")
    ax.set_title(clin["target"], fontsize=9)
    return fig


def _reliability_plot(calibration: dict[str, Any]) -> Figure:
    bins = calibration["bins"]
    fig, ax = _binned_calibration(bins, (3.6, 3.2), "probability of the top option", "fraction right")
    for b in bins:
        ax.annotate(str(b["n"]), (b["mean_score"], b["observed"]), fontsize=6, xytext=(3, -8),
                    textcoords="offset points")
    ax.set_title(f"reliability of option scores (ECE {calibration['ece']['point']:.3f})", fontsize=9)
    return fig


def _calibration_plot(clin: dict[str, Any]) -> Figure:
    fig, ax = _binned_calibration(clin["calibration"], (3.4, 3.0), "mean predicted probability",
                                  "observed positive fraction")
    ax.set_title(f"calibration: {clin['target']}", fontsize=9)
    return fig


def _binned_calibration(bins: list[dict[str, Any]], size: tuple[float, float], xlabel: str,
                        ylabel: str) -> tuple[Figure, Any]:
    """Observed fraction against mean score per bin, over the diagonal, on the unit square."""
    fig = Figure(figsize=size)
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], "--", color="grey", linewidth=1)
    ax.plot([b["mean_score"] for b in bins], [b["observed"] for b in bins], "o-")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    return fig, ax
