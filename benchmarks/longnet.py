"""LongNet forward (3 layers, width 768, 8 heads, segments (512,1),(1024,2),(2048,4)) vs dense attention.

Batch 1, float32, CPU, no gradient. "dense" is the same encoder with every layer's dilated attention
replaced by full softmax attention over the whole slide with the N×N score matrix materialised (what a
plain transformer would do); it is skipped when that matrix would not fit. Each measurement runs in a fresh
subprocess with pinned torch threads; the two methods alternate over `--rounds` rounds (order rotated) and the
median is reported; memory is peak RSS (getrusage ru_maxrss) minus RSS after model and inputs were built. The
load average is recorded per case and a case measured above the core count is marked noisy.
Writes benchmarks/results/longnet.json after every case.

    python benchmarks/longnet.py [--rounds 3] [--threads 2] [--sizes 2000,10000,45000]
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "benchmarks" / "results" / "longnet.json"
DENSE_MAX_BYTES = 6 * 2**30  # heads × N × N float32 scores (and as much again for the softmax)


def _rss_now() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def measure_one(method: str, n: int, threads: int) -> dict:
    sys.path.insert(0, str(REPO / "src"))
    import torch

    from breastgpt.model import longnet

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    enc = longnet.LongNetEncoder(longnet.LongNetConfig()).eval()
    if method == "dense":
        def full_attention(q, k, v, mask, segments, **_):
            scores = (q @ k.transpose(-1, -2)) * q.shape[-1] ** -0.5
            scores.masked_fill_(~mask[:, None, None, :], -torch.inf)
            return torch.softmax(scores, dim=-1) @ v

        longnet.dilated_attention = full_attention
    feats = torch.randn(1, n, 768)
    side = int(n**0.5) + 1
    coords = torch.stack([torch.arange(n) % side, torch.arange(n) // side], dim=1)[None].float()
    base = _rss_now()
    t0 = time.perf_counter()
    with torch.no_grad():
        outs = enc(feats, coords)
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"seconds": round(seconds, 2), "extra_peak_bytes": max(0, peak - base), "layers": len(outs),
            "finite": bool(torch.isfinite(outs[-1]).all()), "threads": torch.get_num_threads()}


def _write(results: dict) -> None:
    tmp = OUT.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(results, indent=1))
    os.replace(tmp, OUT)


def _child(method: str, n: int, threads: int) -> dict:
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072", "OMP_NUM_THREADS": str(threads)}
    done = subprocess.run([sys.executable, __file__, "--one", method, str(n), "--threads", str(threads)],
                          capture_output=True, text=True, check=True, env=env)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--one", nargs=2, metavar=("METHOD", "N"))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--sizes", default="2000,10000,45000")
    args = ap.parse_args()
    if args.one:
        print(json.dumps(measure_one(args.one[0], int(args.one[1]), args.threads)))
        return
    results = {
        "benchmark": "longnet", "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "machine": f"{platform.platform()} | {platform.processor() or platform.machine()} | cpus={os.cpu_count()}",
        "model": "3 layers, width 768, 8 heads, ffn 3072, segments (512,1),(1024,2),(2048,4), fp32, batch 1",
        "memory": "peak RSS (getrusage ru_maxrss) minus RSS after model + inputs, per subprocess, glibc "
                  "MALLOC_MMAP_THRESHOLD_=131072 so freed large buffers leave the RSS",
        "rounds": args.rounds, "threads": args.threads, "load_average_at_start": os.getloadavg(), "cases": [],
    }
    for n in (int(size) for size in args.sizes.split(",")):
        case: dict = {"N": n}
        methods = ["dilated", "dense"]
        if 8 * n * n * 4 > DENSE_MAX_BYTES:
            case["dense"] = f"skipped: 8 heads × N² float32 scores = {8 * n * n * 4 / 2**30:.1f} GiB"
            methods.remove("dense")
        runs: dict[str, list[dict]] = {method: [] for method in methods}
        loads = [os.getloadavg()[0]]
        for r in range(args.rounds):
            for method in methods[r % len(methods):] + methods[: r % len(methods)]:
                runs[method].append(_child(method, n, args.threads))
                loads.append(os.getloadavg()[0])
        for method, rs in runs.items():
            case[method] = {**rs[0], "seconds": round(statistics.median(r["seconds"] for r in rs), 2),
                            "seconds_rounds": [r["seconds"] for r in rs],
                            "extra_peak_bytes": max(r["extra_peak_bytes"] for r in rs)}
        if isinstance(case.get("dense"), dict):
            case["time_ratio_dense_over_dilated"] = round(case["dense"]["seconds"] / case["dilated"]["seconds"], 3)
            case["memory_ratio_dense_over_dilated"] = round(
                case["dense"]["extra_peak_bytes"] / max(case["dilated"]["extra_peak_bytes"], 1), 3)
        case["dilated_extra_bytes_per_token"] = round(case["dilated"]["extra_peak_bytes"] / n)
        case["load_average_max"] = round(max(loads), 2)
        case["noisy"] = max(loads) > (os.cpu_count() or 1)
        results["cases"].append(case)
        _write(results)
        print(json.dumps(case), flush=True)


if __name__ == "__main__":
    main()
