"""Run a fuzz corpus through `inspect` and the full decode, each file in a worker process with a timeout.

The worker (`python -m tests.io.fuzz_runner worker`) reads one path per line, runs `inspect_path` (whose
output must be strict JSON) then `decode_path`, and answers with the outcome and its own peak RSS so far.
A file that runs past the timeout is a hang and a dead worker a crash; either way a fresh worker takes over, as it
also does after a MemoryError or once the worker's RSS passed `RESTART_RSS_MB` (so one file's allocation cannot
fail the next ones: this matters for baseline runs of unprotected readers).
Outcomes: accepted (both succeeded), refused (a `MedicalFileError`), untyped (any other exception), hang, crash.
"""

from __future__ import annotations

import json
import os
import resource
import select
import subprocess
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

from tests.io.fuzz_corpus import FORMATS, Case

REPO = Path(__file__).resolve().parents[2]
WORKER_ADDRESS_SPACE = 6 * 1024**3  # a runaway allocation fails in the worker instead of swamping the machine
RESTART_RSS_MB = 1536


@dataclass
class Outcome:
    case: Case
    result: str  # accepted | refused | untyped | hang | crash
    error: str = ""  # error class name
    message: str = ""
    stage: str = ""  # inspect | decode
    seconds: float = 0.0
    peak_rss_mb: float = 0.0  # the worker's peak RSS after this file (a running maximum)


def evaluate(path: Path) -> dict[str, object]:
    """inspect then decode one file; the outcome as a JSON-ready dict."""
    from breastgpt.io import MedicalFileError, decode_path, inspect_path

    stage = "inspect"
    try:
        json.dumps(inspect_path(path), allow_nan=False)  # the CLI prints this: it must be strict JSON
        stage = "decode"
        decode_path(path)
    except MedicalFileError as exc:
        return {"result": "refused", "error": type(exc).__name__, "message": str(exc)[:400], "stage": stage}
    except BaseException as exc:  # the finding this harness exists to catch (Rust panics are BaseExceptions)
        if isinstance(exc, KeyboardInterrupt):
            raise
        return {"result": "untyped", "error": type(exc).__name__, "message": f"{exc}"[:400], "stage": stage}
    return {"result": "accepted", "stage": stage}


def peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM). Not getrusage's ru_maxrss: on Linux that survives fork + exec
    and so starts at the RSS of the process that spawned the worker (a pytest session can hold gigabytes)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # no procfs: an upper bound


def worker() -> None:
    import warnings

    resource.setrlimit(resource.RLIMIT_AS, (WORKER_ADDRESS_SPACE, WORKER_ADDRESS_SPACE))
    warnings.simplefilter("ignore")
    import breastgpt.io  # noqa: F401 - imported before the first file so its time is not charged to it

    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        start = time.perf_counter()
        answer = evaluate(Path(line.rstrip("\n")))
        answer["seconds"] = round(time.perf_counter() - start, 3)
        answer["peak_rss_mb"] = peak_rss_mb()
        print(json.dumps(answer), flush=True)


class _Worker:
    def __init__(self, source: Path | None = None) -> None:
        # `source`: another checkout's src/ whose breastgpt the worker imports instead (a baseline run).
        paths = ([str(source)] if source else []) + [str(REPO), os.environ.get("PYTHONPATH", "")]
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(paths))
        self.process = subprocess.Popen([sys.executable, "-m", "tests.io.fuzz_runner", "worker"], cwd=REPO, env=env,
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                        text=True, bufsize=1)
        if not isinstance(self._read(120.0), dict):
            raise RuntimeError("fuzz worker did not start")

    def ask(self, path: Path, timeout: float) -> dict | str:
        """The worker's answer, or "hang" (no answer within `timeout`) or "crash" (the worker died)."""
        assert self.process.stdin is not None
        try:
            self.process.stdin.write(f"{path}\n")
            self.process.stdin.flush()
        except BrokenPipeError:
            return "crash"
        return self._read(timeout)

    def _read(self, timeout: float) -> dict | str:
        assert self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], timeout)
        if not ready:
            return "hang"
        line = self.process.stdout.readline()
        return json.loads(line) if line else "crash"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()


def run_corpus(folder: Path, cases: list[Case], *, timeout: float = 20.0, source: Path | None = None) -> list[Outcome]:
    """Every case through a worker; a hang or crash is recorded and a fresh worker continues."""
    outcomes: list[Outcome] = []
    worker_process = _Worker(source)
    try:
        for case in cases:
            start = time.perf_counter()
            answer = worker_process.ask(folder / case.name, timeout)
            if isinstance(answer, str):
                worker_process.stop()
                outcomes.append(Outcome(case, answer, seconds=round(time.perf_counter() - start, 3)))
                worker_process = _Worker(source)
                continue
            outcomes.append(Outcome(case, **answer))  # type: ignore[arg-type]
            if answer.get("error") == "MemoryError" or float(answer["peak_rss_mb"]) > RESTART_RSS_MB:
                worker_process.stop()
                worker_process = _Worker(source)
    finally:
        worker_process.stop()
    return outcomes


def summarise(outcomes: list[Outcome]) -> dict[str, object]:
    """Counts per format (accepted / refused / untyped / hang / crash, refusals by error class) and overall."""
    per_format: dict[str, dict[str, object]] = {}
    for fmt in FORMATS:
        mine = [o for o in outcomes if o.case.fmt == fmt]
        counts = Counter(o.result for o in mine)
        per_format[fmt] = {"files": len(mine), **{k: counts.get(k, 0) for k in ("accepted", "refused", "untyped", "hang", "crash")},
                           "refused_by_error": dict(sorted(Counter(o.error for o in mine if o.result == "refused").items()))}
    totals = Counter(o.result for o in outcomes)
    return {"files": len(outcomes), **{k: totals.get(k, 0) for k in ("accepted", "refused", "untyped", "hang", "crash")},
            "typed_only": totals.get("untyped", 0) + totals.get("hang", 0) + totals.get("crash", 0) == 0,
            "peak_rss_mb": max((o.peak_rss_mb for o in outcomes), default=0.0),
            "slowest_file_s": max((o.seconds for o in outcomes), default=0.0), "per_format": per_format}


def problems(outcomes: list[Outcome]) -> list[dict[str, object]]:
    """Outcomes the acceptance forbids: untyped, hang, crash, an intact seed refused, a hostile file or bomb that
    was not refused with its expected error."""
    bad = []
    for o in outcomes:
        expected = o.case.expect.split("|") if o.case.expect else []
        if (o.result in ("untyped", "hang", "crash") or (o.case.mutation == "intact" and o.result != "accepted")
                or (expected and (o.error or o.result) not in expected)):
            bad.append(asdict(o))
    return bad


if __name__ == "__main__" and sys.argv[1:] == ["worker"]:
    worker()
