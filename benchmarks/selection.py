"""Concept selection: ours (stored matrix), today's streaming path and the dense greedy — time, memory, indices.

Three methods, measured in the same run, rounds interleaved (the order rotates each round), each call in a fresh
subprocess with pinned torch threads:
- "stored": `select_concepts_with_stats` with its default budget — the float64 matrix is held when it fits
  `MATRIX_BUDGET_BYTES`, otherwise this is the streaming path;
- "streaming": the same function with `matrix_budget_bytes=0` — the linear-memory lazy greedy, the code every
  selection ran before the stored path existed ("today's code" in issue 31);
- "dense": `dense_greedy_reference` of tests/model/test_selection.py (SPEC §3.5 with the whole L×L float64 matrix).
Per case: the median seconds of each, the ratios, extra peak memory (peak RSS minus RSS after the input was built),
whether all indices are identical, and — for the accelerator policy (`static_shapes=True`) — the number of host
reads (ops that wait for the device: scalar reads and data-dependent shapes) one selection makes, counted with a
dispatch mode in a separate, untimed run. Load averages are recorded per call; a case measured at load above the
core count is marked noisy.

    python benchmarks/selection.py                          # the plan below, 3 rounds (~15 min on 2 cores)
    python benchmarks/selection.py --only 6000:768:clustered --rounds 5
    python benchmarks/selection.py --table                  # the Markdown table of docs/token_selection.md

Results are merged case by case into benchmarks/results/selection.json (written atomically after every case).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "benchmarks" / "results" / "selection.json"
K = 128
# The dense greedy holds the float64 L×L matrix plus up to two more of its size while it builds it
# (similarities, softmax, scaled copy): refuse it when that would not fit in the memory left for it.
DENSE_PEAK_MATRICES = 3
METHODS = ("stored", "streaming", "dense")
# (L, D, data, methods): the sizes issue 31 names; L = 30,000 is above the default budget, so "stored" streams
# there and the case shows the streaming path's memory against the fp32 L×L matrix.
PLAN = [
    (2000, 768, "clustered", METHODS), (6000, 768, "clustered", METHODS), (6000, 4096, "clustered", METHODS),
    (10000, 768, "clustered", METHODS), (20000, 768, "clustered", ("stored", "streaming")),
    (6000, 768, "isotropic", METHODS), (30000, 768, "clustered", ("stored",)),
]
SYNC_COUNT_MAX_L = 10000  # the untimed host-read count runs the static-shape policy, which does more work on CPU


def _rss_now() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _make_tokens(n: int, d: int, kind: str, seed: int):
    import torch

    g = torch.Generator().manual_seed(seed)
    x = torch.empty(n, d)
    centres = torch.randn(64, d, generator=g)
    for start in range(0, n, 2048):  # built in chunks so the input itself sets no memory peak
        rows = min(2048, n - start)
        noise = torch.randn(rows, d, generator=g)
        if kind == "clustered":  # tissue-type-like clusters, within-cluster cosine ~0.67
            noise.mul_(0.7).add_(centres[torch.randint(0, 64, (rows,), generator=g)])
        x[start : start + rows] = noise
    return x


def _host_reads(run) -> int:
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode

    syncing = {torch.ops.aten._local_scalar_dense.default, torch.ops.aten.nonzero.default,
               torch.ops.aten.is_nonzero.default, torch.ops.aten.equal.default}

    class Count(TorchDispatchMode):
        n = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            Count.n += func in syncing
            return func(*args, **(kwargs or {}))

    with Count():
        run()
    return Count.n


def measure_one(method: str, n: int, d: int, kind: str, threads: int) -> dict:
    sys.path[:0] = [str(REPO / "src"), str(REPO)]
    import torch

    from breastgpt.model.selection import select_concepts_with_stats

    torch.set_num_threads(threads)
    x = _make_tokens(n, d, kind, seed=n + d)
    if method == "host-reads":
        static = _host_reads(lambda: select_concepts_with_stats(x, K, static_shapes=True))
        exact = _host_reads(lambda: select_concepts_with_stats(x, K, static_shapes=False))
        return {"static_shapes": static, "exact_row_sets": exact}
    base = _rss_now()
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    stats = None
    if method == "dense":
        from tests.model.test_selection import dense_greedy_reference

        idx = dense_greedy_reference(x, K)
    else:
        budget = {"matrix_budget_bytes": 0} if method == "streaming" else {}
        idx, stats = select_concepts_with_stats(x, K, **budget)
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    out = {"seconds": round(seconds, 3), "extra_peak_bytes": max(0, peak - base), "indices": idx.tolist(),
           "threads": torch.get_num_threads(), "load_average_before": load_before,
           "load_average_after": os.getloadavg()}
    if stats is not None:
        out["stats"] = dict(vars(stats))
    return out


def _child_env() -> dict:
    # glibc's dynamic mmap threshold keeps freed tiles of up to 32 MiB in the heap, so RSS would show the
    # allocator's retention (5-7x the live tensors in a trial), not what the algorithm holds. A fixed
    # threshold returns every large buffer to the kernel when it is freed.
    return {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072"}


def _run_child(method: str, n: int, d: int, kind: str, threads: int) -> dict:
    cmd = [sys.executable, __file__, "--one", method, str(n), str(d), kind, "--threads", str(threads)]
    env = {**_child_env(), "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    done = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env)
    return json.loads(done.stdout.strip().splitlines()[-1])


def _available_bytes() -> int:
    with open("/proc/meminfo") as fh:
        fields = dict(line.split(":", 1) for line in fh)
    return int(fields["MemAvailable"].split()[0]) * 1024


def _dense_refusal(n: int, dense_max_l: int | None) -> str | None:
    need = DENSE_PEAK_MATRICES * n * n * 8
    if dense_max_l is not None and n > dense_max_l:
        return f"skipped by --dense-max-l {dense_max_l}; it would need ~{need / 2**30:.1f} GiB"
    available = _available_bytes()
    if need > 0.8 * available:
        return (f"refused: the float64 L×L matrix is {n * n * 8 / 2**30:.1f} GiB and the dense greedy peaks at "
                f"~{DENSE_PEAK_MATRICES}x that ({need / 2**30:.1f} GiB); this machine has "
                f"{available / 2**30:.1f} GiB available")
    return None


def _code_version() -> str:
    done = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run(["git", "-C", str(REPO), "diff", "--quiet", "HEAD", "--", "src/breastgpt/model/selection.py"])
    return done.stdout.strip() + ("+dirty" if dirty.returncode else "")


def run_case(n: int, d: int, kind: str, methods: tuple[str, ...], threads: int, rounds: int,
             dense_max_l: int | None) -> dict:
    import statistics

    case = {"L": n, "D": d, "data": kind, "k": K, "date": datetime.datetime.now().isoformat(timespec="seconds"),
            "code_version": _code_version(), "rounds": rounds, "threads": threads,
            "fp64_matrix_bytes": n * n * 8, "fp32_matrix_bytes": n * n * 4}
    methods = list(methods)
    if "dense" in methods and (refusal := _dense_refusal(n, dense_max_l)) is not None:
        methods.remove("dense")
        case["dense"] = refusal
    runs: dict[str, list[dict]] = {m: [] for m in methods}
    for r in range(rounds):
        for method in methods[r % len(methods):] + methods[: r % len(methods)]:  # rotate the order each round
            runs[method].append(_run_child(method, n, d, kind, threads))
    loads = [load for rs in runs.values() for run in rs for load in (run["load_average_before"][0],
                                                                       run["load_average_after"][0])]
    case["load_average_max"] = round(max(loads), 2)
    case["noisy"] = max(loads) > (os.cpu_count() or 1)
    indices = {m: rs[0]["indices"] for m, rs in runs.items()}
    case["identical_indices"] = all(rs_run["indices"] == indices[methods[0]] for rs in runs.values() for rs_run in rs)
    for method, rs in runs.items():
        case[method] = {"seconds_median": round(statistics.median(r["seconds"] for r in rs), 3),
                        "seconds_rounds": [r["seconds"] for r in rs],
                        "extra_peak_bytes": max(r["extra_peak_bytes"] for r in rs),
                        "stats": rs[0].get("stats")}
        case[method]["extra_over_fp32_matrix"] = round(case[method]["extra_peak_bytes"] / (n * n * 4), 4)
    seconds = {m: case[m]["seconds_median"] for m in runs}
    if "stored" in seconds:
        for other in ("streaming", "dense"):
            if other in seconds:
                case[f"speedup_over_{other}"] = round(seconds[other] / max(seconds["stored"], 1e-9), 2)
    if n <= SYNC_COUNT_MAX_L and "stored" in runs and (runs["stored"][0].get("stats") or {}).get("stored_matrix"):
        case["host_reads_per_selection"] = _run_child("host-reads", n, d, kind, threads)
    return case


def _load_results() -> dict:
    if OUT.exists():
        return json.loads(OUT.read_text())
    return {"benchmark": "selection", "cases": []}


def _write(results: dict) -> None:
    tmp = OUT.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(results, indent=1) + "\n")
    os.replace(tmp, OUT)


def _merge(results: dict, case: dict) -> None:
    key = (case["L"], case["D"], case["data"])
    kept = [c for c in results["cases"] if (c["L"], c["D"], c["data"]) != key and "seconds_median" in str(c)]
    results["cases"] = sorted(kept + [case], key=lambda c: (c["D"], c["data"], c["L"]))


def markdown_table(results: dict) -> str:
    """The results as the table in docs/token_selection.md (median seconds; × = speed-up of the default)."""
    head = ("| L | D | data | default s | streaming s | dense s | × streaming | × dense | default extra MiB "
            "| streaming extra, % of fp32 L×L | host reads (accelerator policy) | same indices | max load |\n"
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    rows = []
    for c in results["cases"]:
        def sec(method: str) -> str:
            value = c.get(method)
            return str(value["seconds_median"]) if isinstance(value, dict) else ("refused" if value else "—")

        stored, streaming = c.get("stored") or {}, c.get("streaming") or {}
        reads = (c.get("host_reads_per_selection") or {}).get("static_shapes", "—")
        rows.append(" | ".join(str(x) for x in (
            "", f"{c['L']:,}", c["D"], c["data"], sec("stored"), sec("streaming"), sec("dense"),
            c.get("speedup_over_streaming", "—"), c.get("speedup_over_dense", "—"),
            round(stored.get("extra_peak_bytes", 0) / 2**20) if stored else "—",
            round(100 * streaming["extra_over_fp32_matrix"], 1) if streaming else "—", reads,
            c["identical_indices"], f"{c['load_average_max']}{' (noisy)' if c['noisy'] else ''}", "")).strip())
    return head + "\n" + "\n".join(rows)


def main() -> None:
    global OUT
    ap = argparse.ArgumentParser()
    ap.add_argument("--one", nargs=4, metavar=("METHOD", "L", "D", "KIND"))
    ap.add_argument("--only", help="comma-separated L:D:kind cases instead of the full plan (all three methods)")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds per case (median taken; default 3)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads for every method (default 1)")
    ap.add_argument("--dense-max-l", type=int, default=None, help="skip the dense greedy above this L")
    ap.add_argument("--table", action="store_true", help="print the results file as a Markdown table and exit")
    ap.add_argument("--out", type=Path, default=None, help="results file (default benchmarks/results/selection.json)")
    args = ap.parse_args()
    if args.out is not None:
        OUT = args.out
    if args.table:
        print(markdown_table(_load_results()))
        return
    if args.one:
        method, n, d, kind = args.one
        print(json.dumps(measure_one(method, int(n), int(d), kind, args.threads)))
        return
    plan = PLAN
    if args.only:
        plan = [(int(a), int(b), c, METHODS) for a, b, c in (part.split(":") for part in args.only.split(","))]
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _common import machine

    results = _load_results()
    results.update({
        "benchmark": "selection", "k": K, "machine": machine(),
        "memory": "peak RSS (getrusage ru_maxrss) minus RSS after the input was built, per subprocess, "
                  "glibc MALLOC_MMAP_THRESHOLD_=131072 so freed large buffers leave the RSS",
        "methods": {"stored": "select_concepts_with_stats, default budget (stored matrix when it fits)",
                    "streaming": "select_concepts_with_stats(matrix_budget_bytes=0): the linear-memory path",
                    "dense": "tests/model/test_selection.py::dense_greedy_reference (whole L×L float64 matrix)"},
    })
    results.pop("dense", None), results.pop("ours", None)
    for n, d, kind, methods in plan:
        case = run_case(n, d, kind, methods, args.threads, args.rounds, args.dense_max_l)
        _merge(results, case)
        _write(results)
        print(json.dumps({k: case[k] for k in ("L", "D", "data", "identical_indices", "noisy", "load_average_max")}
                         | {m: case[m]["seconds_median"] for m in METHODS if isinstance(case.get(m), dict)}
                         | {k: v for k, v in case.items() if k.startswith("speedup") or k.startswith("host")}),
              flush=True)


if __name__ == "__main__":
    main()
