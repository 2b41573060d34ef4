"""The tiny-debug golden loss curve: how it is produced, checked and (deliberately) regenerated.

Regenerate only when a change is meant to alter the numbers (model code, recipe, data generator):
    python -m tests.train.golden --write
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import tests.train.standins  # noqa: F401

GOLDEN = Path(__file__).resolve().parents[1] / "assets" / "losses" / "tiny-debug.json"
TOLERANCE = 1e-5


def run_golden(out: Path, checkpoint_every: int = 10):
    from breastgpt.train.loop import train
    from breastgpt.train.recipes import get_recipe

    config = get_recipe("tiny-debug")
    config.output_dir = str(out)
    config.checkpoint.every_steps = checkpoint_every
    return train(config)


def main() -> None:
    import tempfile

    import torch
    import transformers

    parser = argparse.ArgumentParser()
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        result = run_golden(Path(tmp) / "run")
    payload = {"recipe": "tiny-debug", "steps": len(result.losses), "losses": result.losses, "tolerance": TOLERANCE,
               "made_with": {"torch": torch.__version__, "transformers": transformers.__version__},
               "regenerate": "python -m tests.train.golden --write"}
    text = json.dumps(payload, indent=1) + "\n"
    if args.write:
        GOLDEN.parent.mkdir(parents=True, exist_ok=True)
        GOLDEN.write_text(text)
    sys.stdout.write(text)


if __name__ == "__main__":
    main()
