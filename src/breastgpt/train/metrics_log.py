"""Training metrics to JSONL (``logs/metrics.jsonl``, one object per write) and TensorBoard (``logs/tb``)."""

from __future__ import annotations

import json
import time
from pathlib import Path


class MetricsLog:
    """Main-process-only writer; on other processes every call is a no-op."""

    def __init__(self, folder: Path, enabled: bool = True, tensorboard: bool = True, jsonl: bool = True):
        self.enabled = enabled
        self._jsonl = None
        self._tb = None
        if not enabled:
            return
        folder.mkdir(parents=True, exist_ok=True)
        if jsonl:
            self._jsonl = open(folder / "metrics.jsonl", "a", encoding="utf-8")
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(str(folder / "tb"))

    def write(self, step: int, values: dict[str, float]) -> None:
        if not self.enabled:
            return
        if self._jsonl is not None:
            self._jsonl.write(json.dumps({"step": step, "time": round(time.time(), 3), **values}) + "\n")
            self._jsonl.flush()
        if self._tb is not None:
            for key, value in values.items():
                self._tb.add_scalar(key, value, step)

    def close(self) -> None:
        if self._jsonl is not None:
            self._jsonl.close()
        if self._tb is not None:
            self._tb.close()
