"""CPU thread budget for training, inference and the demo: never more compute threads than free cores.

PyTorch's intra-op threads spin while they wait for each other, so a process that starts as many threads as the
machine has cores while other processes are busy slows down several-fold — not by the share the others take. The
default therefore counts the cores this process may use (its CPU affinity) and leaves out those other processes
keep busy *now*: the kernel's count of runnable tasks (`procs_running` in /proc/stat), sampled a few times and
taken at its median, so a short burst does not decide it. The load average is not used: it remembers minutes of
past work (on a fresh machine, the environment's installation).

Precedence: an explicit value (``--threads``, ``TrainConfig.threads``, ``run_demo(threads=...)``), then the
``BREASTGPT_THREADS`` environment variable, then the automatic choice above.
"""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

ENV_VAR = "BREASTGPT_THREADS"
_SAMPLES = 5
_SAMPLE_GAP_S = 0.01


class ThreadsError(ValueError):
    """A thread count that is not a positive integer."""


def usable_cores() -> int:
    """Cores this process may run on (its affinity mask where the platform has one)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def busy_elsewhere(stat: Path = Path("/proc/stat")) -> int | None:
    """Runnable tasks other than this one, median of a few samples; None where /proc/stat is not readable."""
    samples = []
    for i in range(_SAMPLES):
        try:
            lines = stat.read_text().splitlines()
        except OSError:
            return None
        running = next((int(line.split()[1]) for line in lines if line.startswith("procs_running ")), None)
        if running is None:
            return None
        samples.append(max(0, running - 1))  # the reading task itself is running
        if i + 1 < _SAMPLES:
            time.sleep(_SAMPLE_GAP_S)
    return int(statistics.median(samples))


def _from_env() -> int | None:
    raw = os.environ.get(ENV_VAR, "").strip()
    if not raw:
        return None
    try:
        value = int(raw)
    except ValueError:
        raise ThreadsError(f"{ENV_VAR}={raw!r} is not an integer; set a thread count >= 1 or unset it") from None
    if value < 1:
        raise ThreadsError(f"{ENV_VAR}={value} must be >= 1 (or unset it for the automatic choice)")
    return value


def choose_threads(requested: int | None = None) -> int:
    """The thread count to use: `requested`, else $BREASTGPT_THREADS, else the free usable cores (at least 1)."""
    if requested is not None:
        if requested < 1:
            raise ThreadsError(f"threads must be >= 1, got {requested}")
        return requested
    from_env = _from_env()
    if from_env is not None:
        return from_env
    cores = usable_cores()
    busy = busy_elsewhere()
    return cores if busy is None else max(1, min(cores, cores - busy))


def apply_threads(requested: int | None = None) -> int:
    """Set torch's intra-op thread count from :func:`choose_threads` and return it."""
    import torch

    threads = choose_threads(requested)
    torch.set_num_threads(threads)
    return threads


__all__ = ["ENV_VAR", "ThreadsError", "apply_threads", "busy_elsewhere", "choose_threads", "usable_cores"]
