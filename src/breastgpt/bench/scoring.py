"""Score a run directory of saved responses against bench items, offline.

A run directory holds what one model said: `responses.jsonl` (and optionally more `responses*.jsonl` files, e.g.
one per ablation variant) with lines {item_id, response, model, variant, params, option_order, score}, and
optionally one `judgements_<judge>.jsonl` per judge from `judges.py`, and the runner's `run.json` (the candidate's
model family for the judge check). Scoring reads only these files and the bench items: it never
needs the model, so a run can be re-scored at any time (e.g. after a parser fix).

Per-response scores land in a pandas DataFrame (one row per item × variant); `aggregate.py` turns it into
intervals, tables and shortcut gaps.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from breastgpt.bench.clusters import cluster_items
from breastgpt.config import ConfigError, StrictConfig
from breastgpt.bench.items import BenchDataError, BenchItem, SavedResponse, load_responses
from breastgpt.bench.judge_controls import FamilyEvidence, candidate_family
from breastgpt.bench.judges import JUDGEMENT_GLOB, JudgeScore, load_judgements
from breastgpt.bench.metric_registry import open_options, response_columns, text_scored
from breastgpt.bench.metrics import iou
from breastgpt.bench.parsing import parse_box, parse_choice_detailed
from breastgpt.bench.embedding_cache import embed_with_cache, open_run_cache
from breastgpt.bench.text_metrics import cosine_rows, embed_texts, packaged_embedding_model_path


@dataclass(frozen=True)
class ScoreConfig(StrictConfig):
    section = "score config"

    n_resamples: int = 10_000
    seed: int = 0
    level: float = 0.95
    embeddings: bool = True
    open_metric: str = "auto"  # auto | an open-ended metric's option (metric_registry.open_options)
    primary_judge: str | None = None  # judge model whose scores feed the tables (default: the first one seen)
    # a shortcut flag is raised when the lower end of the paired 95 % interval of (model − baseline) is at or below
    # this gap (0: the model is not shown to beat the baseline at all; baselines.py)
    shortcut_min_gap: float = 0.0

    def validate(self) -> None:
        if self.open_metric not in ("auto", *open_options()):
            raise ConfigError(f"open_metric={self.open_metric!r} is not one of {['auto', *open_options()]}; "
                              "use one of them")
        if self.n_resamples < 1 or not 0 < self.level < 1:
            raise ConfigError("n_resamples must be >= 1 and level in (0, 1)")


@dataclass
class RunData:
    """Everything read from one run directory."""

    run_dir: Path
    model: str
    responses: list[SavedResponse]
    judgements: list[JudgeScore]
    files: list[Path]
    candidate_family: FamilyEvidence  # for the same-family judge check (judge_controls.py)


def load_run(run_dir: Path, items: list[BenchItem]) -> RunData:
    """Read and cross-check a run directory: one model, known item ids, one response per item and variant."""
    run_dir = Path(run_dir)
    files = sorted(run_dir.glob("responses*.jsonl"))
    if not files:
        raise BenchDataError(f"{run_dir}: no responses*.jsonl; a run directory holds the saved model answers")
    responses = [r for f in files for r in load_responses(f)]
    models = sorted({r.model for r in responses})
    if len(models) != 1:
        raise BenchDataError(f"{run_dir}: responses from {len(models)} models {models}; use one run dir per model")
    known = {it.id for it in items}
    seen: set[tuple[str, str]] = set()
    for r in responses:
        if r.item_id not in known:
            raise BenchDataError(f"{run_dir}: response for unknown item {r.item_id!r}; wrong bench file?")
        if (r.item_id, r.variant) in seen:
            raise BenchDataError(f"{run_dir}: two {r.variant} responses for item {r.item_id!r}")
        seen.add((r.item_id, r.variant))
    judge_files = sorted(run_dir.glob(JUDGEMENT_GLOB))
    judgements = _judgements(judge_files)
    return RunData(run_dir, models[0], responses, judgements, files + judge_files,
                   candidate_family(run_dir, models[0]))


def _judgements(paths: list[Path]) -> list[JudgeScore]:
    """Every judge file of a run; one judge scoring one item twice (two files of one judge) is an error."""
    out: list[JudgeScore] = []
    seen: dict[tuple[str, str], Path] = {}
    for path in paths:
        for j in load_judgements(path):
            key = (j.judge_model, j.item_id)
            if key in seen:
                raise BenchDataError(f"{path}: judge {j.judge_model!r} scored item {j.item_id!r} again (also in "
                                     f"{seen[key].name}); keep one judgement file per judge")
            seen[key] = path
            out.append(j)
    return out


# ------------------------------------------------------------------------------------------ per-item scores

_ITEM_COLUMNS = ("item_id", "variant", "model", "patient_key", "cluster", "cluster_level", "stage", "modality",
                 "task_family", "source", "partition", "template_id", "provenance", "status", "pred_index")


def frame_columns() -> tuple[str, ...]:
    """Columns of the scored frame: the item's, every registered per-response metric's, the option scores'."""
    return (*_ITEM_COLUMNS, *response_columns(), "score", "confidence")


