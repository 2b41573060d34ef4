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
import sys
from pathlib import Path

from tests.train.golden import TOLERANCE, _cpu_model, golden_config
from tests.train.golden import losses_in_subprocess as golden_losses_in_subprocess
from tests.train.golden import max_abs_diff as golden_max_abs_diff

GOLDEN = Path(__file__).resolve().parents[1] / "assets" / "losses" / "tiny-debug-multiturn.json"
RECORDS = 24


def run_multiturn(out: Path, **changes):
    from breastgpt.train.loop import train
    from breastgpt.train.synthetic import synthetic_multiturn_records

    config = golden_config(out, checkpoint_every=0, **changes)
    config.data.train = str(synthetic_multiturn_records(out / "data", RECORDS, seed=0))
    config.data.synthetic_records = 0
    return train(config)


def max_abs_diff(losses: list[float]) -> float:
    return golden_max_abs_diff(losses, json.loads(GOLDEN.read_text())["losses"])


def losses_in_subprocess(capability: str, threads: int = 0, timeout: float = 600) -> list[float]:
    return golden_losses_in_subprocess(capability, threads, timeout, module="tests.train.golden_multiturn")


def main() -> None:
    import tempfile

    parser = argparse.ArgumentParser()
    parser.add_argument("--write", action="store_true", help="regenerate the golden curve")
    parser.add_argument("--emit", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--planted", default="{}", help=argparse.SUPPRESS)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        result = run_multiturn(Path(tmp) / "run", threads=args.threads, **json.loads(args.planted))
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
