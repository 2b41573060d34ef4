"""Concept selection: ours (exact, linear memory) vs the dense greedy, time and extra peak memory.

Each measurement runs in a fresh subprocess. Memory is the kernel's peak resident set (getrusage
ru_maxrss) minus the resident set just after the input was built: the *extra* memory the selection needed.
The dense baseline is `dense_greedy_reference` from tests/model/test_selection.py (float64 L×L matrix); it is
skipped above DENSE_MAX_L. Writes benchmarks/results/selection.json after every case.

    python benchmarks/selection.py            # full table (hours on a 2-core machine)
    python benchmarks/selection.py --quick    # L <= 10k only
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "benchmarks" / "results" / "selection.json"
K = 128
DENSE_MAX_L = 20_000  # float64 L×L = 3.2 GB at 20k; the dense greedy needs ~3 such buffers


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


def measure_one(method: str, n: int, d: int, kind: str) -> dict:
    sys.path[:0] = [str(REPO / "src"), str(REPO)]
    import torch

    from breastgpt.model.selection import select_concepts_with_stats

    x = _make_tokens(n, d, kind, seed=n + d)
    base = _rss_now()
    t0 = time.perf_counter()
    stats = None
    if method == "ours":
        idx, stats = select_concepts_with_stats(x, K)
    else:
        from tests.model.test_selection import dense_greedy_reference

        idx = dense_greedy_reference(x, K)
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    out = {"seconds": round(seconds, 2), "extra_peak_bytes": max(0, peak - base), "indices": idx.tolist(),
           "threads": torch.get_num_threads()}
    if stats is not None:
        out["stats"] = {k: v for k, v in vars(stats).items() if k != "notes"}
    return out


def _child_env() -> dict:
    # glibc's dynamic mmap threshold keeps freed tiles of up to 32 MiB in the heap, so RSS would show the
    # allocator's retention (5-7x the live tensors in a trial), not what the algorithm holds. A fixed
    # threshold returns every large buffer to the kernel when it is freed.
    return {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072"}


def _run_child(method: str, n: int, d: int, kind: str) -> dict:
    cmd = [sys.executable, __file__, "--one", method, str(n), str(d), kind]
    done = subprocess.run(cmd, capture_output=True, text=True, check=True, env=_child_env())
    return json.loads(done.stdout.strip().splitlines()[-1])


def _write(results: dict) -> None:
    tmp = OUT.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(results, indent=1))
    os.replace(tmp, OUT)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--one", nargs=4, metavar=("METHOD", "L", "D", "KIND"))
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    if args.one:
        method, n, d, kind = args.one
        print(json.dumps(measure_one(method, int(n), int(d), kind)))
        return
    plan = [(2000, 768, "clustered"), (10000, 768, "clustered"), (20000, 768, "clustered"),
            (2000, 768, "isotropic"), (10000, 768, "isotropic"),
            (2000, 4096, "clustered"), (10000, 4096, "clustered")]
    if not args.quick:
        plan += [(50000, 768, "clustered"), (100000, 768, "clustered"), (20000, 4096, "clustered")]
    results = {
        "benchmark": "selection", "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "machine": f"{platform.platform()} | {platform.processor() or platform.machine()} | cpus={os.cpu_count()}",
        "k": K, "memory": "peak RSS (getrusage ru_maxrss) minus RSS after the input was built, per subprocess, "
                          "glibc MALLOC_MMAP_THRESHOLD_=131072 so freed large buffers leave the RSS",
        "dense": "tests/model/test_selection.py::dense_greedy_reference, float64 L×L matrix",
        "load_average_at_start": os.getloadavg(), "cases": [],
    }
    for n, d, kind in plan:
        case = {"L": n, "D": d, "data": kind, "dense_fp64_matrix_bytes": n * n * 8, "dense_fp32_matrix_bytes": n * n * 4}
        ours = _run_child("ours", n, d, kind)
        case["ours"] = {k: v for k, v in ours.items() if k != "indices"}
        if n <= DENSE_MAX_L:
            dense = _run_child("dense", n, d, kind)
            case["dense"] = {k: v for k, v in dense.items() if k != "indices"}
            case["identical_indices"] = ours["indices"] == dense["indices"]
            case["speed_ratio_dense_over_ours"] = round(dense["seconds"] / max(ours["seconds"], 1e-9), 3)
        else:
            case["dense"] = f"skipped: the float64 L×L matrix alone is {n * n * 8 / 2**30:.1f} GiB"
        case["ours_extra_over_dense_fp64_matrix"] = round(ours["extra_peak_bytes"] / (n * n * 8), 4)
        case["ours_extra_over_dense_fp32_matrix"] = round(ours["extra_peak_bytes"] / (n * n * 4), 4)
        case["load_average"] = os.getloadavg()
        results["cases"].append(case)
        _write(results)
        print(json.dumps(case), flush=True)


if __name__ == "__main__":
    main()
