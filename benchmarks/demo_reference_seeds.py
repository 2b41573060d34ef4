"""The full demo's figures over training seeds under an earlier revision of the code: a repeatable reference for
benchmarks/results/demo_training_seeds.json.

    python benchmarks/demo_reference_seeds.py [--rev 5091f1d] [--seeds 0 1 2] [--threads 2] [--out DIR] [--add]

Issue 32 asks that the demo's figures stay where they were before its port (5091f1d, the last commit before it). One
run of that code says little, since the figures move with the training seed alone, so this runs the earlier code
over training seeds, the way demo_training_seeds.py runs the current code:

- the revision's files are taken with `git archive` into `<out>/code` (the repository's history is the only source;
  nothing is downloaded) and run with this checkout's Python environment (the revision's dependency files must ask
  for nothing that environment lacks: 5091f1d's differ from today's only in two test tools);
- that code has one demo seed for everything, so its `demo/training.py` is patched in the copy: the three places that
  pass `s.seed` to the encoder pre-training and the language trainings (the pre-training's stage key included) read
  the training seed from $BREASTGPT_REFERENCE_TRAIN_SEED instead. The cohort, the initial checkpoint, the bench and
  the bootstrap keep seed 0, as in demo_training_seeds.py. Exactly three such places must be found, else it stops;
- each seed runs the revision's own `benchmarks/demo.py` into a fresh folder `<out>/seed-<S>`, with
  $BREASTGPT_THREADS pinned (that code's default follows the free cores);
- the kept bench answers are scored again by the current `demo.evaluate.stage_score`, so every figure has the
  same definition as demo_training_seeds.json's (the earlier demo lacked the "not pathology" rows). The rescored
  accuracy must equal the one the run printed, else it stops.

Writes benchmarks/results/demo_reference_seeds.json: the revision (full hash), the patch, the thread count, the
earlier demo's settings, per seed the figures of demo_training_seeds.json, and the comparison of the two files:
per figure the means, Welch's 95 % interval of current − reference, and a permutation p over 20,000 relabellings.
`--add` keeps the runs already in that file for the seeds not given (refused for another revision, patch, thread
count or CPU). The run folders (about 400 MB each) are deleted after scoring unless `--keep-runs`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import math
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import RESULTS, write_result  # noqa: E402
from demo_training_seeds import (  # noqa: E402
    commands_of, earlier_document, pooled_runs, run_timing, seed_figures, summarise)

REPO = Path(__file__).resolve().parents[1]
SEED_VARIABLE = "BREASTGPT_REFERENCE_TRAIN_SEED"
PATCHED_FILE = "src/breastgpt/demo/training.py"
# `s.seed` as a name of its own (not the tail of `settings.seed`, which seeds the cohort and initial checkpoint)
SEED_USE = re.compile(r"(?<![\w.])s\.seed\b")
SEED_READ = f'int(__import__("os").environ["{SEED_VARIABLE}"])'
EXPECTED_USES = 3
# the figures compared: a label and how to read it from one run's record
FIGURES = {
    "accuracy": lambda r: r["full"]["point"],
    "over no image": lambda r: r["full-no_image"]["point"],
    "slide - thumbnail, all": lambda r: r["slide_minus_thumbnail"]["all image-dependent"]["point"],
    "slide - thumbnail, not pathology": lambda r: r["slide_minus_thumbnail"]["not pathology"]["point"],
    "slide - thumbnail, pathology": lambda r: r["slide_minus_thumbnail"]["pathology"]["point"],
    "BreastGPT, not pathology": lambda r: r["slide_vs_thumbnail_accuracy"]["not pathology"]["breastgpt"]["point"],
    "comparator, not pathology": lambda r: r["slide_vs_thumbnail_accuracy"]["not pathology"]["thumbnail"]["point"],
    "pathway, with media": lambda r: r["pathway"]["full"]["point"],
    "criterion met": lambda r: float(r["criterion"]["passed"]),
}


def resolve(rev: str) -> str:
    done = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--verify", f"{rev}^{{commit}}"],
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"--rev {rev}: not a commit of {REPO} ({done.stderr.strip()}); a shallow clone may lack it: "
                         "git fetch --unshallow")
    return done.stdout.strip()


def patch_seed(text: str) -> str:
    """The earlier `demo/training.py` with its training seed read from $BREASTGPT_REFERENCE_TRAIN_SEED."""
    found = len(SEED_USE.findall(text))
    if found != EXPECTED_USES:
        raise SystemExit(f"{PATCHED_FILE}: {found} uses of `s.seed` where the patch expects {EXPECTED_USES} (the "
                         "pre-training's stage key and call, the language trainings' config); this revision's demo "
                         "is not the one this script knows how to seed")
    return SEED_USE.sub(SEED_READ, text)


def extract(sha: str, code: Path) -> None:
    """The revision's files in `code` (replaced), with the seed patch applied."""
    archive = subprocess.run(["git", "-C", str(REPO), "archive", "--format=tar", sha], capture_output=True, check=True)
    if code.exists():
        shutil.rmtree(code)
    code.mkdir(parents=True)
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(code, filter="data")
    target = code / PATCHED_FILE
    target.write_text(patch_seed(target.read_text()))
    probe = subprocess.run([sys.executable, "-c", "import breastgpt; print(breastgpt.__file__)"], cwd=code,
                           env={**os.environ, "PYTHONPATH": str(code / "src")}, capture_output=True, text=True)
    if probe.returncode != 0 or not Path(probe.stdout.strip()).resolve().is_relative_to(code.resolve()):
        raise SystemExit(f"the revision's code does not import from {code} with {sys.executable}: "
                         f"{(probe.stderr or probe.stdout).strip()[-500:]}")


