"""Entry point for the kill/resume test: builds the fixture sources in a subprocess.

usage: python -m tests.corpus.build_runner SRC_DIR OUT_DIR WORKERS
"""

from __future__ import annotations

import sys
from pathlib import Path

from breastgpt.corpus.build import BuildConfig, SourceSpec, build_corpus
from tests.corpus.fixtures import adapters_for, png_normaliser


def main() -> None:
    src, out, workers = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
    names = sorted(p.name for p in src.iterdir() if p.is_dir())
    config = BuildConfig(out=out, sources=tuple(SourceSpec(n, src / n) for n in names), workers=workers,
                         secret_env="CORPUS_TEST_SECRET")
    summary = build_corpus(config, adapters=adapters_for(*names), normaliser=png_normaliser)
    print(f"processed={summary.processed} reused={summary.reused} records={summary.records}")


if __name__ == "__main__":
    main()
