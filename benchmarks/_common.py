"""Shared helpers for benchmark scripts: machine description and result writing."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
# a benchmark imports this module first: the load when it started, not when it writes its result minutes later
_LOAD_AT_START = list(os.getloadavg())


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo) and its widest vector instruction set. Trained figures depend on the
    machine: the same code, seeds and thread count can train to other figures on another CPU (other float kernels),
    so a result that pools runs must say where each ran."""
    name = platform.processor() or platform.machine()
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return name
    name = next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")), name)
    flags = next((ln.split(":", 1)[1].split() for ln in lines if ln.startswith("flags")), [])
    return f"{name} ({'AVX-512' if 'avx512f' in flags else 'AVX2' if 'avx2' in flags else 'no AVX2'})"


def machine() -> dict[str, object]:
    info: dict[str, object] = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "processor": platform.processor() or platform.machine(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "load_average_at_start": _LOAD_AT_START,
    }
    try:
        import torch

        info["torch"] = torch.__version__
        info["cuda"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except ImportError:
        pass
    return info


def time_repeated(function: Callable[[], object], repeats: int, warmup: int = 1) -> list[float]:
    """Wall-clock seconds of each of `repeats` calls after `warmup` untimed calls."""
    for _ in range(warmup):
        function()
    timings = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        timings.append(time.perf_counter() - start)
    return timings


def time_interleaved(functions: dict[str, Callable[[], object]], rounds: int, warmup: int = 1) -> dict[str, list[float]]:
    """Wall-clock seconds per round of each function, rounds interleaved and the order rotated every round, so a
    change of machine load during the run falls on every contender alike."""
    names = list(functions)
    for _ in range(warmup):
        for name in names:
            functions[name]()
    timings: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        for name in names[r % len(names):] + names[: r % len(names)]:
            start = time.perf_counter()
            functions[name]()
            timings[name].append(time.perf_counter() - start)
    return timings


def load_record(loads: list[float]) -> dict[str, object]:
    """The highest 1-minute load average seen and whether it exceeded the core count (figures then noisy)."""
    highest = max(loads)
    return {"load_average_max": round(highest, 2), "noisy": highest > (os.cpu_count() or 1)}


def write_result(name: str, payload: dict[str, object], target: Path | None = None) -> Path:
    """Write `target` (default benchmarks/results/<name>.json) atomically, stamped with date and machine."""
    document = {"benchmark": name, "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                "machine": {**machine(), "load_average_at_end": list(os.getloadavg())}, **payload}
    target = Path(target) if target is not None else RESULTS / f"{name}.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_suffix(".json.partial")
    temporary.write_text(json.dumps(document, indent=2) + "\n")
    os.replace(temporary, target)
    return target
