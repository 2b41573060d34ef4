"""Fuzz counts per format: the seeded corpus of tests/io/fuzz_corpus.py through `inspect` and the full decode.

Each file runs in a worker process with a per-file timeout (tests/io/fuzz_runner.py); the outcome is accepted
(read cleanly), refused (a typed `MedicalFileError`), untyped (any other exception), hang or crash. The
decompression bombs are then run again in a fresh worker, whose peak RSS is theirs alone. With `--baseline REF`
the same corpus also runs against the readers of another commit (checked out in a temporary worktree), measured
in the same run: the issue-27 baseline is d412ed1, the main branch before these changes.

    python benchmarks/fuzz.py [--seed 0] [--scale 1] [--baseline d412ed1]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import write_result  # noqa: E402

from tests.conftest import REALDATA  # noqa: E402
from tests.io.fuzz_corpus import build_corpus  # noqa: E402
from tests.io.fuzz_runner import problems, run_corpus, summarise  # noqa: E402


def run(folder: Path, cases: list, source: Path | None, timeout: float) -> dict[str, object]:
    start = time.perf_counter()
    outcomes = run_corpus(folder, cases, timeout=timeout, source=source)
    summary = summarise(outcomes)
    summary["wall_s"] = round(time.perf_counter() - start, 1)
    summary["problems"] = [{"file": p["case"]["name"], "result": p["result"], "error": p["error"],
                            "message": p["message"][-200:]} for p in problems(outcomes)]
    bombs = [case for case in cases if case.mutation == "bomb"]
    bomb_outcomes = run_corpus(folder, bombs, timeout=timeout, source=source)
    summary["bombs"] = {"files": len(bombs), "refused": sum(o.result == "refused" for o in bomb_outcomes),
                        "as_expected": sum(o.error == o.case.expect for o in bomb_outcomes),
                        "peak_rss_mb": max(o.peak_rss_mb for o in bomb_outcomes),
                        "each": {o.case.name: f"{o.result} {o.error}".strip() for o in bomb_outcomes}}
    return summary


def print_summary(label: str, summary: dict) -> None:
    print(f"{label}: {summary['files']} files, accepted {summary['accepted']}, refused {summary['refused']}, "
          f"untyped {summary['untyped']}, hang {summary['hang']}, crash {summary['crash']}; peak RSS "
          f"{summary['peak_rss_mb']} MB; bombs refused {summary['bombs']['refused']}/{summary['bombs']['files']} "
          f"(peak RSS {summary['bombs']['peak_rss_mb']} MB); {summary['wall_s']} s")
    for fmt, counts in summary["per_format"].items():
        print(f"  {fmt:8s} {counts}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--scale", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=20.0)
    parser.add_argument("--baseline", default=None, help="a commit whose readers run the same corpus")
    args = parser.parse_args()
    payload: dict[str, object] = {"seed": args.seed, "scale": args.scale, "per_file_timeout_s": args.timeout,
                                  "commit": _git("rev-parse", "--short", "HEAD"),
                                  "realdata": REALDATA.is_dir()}
    with tempfile.TemporaryDirectory() as folder:
        corpus = Path(folder) / "corpus"
        cases = build_corpus(corpus, seed=args.seed, scale=args.scale, realdata=REALDATA if REALDATA.is_dir() else None)
        payload["current"] = run(corpus, cases, None, args.timeout)
        print_summary("current", payload["current"])  # type: ignore[arg-type]
        if args.baseline:
            worktree = Path(folder) / "baseline"
            _git("worktree", "add", "--detach", str(worktree), args.baseline)
            try:
                payload["baseline"] = {"commit": args.baseline, **run(corpus, cases, worktree / "src", args.timeout)}
                print_summary(f"baseline {args.baseline}", payload["baseline"])  # type: ignore[arg-type]
            finally:
                _git("worktree", "remove", "--force", str(worktree))
    print(f"written {write_result('fuzz', payload)}")


def _git(*arguments: str) -> str:
    return subprocess.run(["git", *arguments], cwd=REPO, check=True, capture_output=True, text=True).stdout.strip()


if __name__ == "__main__":
    main()
