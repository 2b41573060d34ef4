"""How far the full demo's figures move with the training seed alone: the same cohort, bench and bootstrap.

    python benchmarks/demo_training_seeds.py [--out /tmp/demo-seeds] [--seeds 0 1 2] [--threads 2] [--add]

Runs `breastgpt demo` (the full settings) once per training seed (`DemoSettings.train_seed`: the encoder
pre-training's and the language training's seed; the cohort, the initial checkpoint and the bootstrap keep seed 0)
in one output folder, so the stages before training are built once and reused. The demo's intervals come from a
bootstrap over the bench patients and say nothing of the training's own randomness; this measures it. Writes
benchmarks/results/demo_training_seeds.json: per seed, the image-dependent row (accuracy, no image, shuffled image,
full − no image, each with its interval), the criterion, the slide-branch − thumbnail differences (all items, not
pathology, pathology) and each model's own accuracy on those three sets, the care-pathway items with and without their
earlier media, when the run started, the load then and whether its wall time is noisy (that load above the core
count; the figures themselves do not depend on the load); and the spread of each point figure over the seeds. `--add`
keeps the runs already in that file for the seeds not given (a run is deterministic for its seed and thread count:
seeds re-run in another session gave identical figures), so more seeds can be added without running the earlier ones
again; the file then lists every command that made it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import RESULTS, cpu_model, load_record, write_result  # noqa: E402

ROW_KEYS = ("full", "no_image", "shuffle_image", "full-no_image")


def _point(value: dict) -> dict[str, float]:
    return {k: round(100 * value[k], 1) for k in ("point", "low", "high")}


def seed_figures(summary: dict) -> dict:
    """The figures of one demo run that the seeds are compared on (percentage points)."""
    model = summary["results"]["models"]["breastgpt"]
    row = model["table"][0]
    pathway = (summary["results"].get("pathway") or [{}])[0]  # the first row: all pathway items
    compared = [r for r in summary["results"]["slide_vs_thumbnail"]
                if r["set"] in ("all image-dependent", "not pathology", "pathology")]
    return {"set": row["set"], "n_items": row["n_items"], **{k: _point(row[k]) for k in ROW_KEYS},
            "criterion": model["criterion"],
            "slide_minus_thumbnail": {r["set"]: _point(r["difference"]) for r in compared},
            # each model's own accuracy on those sets: a difference moves when either model does
            "slide_vs_thumbnail_accuracy": {r["set"]: {m: _point(r[m]) for m in ("breastgpt", "thumbnail")}
                                            for r in compared},
            # the care-pathway items with and without the earlier stages' media (8 items in the full demo)
            "pathway": {k: _point(pathway[k]) for k in ("full", "no_prior_media", "difference") if k in pathway}}


def commands_of(document: dict) -> list[dict]:
    """The commands that made a result document, each with its seeds, the date it wrote its result and the load
    then (of a document that names a single `command`: that one, with the document's date and machine load)."""
    if document.get("commands"):
        return document["commands"]
    machine = document.get("machine", {})
    # a document whose machine block has no end load took its one load reading when it was written
    load = machine.get("load_average_at_end", machine.get("load_average_at_start"))
    return [{"command": document["command"], "date": document["date"],
             "seeds": sorted(int(s) for s in document["runs"]), "load_average_at_end": load}]


def check_poolable(earlier: dict, later: dict) -> None:
    """Refuse to pool the runs of two result documents of other settings or another thread count: their figures
    differ."""
    for key in ("threads", "settings"):
        a, b = earlier.get(key), later.get(key)
        if key == "settings":
            a, b = ({k: v for k, v in (d or {}).items() if k != "train_seed"} for d in (a, b))
        a, b = (json.loads(json.dumps(x)) for x in (a, b))  # as written: a tuple of the settings is a list there
        if a != b:
            raise SystemExit(f"the earlier result was made with other {key} ({a} against {b}): its runs cannot be "
                             "pooled with these; run every seed again without --add")


def check_same_cpu(earlier_runs: dict[str, dict], later_runs: dict[str, dict]) -> None:
    """Refuse to pool runs made on other CPUs: the same seed trains to other figures there. A run made before runs
    recorded their CPU does not count (its CPU is unknown)."""
    known = [{r["cpu"] for r in runs.values() if r.get("cpu")} for runs in (earlier_runs, later_runs)]
    if all(known) and known[0] != known[1]:
        raise SystemExit(f"the earlier runs ran on {sorted(known[0])}, these on {sorted(known[1])}: trained figures "
                         "differ between CPUs, so they cannot be pooled; run every seed on one machine without --add")


def earlier_document(target: Path, this: dict, check: Callable[[dict, dict], None]) -> dict:
    """For --add: the result document to add runs to, refused before hours of training when `check` or the CPU
    says its runs cannot be pooled with this invocation's."""
    if not target.is_file():
        raise SystemExit(f"--add: there is no {target} to add runs to; run without --add")
    earlier = json.loads(target.read_text())
    check(earlier, this)
    check_same_cpu(earlier["runs"], {"this machine": {"cpu": cpu_model()}})
    return earlier


def pooled_runs(earlier_runs: dict[str, dict], later_runs: dict[str, dict]) -> dict[str, dict]:
    """The earlier runs for the seeds the later ones did not run, and the later runs, by seed; refused for runs made
    on another CPU."""
    check_same_cpu(earlier_runs, later_runs)
    runs = {**{s: r for s, r in earlier_runs.items() if s not in later_runs}, **later_runs}
    return dict(sorted(runs.items(), key=lambda item: int(item[0])))


def merged(earlier: dict, later: dict) -> dict:
    """Two result documents of the same settings and thread count as one: the earlier one's runs for the seeds the
    later one did not run, the later one's runs, and the commands of both."""
    check_poolable(earlier, later)
    runs = pooled_runs(earlier["runs"], later["runs"])
    return {"commands": commands_of(earlier) + commands_of(later), "threads": later["threads"],
            "settings": {**later["settings"], "train_seed": [int(s) for s in runs]}, "runs": runs, **summarise(runs)}


def summarise(runs: dict[str, dict]) -> dict:
    """The spread of each point figure over the seeds and how often the criterion passed."""
    spread = {k: {"min": min(r[k]["point"] for r in runs.values()), "max": max(r[k]["point"] for r in runs.values())}
              for k in ROW_KEYS}
    passed = sum(r["criterion"]["passed"] for r in runs.values())
    return {"spread": spread, "criterion_passed": f"{passed} of {len(runs)}"}


def run_timing(seconds: float, started: dt.datetime, load: tuple[float, ...]) -> dict:
    """A run's wall time, start, CPU and 1/5/15-minute load at its start; the wall time is noisy when that 1-minute
    load exceeded the core count (`_common.load_record`). The CPU is recorded because the figures depend on it."""
    return {"seconds": round(seconds, 1), "started": started.isoformat(timespec="seconds"), "cpu": cpu_model(),
            "load_average_at_start": [round(x, 2) for x in load], "seconds_noisy": load_record([load[0]])["noisy"]}


def new_document(seeds: list[int], threads: int, add: bool) -> dict:
    """The result document of one invocation before its runs: its command, thread count and the demo's settings."""
    from breastgpt.demo.settings import FULL

    command = (f"python benchmarks/demo_training_seeds.py --seeds {' '.join(map(str, seeds))} --threads {threads}"
               + (" --add" if add else ""))
    return {"commands": [{"command": command, "seeds": sorted(seeds)}], "threads": threads,
            "settings": {**replace(FULL, train_seed=None).as_dict(), "train_seed": seeds}, "runs": {}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("/tmp/breastgpt-demo-seeds"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=2,
                        help="torch threads of every run (pinned: the figures depend slightly on it); default 2, "
                             "the committed demo figures' (one per model, trained side by side)")
    parser.add_argument("--add", action="store_true",
                        help="keep the runs of benchmarks/results/demo_training_seeds.json for the seeds not given")
    args = parser.parse_args()
    from breastgpt.demo import run_demo
    from breastgpt.demo.settings import FULL

    target = RESULTS / "demo_training_seeds.json"
    this = new_document(args.seeds, args.threads, args.add)
    earlier = earlier_document(target, this, check_poolable) if args.add else None
    for seed in args.seeds:
        started, date, load = time.perf_counter(), dt.datetime.now(dt.timezone.utc), os.getloadavg()
        summary = run_demo(args.out, settings=replace(FULL, train_seed=seed), threads=args.threads,
                           secret=b"benchmark-demo-secret-0123456789").as_dict()
        if not summary["ok"]:
            failed = [s["name"] for s in summary["stages"] if not s["ok"]]
            raise SystemExit(f"training seed {seed}: the demo failed at {failed}; see {args.out}/demo.log")
        this["runs"][str(seed)] = {**seed_figures(summary), **run_timing(time.perf_counter() - started, date, load)}
        print(f"training seed {seed}: " + ", ".join(f"{k} {v['point']}" for k, v in this["runs"][str(seed)].items()
                                                     if k in ROW_KEYS))
    this["commands"][0].update(date=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                               load_average_at_end=[round(x, 2) for x in os.getloadavg()])
    document = merged(earlier, this) if earlier is not None else {**this, **summarise(this["runs"])}
    path = write_result("demo_training_seeds", document)
    print(f"criterion passed for {document['criterion_passed']} training seeds; wrote {path}")


if __name__ == "__main__":
    main()
