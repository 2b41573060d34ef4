"""Concept selection: ours (exact, linear memory) vs the dense greedy, time and extra peak memory, same run.

Each measurement runs in a fresh subprocess. Memory is the kernel's peak resident set (getrusage
ru_maxrss) minus the resident set just after the input was built: the *extra* memory the selection needed.
The dense baseline is `dense_greedy_reference` from tests/model/test_selection.py (the whole L×L float64
matrix, as SPEC §3.5 writes it); it is refused above the memory this machine can give it, and the refusal
states what it would need. The indices of both are compared wherever the dense one runs.

    python benchmarks/selection.py                     # the full plan (hours on a 2-core machine)
    python benchmarks/selection.py --only 2000:768:clustered,10000:768:isotropic
    python benchmarks/selection.py --threads 2

Results are merged case by case into benchmarks/results/selection.json (written atomically after every
case), so a long plan can be run in parts.
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
PLAN = [
    (2000, 768, "clustered"), (10000, 768, "clustered"), (20000, 768, "clustered"),
    (2000, 768, "isotropic"), (10000, 768, "isotropic"),
    (2000, 4096, "clustered"), (10000, 4096, "clustered"),
    (50000, 768, "clustered"), (100000, 768, "clustered"),
]


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


def measure_one(method: str, n: int, d: int, kind: str, threads: int) -> dict:
    sys.path[:0] = [str(REPO / "src"), str(REPO)]
    import torch

    from breastgpt.model.selection import select_concepts_with_stats

    torch.set_num_threads(threads)
    x = _make_tokens(n, d, kind, seed=n + d)
    base = _rss_now()
    load_before = os.getloadavg()
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
    done = subprocess.run(cmd, capture_output=True, text=True, check=True, env=_child_env())
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


def run_case(n: int, d: int, kind: str, threads: int, dense_max_l: int | None) -> dict:
    case = {"L": n, "D": d, "data": kind, "k": K, "date": datetime.datetime.now().isoformat(timespec="seconds"),
            "code_version": _code_version(),
            "dense_fp64_matrix_bytes": n * n * 8, "dense_fp32_matrix_bytes": n * n * 4}
    ours = _run_child("ours", n, d, kind, threads)
    case["ours"] = {k: v for k, v in ours.items() if k != "indices"}
    refusal = _dense_refusal(n, dense_max_l)
    if refusal is None:
        dense = _run_child("dense", n, d, kind, threads)
        case["dense"] = {k: v for k, v in dense.items() if k != "indices"}
        case["identical_indices"] = ours["indices"] == dense["indices"]
        case["speed_ratio_dense_over_ours"] = round(dense["seconds"] / max(ours["seconds"], 1e-9), 3)
        ratio = ours["extra_peak_bytes"] / max(dense["extra_peak_bytes"], 1)
        case["extra_memory_ratio_ours_over_dense"] = round(ratio, 4)
    else:
        case["dense"] = refusal
    case["ours_extra_over_dense_fp32_matrix"] = round(ours["extra_peak_bytes"] / (n * n * 4), 4)
    case["ours_extra_over_dense_fp64_matrix"] = round(ours["extra_peak_bytes"] / (n * n * 8), 4)
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
    kept = [c for c in results["cases"] if (c["L"], c["D"], c["data"]) != key]
    results["cases"] = sorted(kept + [case], key=lambda c: (c["D"], c["data"], c["L"]))


def markdown_table(results: dict) -> str:
    """The results as the table in docs/token_selection.md."""
    head = ("| L | D | data | ours s | dense s | dense/ours time | ours extra MiB | % of fp32 L×L | % of fp64 L×L "
            "| same indices | threads | load at start |\n|---|---|---|---|---|---|---|---|---|---|---|---|")
    rows = []
    for c in results["cases"]:
        ours, dense = c["ours"], c["dense"]
        ran = isinstance(dense, dict)
        rows.append(" | ".join(str(x) for x in (
            "", f"{c['L']:,}", c["D"], c["data"], ours["seconds"], dense["seconds"] if ran else "refused",
            c.get("speed_ratio_dense_over_ours", "—"), round(ours["extra_peak_bytes"] / 2**20),
            round(100 * c["ours_extra_over_dense_fp32_matrix"], 2), round(100 * c["ours_extra_over_dense_fp64_matrix"], 2),
            c.get("identical_indices", "—"), ours["threads"], round(ours["load_average_before"][0], 1), "")).strip())
    return head + "\n" + "\n".join(rows)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--one", nargs=4, metavar=("METHOD", "L", "D", "KIND"))
    ap.add_argument("--only", help="comma-separated L:D:kind cases instead of the full plan")
    ap.add_argument("--threads", type=int, default=1, help="torch threads for both methods (default 1)")
    ap.add_argument("--dense-max-l", type=int, default=None, help="skip the dense greedy above this L")
    ap.add_argument("--table", action="store_true", help="print the results file as a Markdown table and exit")
    args = ap.parse_args()
    if args.table:
        print(markdown_table(_load_results()))
        return
    if args.one:
        method, n, d, kind = args.one
        print(json.dumps(measure_one(method, int(n), int(d), kind, args.threads)))
        return
    plan = PLAN
    if args.only:
        plan = [(int(a), int(b), c) for a, b, c in (part.split(":") for part in args.only.split(","))]
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _common import machine

    results = _load_results()
    results.update({
        "benchmark": "selection", "k": K, "machine": machine(),
        "memory": "peak RSS (getrusage ru_maxrss) minus RSS after the input was built, per subprocess, "
                  "glibc MALLOC_MMAP_THRESHOLD_=131072 so freed large buffers leave the RSS",
        "dense": "tests/model/test_selection.py::dense_greedy_reference (the whole L×L matrix in float64)",
        "ours": "breastgpt.model.selection.select_concepts_with_stats, default tiles",
    })
    for n, d, kind in plan:
        case = run_case(n, d, kind, args.threads, args.dense_max_l)
        _merge(results, case)
        _write(results)
        print(json.dumps({k: v for k, v in case.items() if k not in ("ours", "dense")}
                         | {"ours_s": case["ours"]["seconds"],
                            "dense_s": case["dense"]["seconds"] if isinstance(case["dense"], dict) else None}),
              flush=True)


if __name__ == "__main__":
    main()
