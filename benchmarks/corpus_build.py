"""Corpus build throughput against a naive loop, in the same run, on a synthetic CBIS-DDSM-layout source.

Contenders, each timed into a fresh output folder, rounds interleaved with the order rotated, medians reported:
- `naive`: what a user would write with the library's per-sample functions — the adapter's samples, then
  `resolve_boxes`, `normalise_media` and `render_sample` in a plain loop, PNG at PIL's default compression (level 6), no state,
  no manifest, no PHI gate;
- `build_1`, `build_2`: `build_corpus` at 1 and 2 workers (per-item state, atomic writes, PHI gate, Parquet,
  manifest), PNG at `normalise.PNG_COMPRESS_LEVEL`.
Then the unchanged re-run (zero work) of a finished build of `--rerun-patients` items (default 1,000), as seconds
per 1,000 items.

Output check: the decoded pixels of every image the build stored equal the naive loop's (PNG is lossless, only
the bytes differ), and both give the same number of records. Threads are pinned to 1 per process; the load
average is recorded and a result taken above the core count is marked noisy.

usage: python benchmarks/corpus_build.py [--patients 100] [--rounds 3] [--rerun-patients 1000] [--out FILE]
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from _common import load_record, time_interleaved, write_result  # noqa: E402
from breastgpt.corpus import normalise  # noqa: E402
from breastgpt.corpus.build import BuildConfig, SourceSpec, build_corpus  # noqa: E402
from breastgpt.corpus.records import MediaRef, read_records_jsonl  # noqa: E402
from breastgpt.corpus.sources.base import SourceSample, get_adapter  # noqa: E402
from breastgpt.corpus.sources.media import resolve_boxes  # noqa: E402
from breastgpt.corpus.templates import SampleView, load_templates, render_sample  # noqa: E402
from breastgpt.preprocessing import Preprocessing  # noqa: E402
from breastgpt.synth.cohort import generate  # noqa: E402

SOURCE = "cbis_ddsm"
PIL_DEFAULT_PNG_LEVEL = 6


def _pil_png(level: int):
    def encode(image: Image.Image) -> bytes:
        buffer = io.BytesIO()
        image.save(buffer, format="PNG", compress_level=level)
        return buffer.getvalue()
    return encode


@contextlib.contextmanager
def pil_png(level: int):
    """`normalise_media` writes PNG with PIL at `level` inside the block (this process only)."""
    saved, normalise._png = normalise._png, _pil_png(level)
    try:
        yield
    finally:
        normalise._png = saved


def naive_loop(root: Path, out: Path) -> tuple[int, int]:
    """(samples, records) of the plain loop, PNG written by PIL at its default level."""
    with pil_png(PIL_DEFAULT_PNG_LEVEL):
        samples = records = 0
        templates = load_templates()
        for sample in get_adapter(SOURCE).discover(root):
            if not isinstance(sample, SourceSample):
                continue
            sample = resolve_boxes(sample)
            media = normalise.normalise_media(sample, out, limits=Preprocessing())
            view = SampleView(sample.source, sample.sample_id, "P", "S", sample.modality, media.kind, "train",
                              [MediaRef(p, h, media.kind) for p, h in zip(media.paths, media.sha256s)],
                              sample.labels, sample.report, media.boxes_norm1000)
            records += len(render_sample(view, templates))
            samples += 1
        return samples, records


def build(root: Path, out: Path, workers: int):
    return build_corpus(BuildConfig(out=out, sources=(SourceSpec(SOURCE, root),), workers=workers, progress=False))


def fresh(folder: Path) -> Path:
    shutil.rmtree(folder, ignore_errors=True)
    return folder


def pixel_names(folder: Path) -> dict[str, str]:
    """Each stored PNG (path relative to the corpus) → sha256 and shape of its decoded pixels."""
    names = {}
    for path in sorted((folder / "media").rglob("*.png")):
        pixels = np.asarray(Image.open(path))
        names[str(path.relative_to(folder))] = f"{hashlib.sha256(pixels.tobytes()).hexdigest()}:{pixels.shape}"
    return names


def records_by_pixels(folder: Path, names: dict[str, str]) -> list[dict]:
    """The build's records with each media file named by its decoded pixels (`pixel_names`) instead of its bytes."""
    def rename(value):
        if isinstance(value, dict):
            return {k: None if k == "sha256" else rename(v) for k, v in value.items()}
        if isinstance(value, list):
            return [rename(v) for v in value]
        return names.get(value, value) if isinstance(value, str) else value

    return [rename(record.to_dict()) for record in read_records_jsonl(folder / "records.jsonl")]


