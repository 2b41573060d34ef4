"""`breastgpt demo` end to end: wall time per stage, the learning criterion and the slide-branch comparison.

    python benchmarks/demo.py [--out /tmp/demo-bench] [--quick] [--fresh]

Runs the demo as `make demo` does (a fresh output folder unless --fresh is off and the folder exists, in which
case finished stages are reused and the wall time is not a cold-start figure) and writes
benchmarks/results/demo.json (or demo_quick.json) with the date, the machine, the load average before and after,
every stage's seconds and figures, and the results the demo printed.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import RESULTS, machine  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("/tmp/breastgpt-demo-bench"))
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--keep", action="store_true", help="reuse finished stages in --out (not a cold start)")
    args = parser.parse_args()
    if args.out.exists() and not args.keep:
        shutil.rmtree(args.out)
    from breastgpt.demo import run_demo

    info = machine()
    started = time.perf_counter()
    summary = run_demo(args.out, quick=args.quick, secret=b"benchmark-demo-secret-0123456789")
    wall = time.perf_counter() - started
    result = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": "python benchmarks/demo.py" + (" --quick" if args.quick else "") + (" --keep" if args.keep else ""),
        "cold_start": not args.keep,
        "machine": info,
        "wall_seconds": round(wall, 1),
        "under_10_minutes": wall < 600,
        "demo": summary.as_dict(),
    }
    path = RESULTS / ("demo_quick.json" if args.quick else "demo.json")
    path.write_text(json.dumps(result, indent=1, default=str) + "\n")
    for table in summary.tables():
        from rich.console import Console

        Console().print(table)
    print(f"wall {wall:.0f} s; wrote {path}")


if __name__ == "__main__":
    main()
