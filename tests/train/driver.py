"""Subprocess entry for tests: train a TrainConfig given as JSON and write the losses as JSON.

    python tests/train/driver.py CONFIG.json RESULT.json [--resume DIR] [--stall-on-save N]

``--stall-on-save N``: during the N-th checkpoint save, after the model file is written, create
``OUT/STALLED`` and sleep, so the test can kill the process in the middle of a save. Also runs under
``accelerate launch`` (every process trains; the main one writes RESULT).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[2]), str(Path(__file__).resolve().parents[2] / "src")]


def _stall_on_save(n: int, out: Path) -> None:
    from breastgpt.train import checkpoint

    real = checkpoint._write_main_files
    count = {"saves": 0}

    def stalling(tmp, content):
        real(tmp, content)
        count["saves"] += 1
        if count["saves"] == n:
            (out / "STALLED").write_text(str(tmp))
            time.sleep(600)

    checkpoint._write_main_files = stalling


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("config")
    parser.add_argument("result")
    parser.add_argument("--resume")
    parser.add_argument("--stall-on-save", type=int, default=0)
    args = parser.parse_args()
    from breastgpt.train.config import TrainConfig
    from breastgpt.train.loop import make_accelerator, train

    config = TrainConfig.from_dict(json.loads(Path(args.config).read_text()))
    if args.stall_on_save:
        _stall_on_save(args.stall_on_save, Path(config.output_dir))
    accelerator = make_accelerator(config)
    result = train(config, resume=args.resume, accelerator=accelerator)
    if accelerator.is_main_process:
        Path(args.result).write_text(json.dumps({"losses": result.losses, "processes": accelerator.num_processes,
                                                 "distributed_type": str(accelerator.distributed_type)}))


if __name__ == "__main__":
    main()
