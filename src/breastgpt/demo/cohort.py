"""Demo stages from pixels to a corpus: synthetic cohort in each source's own layout → corpus build → leakage
audit → the demo's task set → slide tile features."""

from __future__ import annotations

import json
import os
from collections import Counter
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from breastgpt.artifacts import ManifestError, atomic_write_text
from breastgpt.demo.state import load_done, save_done, source_digest, stage_key

# The synthetic corpus is pseudonymised with a fixed, public demo key: patient keys, and with them the
# patient-level splits, are then the same on every run and machine. Never use it for real data.
DEMO_CORPUS_SECRET = "breastgpt-demo-synthetic-cohort-only"
_SECRET_ENV = "BREASTGPT_DEMO_CORPUS_SECRET"


def stage_cohort(ctx: Any) -> dict[str, Any]:
    """Synthetic patients for every demo source, each source in its public dataset's on-disk layout."""
    from breastgpt.synth.cohort import generate

    s, out = ctx.settings, ctx.out / "cohort"
    key = stage_key("cohort", s.sources, s.patients, s.seed, source_digest("breastgpt.synth"))
    done = load_done(ctx.out, "cohort", key)
    if done is None:
        with ctx.progress() as progress:
            task = progress.add_task("synthesizing sources", total=len(s.sources))
            generate(out, s.patients, list(s.sources), seed=s.seed, progress=lambda _: progress.advance(task),
                     workers=max(1, min(2, os.cpu_count() or 1)))
        truths = sorted((out / ".truth").glob("*.json"))
        samples = {p.stem: len(json.loads(p.read_text())) for p in truths}
        done = {"sources": len(s.sources), "patients": s.patients * len(s.sources), "samples": sum(samples.values())}
        save_done(ctx.out, "cohort", key, [out / "synth_manifest.json", *truths], done)
    ctx.state["cohort"] = out
    return done


@contextmanager
def _demo_secret() -> Iterator[str]:
    previous = os.environ.get(_SECRET_ENV)
    os.environ[_SECRET_ENV] = DEMO_CORPUS_SECRET
    try:
        yield _SECRET_ENV
    finally:
        if previous is None:
            os.environ.pop(_SECRET_ENV, None)
        else:
            os.environ[_SECRET_ENV] = previous


def build_config(ctx: Any) -> Any:
    from breastgpt.corpus.build import BuildConfig, SourceSpec
    from breastgpt.preprocessing import Preprocessing
    from breastgpt.corpus.splits import SplitConfig

    s = ctx.settings
    # CT in the wide window: the task set asks lung findings (emphysema is invisible in a soft-tissue window,
    # where every lung voxel is black) beside mediastinal ones (docs/notes/2026-12-demo-research.md).
    limits = Preprocessing(image_long_side=s.image_long_side, volume_inplane=s.volume_inplane,
                           volume_depth=s.volume_depth, ct_preset=s.ct_window)
    sources = tuple(SourceSpec(name, ctx.state["cohort"] / name) for name in s.sources)
    # The synthetic cohort's "official" test splits are drawn by the generator, not by any dataset: the demo
    # splits every source by the patient hash alone (70/30), which its documented figures were measured with.
    split = SplitConfig(0.7, 0.0, 0.3, salt="breastgpt-demo", honour_dataset_test=False)
    return BuildConfig(out=ctx.out / "corpus", sources=sources, workers=max(1, min(2, os.cpu_count() or 1)),
                       seed=s.seed, secret_env=_SECRET_ENV, split=split,
                       progress=True, limits=limits, answer_style="text", media_position=s.media_position)


def stage_corpus(ctx: Any) -> dict[str, Any]:
    """Corpus build: de-identified keys, normalised media, every applicable template, patient-level splits."""
    from breastgpt.corpus.build import build_corpus, verify_build

    config = build_config(ctx)
    with _demo_secret():
        summary = build_corpus(config)
    problems = verify_build(config.out)
    if problems:
        raise ManifestError(f"{config.out}: the corpus does not verify: {problems[:3]}; delete the folder and "
                            "run the demo again")
    ctx.state["corpus"] = config.out
    return {"records": summary.records, "items_built": summary.processed, "items_reused": summary.reused,
            "quarantined": summary.quarantined, **{f"{k}_records": v for k, v in summary.splits.items() if v}}


def stage_audit(ctx: Any) -> dict[str, Any]:
    """Leakage audit before any evaluation: shared patients, identical and near-duplicate media, repeated text."""
    from breastgpt.corpus.audit import audit_corpus, write_report

    report = audit_corpus(ctx.state["corpus"])
    write_report(report, ctx.out / "audit")
    if report.leakage:
        raise RuntimeError(f"leakage between train and bench: {report.to_json()['counts']} (see audit/)")
    counts = {k: v for k, v in report.to_json()["counts"].items() if v}
    return {"leakage": False, "media_checked": report.n_media, **({"findings": counts} if counts else {})}