def png_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in (folder / "media").rglob("*.png"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rerun-patients", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    os.environ.setdefault("BREASTGPT_DEID_SECRET", "benchmark-secret-0123456789")
    work = Path(tempfile.mkdtemp(prefix="corpus_bench_"))
    loads = [os.getloadavg()[0]]
    try:
        root = generate(work / "synth", patients=args.patients, sources=[SOURCE], seed=0)[SOURCE]
        counts: dict[str, tuple[int, int]] = {}

        def run_naive() -> None:
            counts["naive"] = naive_loop(root, fresh(work / "naive"))

        def run_build(workers: int):
            def run() -> None:
                summary = build(root, fresh(work / f"build{workers}"), workers)
                counts[f"build_{workers}"] = (summary.processed, summary.records)
            return run

        timings = time_interleaved({"naive": run_naive, "build_1": run_build(1), "build_2": run_build(2)},
                                   rounds=args.rounds)
        loads.append(os.getloadavg()[0])
        # the unchanged re-run, on its own corpus of --rerun-patients items (fixed costs do not hide behind 100)
        big = generate(work / "synth_big", patients=args.rerun_patients, sources=[SOURCE], seed=1)[SOURCE]
        rerun_items = build(big, work / "big", 2).processed
        reruns = []
        for _ in range(args.rounds):
            start = time.perf_counter()
            summary = build(big, work / "big", 1)
            reruns.append(time.perf_counter() - start)
            assert summary.processed == 0 and summary.reused == rerun_items, "the unchanged re-run did work"
        loads.append(os.getloadavg()[0])
        items = counts["build_1"][0]
        with pil_png(PIL_DEFAULT_PNG_LEVEL):  # the same build with PIL's PNG: only PNG bytes may differ
            build(root, fresh(work / "level6"), 1)
        naive_pixels, build_pixels = pixel_names(work / "naive"), pixel_names(work / "build1")
        medians = {name: statistics.median(values) for name, values in timings.items()}
        result = {
            "source": SOURCE, "patients": args.patients, "items": items, "rounds": args.rounds,
            "threads_per_process": 1,
            "seconds": {name: [round(v, 3) for v in values] for name, values in timings.items()},
            "median_seconds": {name: round(v, 3) for name, v in medians.items()},
            "items_per_s": {name: round(counts[name][0] / v, 2) for name, v in medians.items()},
            "speedup_vs_naive": {name: round(medians["naive"] / medians[name], 2) for name in ("build_1", "build_2")},
            "records": {name: counts[name][1] for name in counts},
            "unchanged_rerun": {"items": rerun_items, "seconds": [round(v, 3) for v in reruns],
                                "median_seconds": round(statistics.median(reruns), 3),
                                "seconds_per_1000_items": round(statistics.median(reruns) / rerun_items * 1000, 2)},
            "output_check": {"images_naive": len(naive_pixels), "images_build": len(build_pixels),
                             "pixels_identical": sorted(naive_pixels.values()) == sorted(build_pixels.values()),
                             "records_1_and_2_workers_equal": counts["build_1"] == counts["build_2"],
                             "records_equal_to_a_pil_png_build_apart_from_png_bytes":
                                 records_by_pixels(work / "build1", build_pixels)
                                 == records_by_pixels(work / "level6", pixel_names(work / "level6")),
                             "png_bytes_naive": png_bytes(work / "naive"), "png_bytes_build": png_bytes(work / "build1"),
                             "png_naive": f"PIL, level {PIL_DEFAULT_PNG_LEVEL}",
                             "png_build": f"Sub filter, zlib level {normalise.PNG_COMPRESS_LEVEL}"},
            **load_record(loads),
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)
    path = write_result("corpus_build", result, args.out)
    print(f"wrote {path}")
    print({k: result[k] for k in ("median_seconds", "speedup_vs_naive", "unchanged_rerun", "output_check", "noisy")})


if __name__ == "__main__":
    main()
