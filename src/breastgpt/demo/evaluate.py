"""Demo stages that measure: the benchmark (with shortcut ablations) for both models, then the learning
criterion, the slide-branch vs thumbnail comparison and the pathway items with and without the earlier stages'
media, every figure with a patient-clustered 95 % interval."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from breastgpt.demo.state import forget_other_runs, manifest_sha
from breastgpt.demo.training import MODELS

# Issue 9's criterion on the image-dependent closed templates.
MIN_OVER_CHANCE = 0.20
MIN_OVER_NO_IMAGE = 0.15
MODALITIES = ("mammography", "ultrasound", "mri", "ct", "pathology")


def stage_bench(ctx: Any) -> dict[str, Any]:
    """Both models on the held-out task set, plus the no-image and shuffled-image ablations (resumable)."""
    from breastgpt.bench.runner import RunConfig, run_bench

    s, figures = ctx.settings, {}
    for name in _trained(ctx):
        forget_other_runs(ctx.out / "bench" / name, manifest_sha(ctx.out, f"train {name}"))
        config = RunConfig(bench=ctx.state["task_set"] / "bench.jsonl", model=f"local:{ctx.state[f'model:{name}']}",
                           out=ctx.out / "bench" / name, ablations=_ablations(s, name), corpus_root=ctx.state["corpus"],
                           max_new_tokens=answer_budget(ctx.state["task_set"] / "bench.jsonl", ctx.state[f"model:{name}"]),
                           seed=s.seed, batch_size=s.bench_batch)
        with ctx.progress() as progress:
            tasks: dict[str, Any] = {}

            def report(phase: str, done: int, total: int, tasks: dict[str, Any] = tasks, progress: Any = progress,
                       name: str = name) -> None:
                if phase not in tasks:
                    tasks[phase] = progress.add_task(f"bench {name}: {phase}", total=total)
                progress.update(tasks[phase], completed=done)

            manifest = run_bench(config, progress=report)
        figures[name] = {v: c.get("asked", c) if isinstance(c, dict) else c
                         for v, c in manifest.get("counts", {}).items()} or "done"
        ctx.state[f"bench:{name}"] = config.out
    return figures


def answer_budget(bench: Path, checkpoint: Path, margin: int = 4) -> int:
    """Tokens enough for the longest reference answer of the task set, plus `margin`.

    Answers are scored by their text, so a limit shorter than an option cuts a right answer into a wrong one
    (the pathway options run to 12-14 tokens); a limit sized to the task set keeps generation short without that."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(checkpoint))
    longest = 0
    with open(bench, encoding="utf-8") as handle:
        for line in handle:
            answer = [m["content"] for m in json.loads(line)["messages"] if m["role"] == "assistant"][-1]
            longest = max(longest, len(tokenizer(answer, add_special_tokens=False)["input_ids"]))
    return longest + margin


def _ablations(settings: Any, name: str) -> tuple[str, ...]:
    """The shortcut ablations for BreastGPT; the comparator is compared on the full run only (paired)."""
    return tuple(settings.ablations) if name == "breastgpt" else ()


def _trained(ctx: Any) -> list[str]:
    return [name for name in MODELS if f"model:{name}" in ctx.state]


# ------------------------------------------------------------------------------------------------- scoring


@dataclass
class Scored:
    """Per-item correctness of one model: full run and each ablation, aligned to the bench items."""

    items: list[Any]
    correct: dict[str, np.ndarray]  # variant -> 1/0 per item (NaN where the variant did not run)
    prior: np.ndarray | None = None  # 1/0 per item: would the template's most frequent training answer be right?


def prior_correct(items: list[Any], train_rows: list[dict[str, Any]]) -> np.ndarray:
    """Per bench item: 1 when its template's training prior (`bench.baselines`: the most frequent training answer,
    ties broken by sorted text) is its answer. A model that ignores the image can reach this without reading
    anything; it is the baseline every image-dependent figure should be read against."""
    from breastgpt.bench.baselines import prior_scores, template_priors
    from breastgpt.bench.items import item_from_record

    train = [item_from_record(row, f"train record {i}") for i, row in enumerate(train_rows)]
    return np.nan_to_num(prior_scores(items, template_priors(train))["correct"].to_numpy(float), nan=0.0)


def score_model(items: list[Any], run_dir: Path) -> Scored:
    from breastgpt.bench.scoring import ScoreConfig, load_run, score_responses

    df = score_responses(items, load_run(run_dir, items), ScoreConfig(embeddings=False))
    ids = [it.id for it in items]
    correct = {}
    for variant in sorted(set(df["variant"])):
        sub = df[df["variant"] == variant].set_index("item_id")["correct"]
        correct[variant] = sub.reindex(ids).to_numpy(float)
    return Scored(items, correct)


def _masks(items: list[Any]) -> dict[str, np.ndarray]:
    modality = np.array([it.modality for it in items])
    masks = {"all image-dependent": np.ones(len(items), bool)}
    masks.update({m: modality == m for m in MODALITIES if (modality == m).any()})
    return masks


