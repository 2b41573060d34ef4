"""The multi-turn golden loss curve: the tiny-debug recipe trained on three-turn conversations with an image in
turns 1 and 3 (`breastgpt.train.synthetic.synthetic_multiturn_records`, the pathway records' layout).

The tolerance is the single-turn curve's (tests/train/golden.py, measured across CPU kernel families and thread
counts); tests/train/test_golden_multiturn.py checks that it also holds here under another kernel family and that
planted changes still break it by far more.

Regenerate only when a change is meant to alter the numbers:
    python -m tests.train.golden_multiturn --write
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from tests.train.golden import CAPABILITIES, TOLERANCE, _cpu_model

GOLDEN = Path(__file__).resolve().parents[1] / "assets" / "losses" / "tiny-debug-multiturn.json"
RECORDS = 24


def run_multiturn(out: Path, *, lr: float | None = None, init_seed: int | None = None, threads: int = 0):
    from breastgpt.train.loop import train
    from breastgpt.train.recipes import get_recipe
    from breastgpt.train.synthetic import synthetic_multiturn_records

    config = get_recipe("tiny-debug")
    config.output_dir = str(out)
    config.data.train = str(synthetic_multiturn_records(out / "data", RECORDS, seed=0))
    config.data.synthetic_records = 0
    config.checkpoint.every_steps = 0
    config.threads = threads
    if lr is not None:
        config.optim.lr = lr
    if init_seed is not None:
        config.model.init_seed = init_seed
    return train(config)


def max_abs_diff(losses: list[float]) -> float:
    golden = json.loads(GOLDEN.read_text())["losses"]
    if len(losses) != len(golden):
        raise AssertionError(f"{len(losses)} losses against {len(golden)} golden ones")
    return max(abs(a - b) for a, b in zip(losses, golden))


def losses_in_subprocess(capability: str, threads: int = 0, timeout: float = 600) -> list[float]:
    env = {**os.environ, "ATEN_CPU_CAPABILITY": capability, **CAPABILITIES[capability]}
    done = subprocess.run([sys.executable, "-m", "tests.train.golden_multiturn", "--emit", "--threads", str(threads)],
                          env=env, cwd=Path(__file__).resolve().parents[2], capture_output=True, text=True,
                          timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"multi-turn golden run under {capability} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    import tempfile

    parser = argparse.ArgumentParser()
    parser.add_argument("--write", action="store_true", help="regenerate the golden curve")
    parser.add_argument("--emit", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        result = run_multiturn(Path(tmp) / "run", threads=args.threads)
    if args.emit:
        print(json.dumps(result.losses))
        return
    import torch
    import transformers

    payload = {"recipe": "tiny-debug", "data": f"synthetic_multiturn_records({RECORDS}, seed=0)",
               "steps": len(result.losses), "losses": result.losses, "tolerance": TOLERANCE,
               "made_with": {"torch": torch.__version__, "transformers": transformers.__version__, "cpu": _cpu_model()},
               "tolerance_measured_in": "tiny-debug.spread.json", "regenerate": "python -m tests.train.golden_multiturn --write"}
    text = json.dumps(payload, indent=1) + "\n"
    if args.write:
        GOLDEN.write_text(text)
    sys.stdout.write(text)


if __name__ == "__main__":
    main()
