"""Load test of `breastgpt serve`: N requests at concurrency C against a tiny random-weight checkpoint on
loopback, with dynamic batching (max_batch 8) and one-at-a-time (max_batch 1) measured in the same run.

Reports errors, p50/p95 latency and throughput for each mode: the two modes alternate over `--rounds` rounds
(order rotated) and each figure is the median over rounds; torch threads are pinned, the load average is
recorded and the result marked noisy above the core count. Traffic goes only to 127.0.0.1 and the script stops
by itself after N requests per mode and round.

    python benchmarks/serve_load.py [--requests 200] [--concurrency 32] [--rounds 3] [--threads 1]
"""

from __future__ import annotations

import argparse
import base64
import concurrent.futures
import io
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT), str(Path(__file__).resolve().parent)]

from _common import load_record, write_result  # noqa: E402

from breastgpt.infer.engine import Engine  # noqa: E402
from tests.infer.checkpoint import save_tiny_checkpoint  # noqa: E402
from tests.serve.fakes import API_KEY, running_server  # noqa: E402


def image_url(seed: int) -> str:
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (96, 96, 3), dtype=np.uint8)).save(buffer, "PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def one_request(url: str, index: int, images: list[str]) -> tuple[int, float]:
    body = {"model": "breastgpt", "max_tokens": 8, "temperature": 0, "stage": "screening",
            "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": images[index % 4]}},
                                                      {"type": "text", "text": f"Case {index}: BI-RADS?"}]}]}
    start = time.perf_counter()
    response = httpx.post(f"{url}/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {API_KEY}"},
                          timeout=600)
    return response.status_code, time.perf_counter() - start


def run_mode(engine: Engine, folder: Path, max_batch: int, requests: int, concurrency: int) -> dict[str, object]:
    images = [image_url(seed) for seed in range(4)]
    with running_server(engine, folder, max_batch=max_batch, batch_window_ms=20, max_queue=requests) as url:
        start = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
            outcomes = list(pool.map(lambda i: one_request(url, i, images), range(requests)))
        elapsed = time.perf_counter() - start
        stats = httpx.get(f"{url}/v1/stats", headers={"Authorization": f"Bearer {API_KEY}"}).json()
    latencies = sorted(seconds for _, seconds in outcomes)
    return {"max_batch": max_batch, "requests": requests, "concurrency": concurrency,
            "errors": sum(code != 200 for code, _ in outcomes),
            "p50_s": round(statistics.median(latencies), 3),
            "p95_s": round(latencies[int(0.95 * (len(latencies) - 1))], 3),
            "throughput_rps": round(requests / elapsed, 2), "wall_s": round(elapsed, 2),
            "mean_batch_size": round(stats["mean_batch_size"], 2)}


def _median_mode(runs: list[dict[str, object]]) -> dict[str, object]:
    merged = dict(runs[0])
    for key in ("errors", "p50_s", "p95_s", "throughput_rps", "wall_s", "mean_batch_size"):
        merged[key] = round(statistics.median(run[key] for run in runs), 3)
    merged["errors"] = max(run["errors"] for run in runs)  # any failed request counts
    merged["throughput_rps_rounds"] = [run["throughput_rps"] for run in runs]
    return merged


def main() -> None:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the server's engine")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    runs: dict[int, list[dict[str, object]]] = {8: [], 1: []}
    loads = [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory() as folder:
        engine = Engine.from_pretrained(save_tiny_checkpoint(Path(folder) / "ckpt"), device="cpu")
        for r in range(args.rounds):
            for batch in ((8, 1) if r % 2 == 0 else (1, 8)):
                runs[batch].append(run_mode(engine, Path(folder), batch, args.requests, args.concurrency))
                loads.append(os.getloadavg()[0])
    modes = [_median_mode(runs[8]), _median_mode(runs[1])]
    for mode in modes:
        print(mode)
    batched, single = modes
    write_result("serve_load", {"model": "tiny random-weight BreastGPT (CPU)", "modes": modes,
                                "rounds": args.rounds, "threads": args.threads, **load_record(loads),
                                "throughput_ratio_batched_vs_single": round(batched["throughput_rps"]
                                                                           / single["throughput_rps"], 2)})


if __name__ == "__main__":
    main()
