"""How far the full demo's figures move with the training seed alone: the same cohort, bench and bootstrap.

    python benchmarks/demo_training_seeds.py [--out /tmp/demo-seeds] [--seeds 0 1 2] [--threads 2]

Runs `breastgpt demo` (the full settings) once per training seed (`DemoSettings.train_seed`: the encoder
pre-training's and the language training's seed; the cohort, the initial checkpoint and the bootstrap keep seed 0)
in one output folder, so the stages before training are built once and reused. The demo's intervals come from a
bootstrap over the bench patients and say nothing of the training's own randomness; this measures it. Writes
benchmarks/results/demo_training_seeds.json: per seed, the image-dependent row (accuracy, no image, shuffled image,
full − no image, each with its interval), the criterion, the slide-branch − thumbnail differences (all items, not
pathology, pathology) and each model's own accuracy on those three sets; and the spread of each point figure over the
seeds.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import write_result  # noqa: E402

ROW_KEYS = ("full", "no_image", "shuffle_image", "full-no_image")


def _point(value: dict) -> dict[str, float]:
    return {k: round(100 * value[k], 1) for k in ("point", "low", "high")}


def seed_figures(summary: dict) -> dict:
    """The figures of one demo run that the seeds are compared on (percentage points)."""
    model = summary["results"]["models"]["breastgpt"]
    row = model["table"][0]
    compared = [r for r in summary["results"]["slide_vs_thumbnail"]
                if r["set"] in ("all image-dependent", "not pathology", "pathology")]
    return {"set": row["set"], "n_items": row["n_items"], **{k: _point(row[k]) for k in ROW_KEYS},
            "criterion": model["criterion"],
            "slide_minus_thumbnail": {r["set"]: _point(r["difference"]) for r in compared},
            # each model's own accuracy on those sets: a difference moves when either model does
            "slide_vs_thumbnail_accuracy": {r["set"]: {m: _point(r[m]) for m in ("breastgpt", "thumbnail")}
                                            for r in compared}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("/tmp/breastgpt-demo-seeds"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=2,
                        help="torch threads of every run (pinned: the figures depend slightly on it); default 2, "
                             "the committed demo figures' (one per model, trained side by side)")
    args = parser.parse_args()
    from breastgpt.demo import run_demo
    from breastgpt.demo.settings import FULL

    runs = {}
    for seed in args.seeds:
        started = time.perf_counter()
        summary = run_demo(args.out, settings=replace(FULL, train_seed=seed), threads=args.threads,
                           secret=b"benchmark-demo-secret-0123456789").as_dict()
        if not summary["ok"]:
            failed = [s["name"] for s in summary["stages"] if not s["ok"]]
            raise SystemExit(f"training seed {seed}: the demo failed at {failed}; see {args.out}/demo.log")
        runs[str(seed)] = {**seed_figures(summary), "seconds": round(time.perf_counter() - started, 1)}
        print(f"training seed {seed}: " + ", ".join(f"{k} {v['point']}" for k, v in runs[str(seed)].items()
                                                     if k in ROW_KEYS))
    spread = {k: {"min": min(r[k]["point"] for r in runs.values()), "max": max(r[k]["point"] for r in runs.values())}
              for k in ROW_KEYS}
    passed = sum(r["criterion"]["passed"] for r in runs.values())
    path = write_result("demo_training_seeds", {
        "command": "python benchmarks/demo_training_seeds.py --seeds " + " ".join(map(str, args.seeds))
                   + f" --threads {args.threads}",
        "threads": args.threads,
        "settings": {**replace(FULL, train_seed=None).as_dict(), "train_seed": args.seeds},
        "runs": runs, "spread": spread, "criterion_passed": f"{passed} of {len(runs)}"})
    print(f"criterion passed for {passed} of {len(runs)} training seeds; wrote {path}")


if __name__ == "__main__":
    main()