def run_seed(code: Path, folder: Path, seed: int, threads: int, log: Path) -> dict:
    """One run of the revision's benchmarks/demo.py at training seed `seed`; its summary.json."""
    env = {**os.environ, SEED_VARIABLE: str(seed), "BREASTGPT_THREADS": str(threads), "PYTHONPATH": str(code / "src")}
    with log.open("w") as sink:
        done = subprocess.run([sys.executable, "benchmarks/demo.py", "--out", str(folder)], cwd=code, env=env,
                              stdout=sink, stderr=subprocess.STDOUT)
    summary_file = folder / "summary.json"
    if done.returncode != 0 or not summary_file.is_file():
        raise SystemExit(f"training seed {seed}: the revision's demo exited {done.returncode}; see {log}")
    summary = json.loads(summary_file.read_text())
    if not summary.get("ok"):
        raise SystemExit(f"training seed {seed}: the revision's demo reports a failed stage; see {log}")
    return summary


def rescore(folder: Path, summary: dict) -> dict:
    """The run's bench answers scored by the current code, as one run's record of demo_training_seeds.json."""
    from breastgpt.demo.evaluate import stage_score

    settings = summary["settings"]
    ctx = SimpleNamespace(settings=SimpleNamespace(bootstrap=settings["bootstrap"], seed=settings["seed"]), state={
        "task_set": folder / "task_set", **{f"{k}:{name}": folder / "bench" / name
                                            for name in ("breastgpt", "thumbnail") for k in ("model", "bench")}})
    stage_score(ctx)
    figures = seed_figures({"results": ctx.state["results"]})
    printed = summary["results"]["models"]["breastgpt"]["table"][0]["full"]["point"]
    if round(100 * printed, 1) != figures["full"]["point"]:
        raise SystemExit(f"{folder}: the current scoring gives accuracy {figures['full']['point']} where the run "
                         f"printed {100 * printed:.1f}; the two scorings differ, so the figures are not comparable")
    return figures


def welch(a: list[float], b: list[float]) -> tuple[float, float, float]:
    """mean(a) − mean(b) with Welch's 95 % interval."""
    from scipy.stats import t

    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    d, se = statistics.mean(a) - statistics.mean(b), math.sqrt(va + vb)
    if se == 0:
        return d, d, d
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    q = float(t.ppf(0.975, df))
    return d, d - q * se, d + q * se


def permutation_p(a: list[float], b: list[float], n: int = 20_000, seed: int = 0) -> float:
    """Two-sided p of |mean(a) − mean(b)| over `n` random relabellings of the pooled values ((hits + 1)/(n + 1))."""
    rng, pooled = random.Random(seed), a + b
    observed, hits = abs(statistics.mean(a) - statistics.mean(b)), 0
    for _ in range(n):
        rng.shuffle(pooled)
        hits += abs(statistics.mean(pooled[: len(a)]) - statistics.mean(pooled[len(a):])) >= observed - 1e-12
    return (hits + 1) / (n + 1)


def cpus(runs: dict[str, dict]) -> dict[str, list[int]]:
    """The seeds run on each CPU ("not recorded" for runs made before runs recorded it): figures depend on the CPU,
    so a comparison must say where each side ran."""
    where: dict[str, list[int]] = {}
    for seed, run in runs.items():
        where.setdefault(run.get("cpu") or "not recorded", []).append(int(seed))
    return where