def score_responses(items: list[BenchItem], run: RunData, config: ScoreConfig) -> pd.DataFrame:
    """One row per (item, variant). Items with no full-variant response get a 'missing' row scored wrong."""
    by_key = {(r.item_id, r.variant): r for r in run.responses}
    judge = _judge_lookup(run.judgements, config.primary_judge)
    clustering = cluster_items(items)
    rows = []
    for variant in sorted({r.variant for r in run.responses} | {"full"}):
        for it, key, level in zip(items, clustering.keys, clustering.levels):
            resp = by_key.get((it.id, variant))
            if resp is None and variant != "full":
                continue  # ablations cover a subset by design
            rows.append({**_score_one(it, resp, variant, run.model, judge), "cluster": key, "cluster_level": level})
    df = pd.DataFrame(rows, columns=list(frame_columns()))
    if config.embeddings:
        _add_embeddings(df, items, by_key, run.run_dir)
    return df


def _judge_lookup(judgements: list[JudgeScore], primary: str | None) -> dict[str, float]:
    if not judgements:
        return {}
    model = primary or judgements[0].judge_model
    return {j.item_id: (np.nan if j.normalised is None else j.normalised)
            for j in judgements if j.judge_model == model}


def _score_one(it: BenchItem, resp: SavedResponse | None, variant: str, model: str,
               judge: dict[str, float]) -> dict[str, Any]:
    row: dict[str, Any] = dict(
        item_id=it.id, variant=variant, model=model, patient_key=it.patient_key, stage=it.stage,
        modality=it.modality, task_family=it.task_family, source=it.source, partition=it.partition,
        template_id=it.template_id, provenance=it.answer_provenance, status="missing", pred_index=-1,
        **dict.fromkeys(response_columns(), np.nan),
        score=np.nan if resp is None or resp.score is None else resp.score, confidence=np.nan)
    text = "" if resp is None else resp.response
    if it.is_closed:
        _score_closed(row, it, resp, text)
    if it.box is not None and it.task_family == "grounding":  # a grounded caption is scored on its text only
        parsed = parse_box(text, 3 if len(it.box) == 6 else 2)
        row["iou"] = iou(parsed.box, it.box)
        row["hit"] = float(row["iou"] >= 0.5)
        row["status"] = parsed.status if resp is not None else "missing"
    for metric in text_scored():
        row[metric.column] = metric.score_text(it, text)
    if it.answer is not None:
        if variant == "full":
            row["judge"] = judge.get(it.id, np.nan)
        row["status"] = "answered" if resp is not None and text.strip() else ("missing" if resp is None else "empty")
    return row


def _score_closed(row: dict[str, Any], it: BenchItem, resp: SavedResponse | None, text: str) -> None:
    presented = list(it.options)
    order = resp.option_order if resp is not None else None
    if order is not None:
        if sorted(order) != list(range(len(it.options))):
            raise BenchDataError(f"item {it.id}: option_order {list(order)} is not a permutation of "
                                 f"{len(it.options)} options")
        presented = [it.options[i] for i in order]
    parsed = parse_choice_detailed(text, presented) if resp is not None else None
    original = None if parsed is None or parsed.index is None else (
        order[parsed.index] if order is not None else parsed.index)
    row["status"] = "missing" if parsed is None else parsed.status
    row["pred_index"] = -1 if original is None else original
    row["correct"] = float(original == it.answer_index)
    row["unparseable"] = float(original is None)
    if resp is not None and resp.option_probs is not None:
        _score_option_probs(row, it, resp.option_probs, order)


def _score_option_probs(row: dict[str, Any], it: BenchItem, presented: tuple[float, ...],
                        order: tuple[int, ...] | None) -> None:
    """Option scoring: the top option's probability and whether it is right (calibration), and the probability of
    the positive class of a clinical target (AUC) when the response gives no score of its own."""
    if len(presented) != len(it.options):
        raise BenchDataError(f"item {it.id}: {len(presented)} option probabilities for {len(it.options)} options")
    probs = np.zeros(len(it.options))
    for position, p in enumerate(presented):
        probs[order[position] if order is not None else position] = p
    total = probs.sum()
    if total <= 0:
        return
    probs = probs / total
    row["confidence"] = float(probs.max())
    row["option_correct"] = float(int(np.argmax(probs)) == it.answer_index)
    target = it.clinical_target
    if target is not None and not np.isfinite(row["score"]):
        row["score"] = float(sum(p for p, v in zip(probs, target.option_values) if target.is_positive(v)))


def _add_embeddings(df: pd.DataFrame, items: list[BenchItem], by_key: dict[tuple[str, str], SavedResponse],
                    run_dir: Path) -> None:
    refs = {it.id: it.answer for it in items if it.answer is not None}
    rows = [i for i, (iid, var) in enumerate(zip(df["item_id"], df["variant"])) if iid in refs]
    if not rows:
        return
    preds = [by_key[(df.at[i, "item_id"], df.at[i, "variant"])].response
             if (df.at[i, "item_id"], df.at[i, "variant"]) in by_key else "" for i in rows]
    # An empty or missing answer says nothing: it scores 0 rather than the similarity of "" to the reference.
    said = [k for k, p in enumerate(preds) if p.strip()]
    texts = [preds[k] for k in said] + [refs[df.at[rows[k], "item_id"]] for k in said]
    with open_run_cache(run_dir, packaged_embedding_model_path()) as cache:  # RUN_DIR/embeddings.sqlite
        emb, stats = embed_with_cache(texts, cache, embed_texts)
    cos = np.zeros(len(rows))
    if said:
        cos[said] = cosine_rows(emb[:len(said)], emb[len(said):])
    df.loc[rows, "embedding"] = cos
    df.attrs["embedding_cache"] = {**asdict(stats), "path": str(cache.path)}