def stage_task_set(ctx: Any) -> dict[str, Any]:
    """The demo's task set: closed questions whose answer the synthetic image determines (`demo/tasks.py`), and
    the pathway records linking each linked patient's stages."""
    from breastgpt.corpus.pathway import is_pathway
    from breastgpt.corpus.records import iter_jsonl
    from breastgpt.demo.tasks import (PATHWAY_ONLY_SOURCES, conversations, image_dependent_templates, pathway_rows,
                                      select_records)

    templates = image_dependent_templates()
    records = list(iter_jsonl(ctx.state["corpus"] / "records.jsonl"))
    single = [r for r in select_records(records, templates) if r["source"] not in PATHWAY_ONLY_SOURCES]
    pathway = [r for r in records if is_pathway(r)]
    chosen = single + pathway
    folder = ctx.out / "task_set"
    figures: dict[str, Any] = {"templates": len(templates)}
    for split in ("train", "bench"):
        rows = [r for r in chosen if r["split"] == split]
        atomic_write_text(folder / f"{split}.jsonl", "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))
        figures[split] = len(rows)
    train = conversations((r for r in single if r["split"] == "train"), ctx.settings.seed,
                          group=ctx.settings.group_turns, max_turns=ctx.settings.max_turns,
                          variants=ctx.settings.train_variants)
    train += pathway_rows(r for r in pathway if r["split"] == "train")
    atomic_write_text(folder / "train_conversations.jsonl", "".join(json.dumps(r, sort_keys=True) + "\n" for r in train))
    figures["train_conversations"] = len(train)
    figures["bench_by_modality"] = dict(sorted(Counter(r["modality"] for r in chosen if r["split"] == "bench").items()))
    figures["bench_patients"] = len({(r["source"], r["patient_key"]) for r in chosen if r["split"] == "bench"})
    if pathway:
        figures["pathway"] = {split: sum(1 for r in pathway if r["split"] == split) for split in ("train", "bench")}
    atomic_write_text(folder / "templates.txt", "".join(f"{t}\n" for t in templates))
    ctx.state["task_set"] = folder
    return figures


def slide_jobs(ctx: Any) -> list[tuple[Path, str, float | None]]:
    """(slide file, keyed feature id the corpus records name, µm/px override) for every pathology sample."""
    from breastgpt.corpus.build import SourceSpec, load_pseudonymizer
    from breastgpt.corpus.slide_jobs import slide_jobs as corpus_slide_jobs

    with _demo_secret() as secret_env:
        pseudo = load_pseudonymizer(secret_env)
    sources = [SourceSpec(name, ctx.state["cohort"] / name) for name in ctx.settings.sources]
    return [(job.path, job.feature_id, job.mpp) for job in corpus_slide_jobs(sources, pseudo)]


def stage_slides(ctx: Any) -> dict[str, Any]:
    """Tile features for every slide: tissue mask, tiles at 20x, the weight-free `stain-texture-v1` encoder."""
    from breastgpt.pathology.encoders import build_encoder
    from breastgpt.pathology.extract import ExtractConfig, extract_one
    from breastgpt.pathology.tiling import TilingConfig
    from breastgpt.pathology.tissue import TissueConfig

    s, out = ctx.settings, ctx.state["corpus"]
    jobs = slide_jobs(ctx)
    encoder = build_encoder("stain-texture-v1")
    statuses: Counter[str] = Counter()
    tiles = []
    with ctx.progress() as progress:
        task = progress.add_task("slide features", total=len(jobs))
        for path, feature_id, mpp in jobs:
            # The synthetic slides are 0.38 mm wide, so tissue pieces are far below the default 0.05 mm²
            # debris floor (tuned for real, centimetre-wide sections): the floor is scaled down with them.
            config = ExtractConfig(encoder="stain-texture-v1", mpp=mpp, batch_size=64, workers=0,
                                   tiling=TilingConfig(target_mpp=0.5, tile_size=s.slide_tile_px),
                                   tissue=TissueConfig(min_component_um2=2_000.0),
                                   thumbnail_max_side=s.thumbnail_px)
            outcome = extract_one(path, feature_id, out, config, encoder)
            statuses[outcome.status] += 1
            tiles.append(outcome.n_tiles)
            progress.advance(task)
    if statuses.get("quarantined"):
        raise RuntimeError(f"{statuses['quarantined']} slide(s) could not be read; see {out / 'state'}")
    if tiles and min(tiles) == 0:
        raise RuntimeError(f"{tiles.count(0)} slide(s) gave no tissue tiles; see the QC overlays in {out / 'thumbnails'}")
    return {"slides": len(jobs), "extracted": statuses.get("done", 0), "reused": statuses.get("skipped", 0),
            "tiles_per_slide": f"{min(tiles)}-{max(tiles)}" if tiles else "0", "encoder": "stain-texture-v1 (86-d)"}


__all__ = ["DEMO_CORPUS_SECRET", "build_config", "slide_jobs", "stage_audit", "stage_cohort", "stage_corpus",
           "stage_slides", "stage_task_set"]