def compare(current: dict[str, dict], reference: dict[str, dict]) -> dict:
    """Per figure: both means and ranges, current − reference with Welch's 95 % interval, and the permutation p."""
    rows = {}
    for label, read in FIGURES.items():
        a, b = [read(r) for r in current.values()], [read(r) for r in reference.values()]
        row = {"current": {"n": len(a), "mean": round(statistics.mean(a), 2), "min": min(a), "max": max(a)},
               "reference": {"n": len(b), "mean": round(statistics.mean(b), 2), "min": min(b), "max": max(b)}}
        if len(a) >= 2 and len(b) >= 2:
            d, low, high = welch(a, b)
            row["difference"] = {"point": round(d, 2), "low": round(low, 2), "high": round(high, 2),
                                 "p_permutation": round(permutation_p(a, b), 4)}
        rows[label] = row
    return rows


def check_poolable(earlier: dict, later: dict) -> None:
    """Refuse to pool the runs of two documents of another revision, patch or thread count."""
    for key in ("revision", "patch", "threads"):
        if earlier.get(key) != later.get(key):
            raise SystemExit(f"the earlier result was made with another {key} ({earlier.get(key)} against "
                             f"{later.get(key)}): its runs cannot be pooled with these; run every seed without --add")


def merged(earlier: dict, later: dict) -> dict:
    """The runs of two documents of the same revision, patch and thread count as one (the later run of a seed wins)."""
    check_poolable(earlier, later)
    runs = pooled_runs(earlier["runs"], later["runs"])
    return {**later, "commands": commands_of(earlier) + commands_of(later),
            "settings": {**later["settings"], "train_seed": [int(s) for s in runs]}, "runs": runs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rev", default="5091f1d", help="the revision to run (default 5091f1d, before issue 32)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=2, help="torch threads of every run (pinned); default 2")
    parser.add_argument("--out", type=Path, default=Path("/tmp/breastgpt-demo-reference"))
    parser.add_argument("--add", action="store_true",
                        help="keep the runs of benchmarks/results/demo_reference_seeds.json for the seeds not given")
    parser.add_argument("--keep-runs", action="store_true", help="keep each seed's run folder (about 400 MB)")
    args = parser.parse_args()
    target = RESULTS / "demo_reference_seeds.json"
    sha = resolve(args.rev)
    command = (f"python benchmarks/demo_reference_seeds.py --rev {args.rev} --seeds {' '.join(map(str, args.seeds))} "
               f"--threads {args.threads}" + (" --add" if args.add else ""))
    this = {"revision": sha, "threads": args.threads,
            "patch": {"file": PATCHED_FILE, "pattern": SEED_USE.pattern, "replacement": SEED_READ,
                      "uses": EXPECTED_USES},
            "commands": [{"command": command, "seeds": sorted(args.seeds)}], "runs": {}}
    earlier = earlier_document(target, this, check_poolable) if args.add else None
    code = args.out / "code"
    extract(sha, code)
    for seed in args.seeds:
        folder = args.out / f"seed-{seed}"
        started, date, load = time.perf_counter(), dt.datetime.now(dt.timezone.utc), os.getloadavg()
        summary = run_seed(code, folder, seed, args.threads, args.out / f"seed-{seed}.log")
        this["settings"] = dict(summary["settings"])
        this["runs"][str(seed)] = {**rescore(folder, summary),
                                   **run_timing(time.perf_counter() - started, date, load)}
        if not args.keep_runs:
            shutil.rmtree(folder)
        record = this["runs"][str(seed)]
        print(f"training seed {seed}: accuracy {record['full']['point']}, over no image "
              f"{record['full-no_image']['point']}, criterion {'met' if record['criterion']['passed'] else 'not met'}")
    this["settings"]["train_seed"] = sorted(args.seeds)
    this["commands"][0].update(date=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                               load_average_at_end=[round(x, 2) for x in os.getloadavg()])
    document = merged(earlier, this) if earlier is not None else this
    document.update(summarise(document["runs"]))
    current_file = RESULTS / "demo_training_seeds.json"
    if current_file.is_file():
        current = json.loads(current_file.read_text())["runs"]
        document["comparison"] = {"current": "benchmarks/results/demo_training_seeds.json",
                                  "cpus": {"current": cpus(current), "reference": cpus(document["runs"])},
                                  "figures": compare(current, document["runs"])}
    path = write_result("demo_reference_seeds", document)
    print(f"criterion met for {document['criterion_passed']} training seeds of {sha[:7]}; wrote {path}")


if __name__ == "__main__":
    main()