def learning_table(scored: Scored, n_resamples: int, seed: int) -> list[dict[str, Any]]:
    """Accuracy, chance and every ablation per item set, with intervals from one shared patient resampler."""
    from breastgpt.bench.statistics import ClusterResampler, MetricSpec

    items = scored.items
    chance = np.array([1.0 / len(it.options) for it in items])
    rs = ClusterResampler(np.array([it.patient_key for it in items]), n_resamples=n_resamples, seed=seed)
    rows = []
    for where, mask in _masks(items).items():
        specs = {variant: MetricSpec.mean(values, mask) for variant, values in scored.correct.items()}
        specs.update({f"full-{v}": MetricSpec.mean_difference(scored.correct["full"], values, mask)
                      for v, values in scored.correct.items() if v != "full"})
        if scored.prior is not None:
            specs["prior"] = MetricSpec.mean(scored.prior, mask)
        intervals = rs.bootstrap_batch(specs)
        rows.append({"set": where, "n_items": int(mask.sum()),
                     "n_patients": len({it.patient_key for it, m in zip(items, mask) if m}),
                     "chance": float(chance[mask].mean()),
                     **{k: iv.as_dict() for k, iv in intervals.items()}})
    return rows


def template_table(scored: Scored, n_resamples: int, seed: int) -> list[dict[str, Any]]:
    """Per template: accuracy of every variant and of the training prior, with patient-clustered intervals.

    This is the table that tells reading from guessing: a template whose accuracy equals its prior and its
    shuffled-image accuracy is answered from the wording, whatever the overall figure says."""
    from breastgpt.bench.statistics import ClusterResampler, MetricSpec

    items = scored.items
    rs = ClusterResampler(np.array([it.patient_key for it in items]), n_resamples=n_resamples, seed=seed)
    template = np.array([it.template_id for it in items])
    specs, where = {}, {}
    for t in sorted(set(template)):
        mask = template == t
        where[t] = (items[int(np.argmax(mask))].modality, int(mask.sum()))
        specs.update({f"{t}|{v}": MetricSpec.mean(values, mask) for v, values in scored.correct.items()})
        if scored.prior is not None:
            specs[f"{t}|prior"] = MetricSpec.mean(scored.prior, mask)
    intervals = rs.bootstrap_batch(specs)
    rows = []
    for t, (modality, n) in where.items():
        row: dict[str, Any] = {"template": t, "modality": modality, "n_items": n}
        row.update({key.split("|", 1)[1]: iv.as_dict() for key, iv in intervals.items() if key.split("|", 1)[0] == t})
        rows.append(row)
    return rows


def criterion(row: dict[str, Any]) -> dict[str, Any]:
    """Issue 9: accuracy ≥ chance + 20 points and ≥ no-image + 15 points, and the 95 % intervals of the full
    and the no-image accuracy do not overlap."""
    full, no_image = row["full"], row.get("no_image")
    checks = {"over_chance": full["point"] - row["chance"] >= MIN_OVER_CHANCE}
    if no_image is not None:
        checks["over_no_image"] = full["point"] - no_image["point"] >= MIN_OVER_NO_IMAGE
        checks["intervals_separate"] = full["low"] > no_image["high"]
    return {"passed": all(checks.values()) and no_image is not None, **checks}


def slide_comparison(a: Scored, b: Scored, n_resamples: int, seed: int) -> list[dict[str, Any]]:
    """Paired accuracy difference BreastGPT − thumbnail comparator on the same items (same resampled patients).

    Rows: all items; the items other than pathology ("not pathology"), which both models read through the same
    route, so their difference is that of the two trainings alone (their own encoder pre-training, data order,
    float rounding) and says how much of the all-items difference is not the slide branch's; pathology, where the
    routes differ; and each pathology template."""
    from breastgpt.bench.statistics import ClusterResampler, MetricSpec

    items = a.items
    rs = ClusterResampler(np.array([it.patient_key for it in items]), n_resamples=n_resamples, seed=seed)
    template = np.array([it.template_id for it in items])
    pathology = np.array([it.modality == "pathology" for it in items], bool)
    masks = {"all image-dependent": np.ones(len(items), bool)}
    if pathology.any():
        if not pathology.all():
            masks["not pathology"] = ~pathology
        masks["pathology"] = pathology
        masks.update({t: template == t for t in sorted(set(template[pathology]))})
    rows = []
    for where, mask in masks.items():
        iv = rs.bootstrap_batch({
            "difference": MetricSpec.mean_difference(a.correct["full"], b.correct["full"], mask),
            "breastgpt": MetricSpec.mean(a.correct["full"], mask), "thumbnail": MetricSpec.mean(b.correct["full"], mask)})
        rows.append({"set": where, "n_items": int(mask.sum()), **{k: v.as_dict() for k, v in iv.items()}})
    return rows


