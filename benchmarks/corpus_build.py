"""Corpus build throughput: images/s on a synthetic mammography source (breastgpt.synth, CBIS-DDSM layout).

Compares, in the same run: a naive single-process loop (adapter → normalise_media → templates, no state, no
manifest, no PHI gate) against `build_corpus` at 1 and 2 workers (per-item state, atomic writes, PHI gate,
Parquet, manifest), plus the unchanged re-run (zero work). Writes benchmarks/results/corpus_build.json.

usage: python benchmarks/corpus_build.py [--patients 40] [--source cbis_ddsm]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

from breastgpt.corpus.build import BuildConfig, SourceSpec, build_corpus
from breastgpt.corpus.normalise import normalise_media
from breastgpt.corpus.sources.base import SourceSample, get_adapter
from breastgpt.preprocessing import Preprocessing
from breastgpt.corpus.records import MediaRef
from breastgpt.corpus.templates import SampleView, load_templates, render_sample
from breastgpt.synth.cohort import generate

RESULTS = Path(__file__).resolve().parent / "results" / "corpus_build.json"


def naive_loop(source: str, root: Path, out: Path) -> tuple[int, int, float]:
    start = time.perf_counter()
    samples = records = 0
    ts = load_templates()
    for sample in get_adapter(source).discover(root):
        if not isinstance(sample, SourceSample):
            continue
        media = normalise_media(sample, out, limits=Preprocessing())
        view = SampleView(sample.source, sample.sample_id, "P", "S", sample.modality, media.kind, "train",
                          [MediaRef(p, h, media.kind) for p, h in zip(media.paths, media.sha256s)],
                          sample.labels, sample.report, media.boxes_norm1000)
        records += len(render_sample(view, ts))
        samples += 1
    return samples, records, time.perf_counter() - start


def timed_build(source: str, root: Path, out: Path, workers: int) -> tuple[object, float]:
    config = BuildConfig(out=out, sources=(SourceSpec(source, root),), workers=workers)
    start = time.perf_counter()
    summary = build_corpus(config)
    return summary, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--patients", type=int, default=40)
    parser.add_argument("--source", default="cbis_ddsm")
    args = parser.parse_args()
    os.environ.setdefault("BREASTGPT_DEID_SECRET", "benchmark-secret-0123456789")
    work = Path(tempfile.mkdtemp(prefix="corpus_bench_"))
    try:
        root = generate(work / "synth", patients=args.patients, sources=[args.source], seed=0)[args.source]
        n, n_records, naive_s = naive_loop(args.source, root, work / "naive")
        runs = {}
        for workers in (1, 2):
            summary, seconds = timed_build(args.source, root, work / f"build{workers}", workers)
            runs[f"build_{workers}_workers"] = {"images": summary.processed, "records": summary.records,
                                                "seconds": round(seconds, 3),
                                                "images_per_s": round(summary.processed / seconds, 2),
                                                "ratio_to_naive": round((summary.processed / seconds) / (n / naive_s), 3)}
        rerun, rerun_s = timed_build(args.source, root, work / "build1", 1)
        result = {
            "benchmark": "corpus_build", "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "machine": {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count()},
            "source": args.source, "patients": args.patients,
            "naive_loop": {"images": n, "records": n_records, "seconds": round(naive_s, 3),
                           "images_per_s": round(n / naive_s, 2)},
            **runs,
            "unchanged_rerun": {"work_done": rerun.processed, "reused": rerun.reused, "seconds": round(rerun_s, 3)},
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    tmp = RESULTS.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(tmp, RESULTS)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
