"""Training step time under the automatic thread budget vs "every core", on an idle and on a shared machine.

The shared machine is simulated by competitors started by this script: processes that each keep one core busy
(a pure-Python spin, like another job's data loader). Policies, measured in the same run, rounds interleaved:
- "every core": torch threads = usable cores (what PyTorch does by default, and what training did before);
- "automatic": `breastgpt.threads.choose_threads()` asked while the competitors run.
The model is the ~10 M-parameter BreastGPT config of train_throughput.py (fp32, text batches). Each cell is the
median seconds per step over rounds; the ratio is every-core / automatic (> 1: the automatic budget is faster).

    python benchmarks/threads.py [--rounds 5] [--steps 4] [--out benchmarks/results/threads.json]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT), str(ROOT / "benchmarks")]

SPIN = "import time\nend = time.time() + 3600\nwhile time.time() < end:\n    pass\n"


def start_competitors(n: int) -> list[subprocess.Popen]:
    competitors = [subprocess.Popen([sys.executable, "-c", SPIN]) for _ in range(n)]
    time.sleep(0.5)  # let them reach the spin before anyone counts runnable tasks
    return competitors


def stop(competitors: list[subprocess.Popen]) -> None:
    for process in competitors:
        process.kill()
        process.wait()


def seconds_per_step(model, threads: int, steps: int, batch: int, seq: int) -> float:
    import torch

    from train_throughput import measure

    torch.set_num_threads(threads)
    return measure(model, batch, seq, steps, "cpu")["seconds_per_step"]


def main(argv: list[str] | None = None) -> dict:
    import torch

    from _common import write_result
    from breastgpt.threads import choose_threads, usable_cores
    from train_throughput import build, ten_million_config

    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--seq", type=int, default=256)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    os.environ.pop("BREASTGPT_THREADS", None)
    load_at_start = os.getloadavg()[0]
    cores = usable_cores()
    torch.manual_seed(0)
    model = build(ten_million_config(), "all", False, "cpu", torch.float32)
    conditions = {"idle": 0, "one core busy elsewhere": 1}
    times: dict[str, dict[str, list[float]]] = {c: {"every core": [], "automatic": []} for c in conditions}
    chosen: dict[str, list[int]] = {c: [] for c in conditions}
    for _ in range(args.rounds):
        for condition, busy in conditions.items():
            competitors = start_competitors(busy)
            try:
                auto = choose_threads()
                chosen[condition].append(auto)
                for policy, threads in (("every core", cores), ("automatic", auto)):
                    times[condition][policy].append(seconds_per_step(model, threads, args.steps, args.batch,
                                                                     args.seq))
            finally:
                stop(competitors)
    results = {}
    for condition in conditions:
        med = {policy: statistics.median(values) for policy, values in times[condition].items()}
        results[condition] = {"seconds_per_step": med, "automatic_threads": chosen[condition],
                              "every_core_threads": cores, "every_core_over_automatic": med["every core"] / med["automatic"],
                              "rounds": {policy: values for policy, values in times[condition].items()}}
        print(f"{condition:26s} every core {med['every core']:.3f} s/step, automatic "
              f"({chosen[condition]} threads) {med['automatic']:.3f} s/step: x{results[condition]['every_core_over_automatic']:.2f}")
    payload = {"model": "10m (train_throughput.py), fp32, full fine-tune", "batch": args.batch, "seq": args.seq,
               "steps_per_cell": args.steps, "rounds": args.rounds, "usable_cores": cores,
               "noisy": load_at_start > cores, "results": results}
    write_result("threads", payload, args.out)
    return payload


if __name__ == "__main__":
    main()