def split_pathway(scored: Scored) -> tuple[Scored, Scored | None]:
    """(the image-dependent single-question items, the pathway items or None): the criterion reads the first."""
    from breastgpt.corpus.pathway import PATHWAY_PREFIX

    pathway = np.array([it.template_id.startswith(PATHWAY_PREFIX) for it in scored.items], bool)

    def part(mask: np.ndarray) -> Scored:
        # a variant that asked none of these items (no-prior-media on single questions) has no figure here
        correct = {v: c[mask] for v, c in scored.correct.items() if v == "full" or np.isfinite(c[mask]).any()}
        return Scored([it for it, m in zip(scored.items, mask) if m], correct,
                      None if scored.prior is None else scored.prior[mask])

    return part(~pathway), (part(pathway) if pathway.any() else None)


def pathway_table(scored: Scored, n_resamples: int, seed: int) -> list[dict[str, Any]]:
    """Pathway items (several stages in one conversation): accuracy with every earlier stage's media and without
    them (`no_prior_media`), and the paired difference, overall and per template, patient-clustered intervals."""
    from breastgpt.bench.statistics import ClusterResampler, MetricSpec

    items = scored.items
    rs = ClusterResampler(np.array([it.patient_key for it in items]), n_resamples=n_resamples, seed=seed)
    template = np.array([it.template_id for it in items])
    masks = {"all pathway items": np.ones(len(items), bool), **{t: template == t for t in sorted(set(template))}}
    full, without = scored.correct["full"], scored.correct.get("no_prior_media")
    rows = []
    for where, mask in masks.items():
        specs = {"full": MetricSpec.mean(full, mask)}
        if without is not None and np.isfinite(without[mask]).any():
            specs["no_prior_media"] = MetricSpec.mean(without, mask)
            specs["difference"] = MetricSpec.mean_difference(full, without, mask)
        rows.append({"set": where, "n_items": int(mask.sum()),
                     "n_patients": len({it.patient_key for it, m in zip(items, mask) if m}),
                     "chance": float(np.mean([1.0 / len(it.options) for it, m in zip(items, mask) if m])),
                     **{k: iv.as_dict() for k, iv in rs.bootstrap_batch(specs).items()}})
    return rows


def stage_score(ctx: Any) -> dict[str, Any]:
    """The learning criterion (image-dependent set), the slide-branch vs thumbnail paired difference, and the
    pathway items with and without the earlier stages' media."""
    from breastgpt.bench.items import item_from_record
    from breastgpt.corpus.records import iter_jsonl

    s = ctx.settings
    items = [item_from_record(row, f"bench:{i}") for i, row in enumerate(iter_jsonl(ctx.state["task_set"] / "bench.jsonl"))]
    train_rows = list(iter_jsonl(ctx.state["task_set"] / "train.jsonl"))
    scored, pathway = {}, None
    for name in _trained(ctx):
        scored[name], pathway_part = split_pathway(score_model(items, ctx.state[f"bench:{name}"]))
        pathway = pathway_part if name == "breastgpt" else pathway
    items = scored["breastgpt"].items
    results: dict[str, Any] = {"models": {}}
    if pathway is not None:
        results["pathway"] = pathway_table(pathway, s.bootstrap, s.seed)
    for name, sc in scored.items():
        sc.prior = prior_correct(items, train_rows)
        table = learning_table(sc, s.bootstrap, s.seed)
        # The criterion needs the no-image ablation, which only BreastGPT is run with.
        results["models"][name] = {"table": table, "criterion": criterion(table[0]) if "no_image" in table[0] else None,
                                   "templates": template_table(sc, s.bootstrap, s.seed)}
    if len(scored) == 2:
        results["slide_vs_thumbnail"] = slide_comparison(scored["breastgpt"], scored["thumbnail"], s.bootstrap, s.seed)
    ctx.state["results"] = results
    main = results["models"]["breastgpt"]
    row = main["table"][0]
    figures = {"accuracy": _pct(row["full"]), "chance": f"{100 * row['chance']:.1f}", "prior": _pct(row.get("prior")),
               "no_image": _pct(row.get("no_image")), "criterion": "passed" if main["criterion"]["passed"] else "NOT met"}
    if "slide_vs_thumbnail" in results:
        path = next(r for r in results["slide_vs_thumbnail"] if r["set"] == "pathology")
        figures["pathology_slide_minus_thumbnail"] = _pct(path["difference"], signed=True)
    if "pathway" in results:
        figures["pathway"] = _pct(results["pathway"][0]["full"])
        figures["pathway_no_prior_media"] = _pct(results["pathway"][0].get("no_prior_media"))
    return figures


def _pct(iv: dict[str, Any] | None, signed: bool = False) -> str:
    if not iv:
        return "-"
    fmt = "{:+.1f}" if signed else "{:.1f}"
    return f"{fmt.format(100 * iv['point'])} [{fmt.format(100 * iv['low'])}, {fmt.format(100 * iv['high'])}]"


__all__ = ["MIN_OVER_CHANCE", "MIN_OVER_NO_IMAGE", "criterion", "learning_table", "pathway_table", "prior_correct",
           "score_model", "slide_comparison", "split_pathway", "stage_bench", "stage_score", "template_table"]
