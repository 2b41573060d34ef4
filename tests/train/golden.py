"""The tiny-debug golden loss curve: how it is produced, checked, its tolerance measured, and (deliberately) redone.

The curve is 20 losses of the `tiny-debug` recipe (deterministic kernels, one thread). Another CPU gives slightly
different losses: ATen picks vectorised kernels by instruction set (default / AVX2 / AVX-512), MKL and oneDNN pick
their own, and a different thread count splits reductions differently. The tolerance is therefore measured, not
guessed:

    python -m tests.train.golden --spread      # re-measure on this machine; writes tiny-debug.spread.json

runs the recipe in fresh processes under every instruction set this CPU has (``ATEN_CPU_CAPABILITY``, with MKL and
oneDNN capped alike through ``MKL_ENABLE_INSTRUCTIONS`` / ``ONEDNN_MAX_CPU_ISA``) on 1 and 2 threads, and the
planted changes the check must still catch (one learning-rate digit, another init seed). TOLERANCE is the largest
kernel/thread spread seen (here and in reports from other machines, listed in the spread file) times a safety
factor, and must stay far below the smallest planted effect; tests/train/test_golden.py checks both.

Regenerate the curve only when a change is meant to alter the numbers (model code, recipe, data generator):
    python -m tests.train.golden --write
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

GOLDEN = Path(__file__).resolve().parents[1] / "assets" / "losses" / "tiny-debug.json"
SPREAD = GOLDEN.with_name("tiny-debug.spread.json")
TOLERANCE = 2e-4
SAFETY_FACTOR = 5  # TOLERANCE must cover this many times the largest spread seen
# Planted changes the check must catch: one digit of the learning rate (3e-3 -> 4e-3), another init seed.
PLANTED = {"lr 4e-3": {"lr": 4e-3}, "init_seed 1": {"init_seed": 1}}
# ATen capability -> the matching caps for MKL and oneDNN (None: leave the library's own choice).
CAPABILITIES = {
    "default": {"MKL_ENABLE_INSTRUCTIONS": "SSE4_2", "ONEDNN_MAX_CPU_ISA": "SSE41"},
    "avx2": {"MKL_ENABLE_INSTRUCTIONS": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2"},
    "avx512": {},
}


def golden_config(out: Path, checkpoint_every: int = 10, *, lr: float | None = None, init_seed: int | None = None,
                  threads: int = 0):
    """The tiny-debug recipe as the golden curves run it, with an optional planted change."""
    from breastgpt.train.recipes import get_recipe

    config = get_recipe("tiny-debug")
    config.output_dir = str(out)
    config.checkpoint.every_steps = checkpoint_every
    config.threads = threads
    if lr is not None:
        config.optim.lr = lr
    if init_seed is not None:
        config.model.init_seed = init_seed
    return config


def run_golden(out: Path, checkpoint_every: int = 10, **changes):
    from breastgpt.train.loop import train

    return train(golden_config(out, checkpoint_every, **changes))


def max_abs_diff(losses: list[float], golden: list[float] | None = None) -> float:
    golden = golden if golden is not None else json.loads(GOLDEN.read_text())["losses"]
    if len(losses) != len(golden):
        raise AssertionError(f"{len(losses)} losses against {len(golden)} golden ones")
    return max(abs(a - b) for a, b in zip(losses, golden))


def capabilities_here() -> list[str]:
    """ATen capabilities this CPU can run (AVX-512 needs its foundation flags)."""
    flags = set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    except OSError:
        pass
    found = ["default"]
    if "avx2" in flags:
        found.append("avx2")
    if {"avx512f", "avx512bw", "avx512vl", "avx512dq"} <= flags:
        found.append("avx512")
    return found


def losses_in_subprocess(capability: str, threads: int = 0, timeout: float = 600, *,
                         module: str = "tests.train.golden", **planted) -> list[float]:
    """The golden run of `module` (its `--emit`) in a fresh interpreter whose kernels are capped at `capability`
    (set before torch loads)."""
    env = {**os.environ, "ATEN_CPU_CAPABILITY": capability, **CAPABILITIES[capability]}
    args = [sys.executable, "-m", module, "--emit", "--threads", str(threads), "--planted", json.dumps(planted)]
    done = subprocess.run(args, env=env, cwd=Path(__file__).resolve().parents[2], capture_output=True, text=True,
                          timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"{module} run under {capability} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _emit(threads: int, planted: dict) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        result = run_golden(Path(tmp) / "run", checkpoint_every=0, threads=threads, **planted)
    print(json.dumps(result.losses))


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def measure_spread() -> dict:
    """Every capability x {1, 2} threads, and the planted changes, each in a fresh process: max |diff| to the golden."""
    runs = []
    for capability in capabilities_here():
        for threads in (1, 2):
            diff = max_abs_diff(losses_in_subprocess(capability, threads))
            runs.append({"capability": capability, "threads": threads, "max_abs_diff": diff})
            print(f"{capability:8s} {threads} thread(s): {diff:.3e}", file=sys.stderr)
    planted = {}
    for name, change in PLANTED.items():
        planted[name] = max_abs_diff(losses_in_subprocess(capabilities_here()[-1], 1, **change))
        print(f"planted {name}: {planted[name]:.3e}", file=sys.stderr)
    previous = json.loads(SPREAD.read_text()) if SPREAD.is_file() else {}
    return {"machine": {"cpu": _cpu_model(), "platform": platform.platform(), "capabilities": capabilities_here()},
            "runs": runs, "planted": planted, "reported_elsewhere": previous.get("reported_elsewhere", []),
            "tolerance": TOLERANCE, "measure": "python -m tests.train.golden --spread", "safety_factor": SAFETY_FACTOR}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--write", action="store_true", help="regenerate the golden curve")
    parser.add_argument("--spread", action="store_true", help="measure the kernel/thread spread on this machine")
    parser.add_argument("--emit", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--planted", default="{}", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.emit:
        _emit(args.threads, json.loads(args.planted))
        return
    if args.spread:
        text = json.dumps(measure_spread(), indent=1) + "\n"
        SPREAD.write_text(text)
        sys.stdout.write(text)
        return
    import tempfile

    import torch
    import transformers

    with tempfile.TemporaryDirectory() as tmp:
        result = run_golden(Path(tmp) / "run")
    payload = {"recipe": "tiny-debug", "steps": len(result.losses), "losses": result.losses, "tolerance": TOLERANCE,
               "made_with": {"torch": torch.__version__, "transformers": transformers.__version__,
                             "cpu": _cpu_model()},
               "tolerance_measured_in": SPREAD.name, "regenerate": "python -m tests.train.golden --write"}
    text = json.dumps(payload, indent=1) + "\n"
    if args.write:
        GOLDEN.parent.mkdir(parents=True, exist_ok=True)
        GOLDEN.write_text(text)
    sys.stdout.write(text)


if __name__ == "__main__":
    main()
