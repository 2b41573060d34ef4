"""The seeded fuzz corpus (tests/io/fuzz_corpus.py) through `inspect` and the full decode, each file in a worker
process with a timeout: only typed outcomes, every bomb refused before it can allocate."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.conftest import REALDATA
from tests.io.fuzz_corpus import FORMATS, Case, build_corpus
from tests.io.fuzz_runner import problems, run_corpus, summarise

MIN_FILES = 150
PEAK_RSS_LIMIT_MB = 1024


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Case]]:
    folder = tmp_path_factory.mktemp("fuzz") / "corpus"
    return folder, build_corpus(folder, seed=0, scale=1, realdata=REALDATA if REALDATA.is_dir() else None)


@pytest.mark.timeout(600)
def test_every_fuzzed_file_is_accepted_or_refused_typed(corpus: tuple[Path, list[Case]]) -> None:
    folder, cases = corpus
    outcomes = run_corpus(folder, cases, timeout=20.0)
    summary = summarise(outcomes)
    assert summary["files"] == len(cases) >= MIN_FILES
    assert problems(outcomes) == []  # no untyped error, hang or crash; intact seeds read; edits refused as expected
    assert (summary["untyped"], summary["hang"], summary["crash"]) == (0, 0, 0)
    for fmt in FORMATS:
        counts = summary["per_format"][fmt]
        assert counts["files"] >= 3 and counts["refused"] >= 3, (fmt, counts)
        assert fmt == "special" or counts["accepted"] >= 1, (fmt, counts)
    assert summary["peak_rss_mb"] < PEAK_RSS_LIMIT_MB


@pytest.mark.timeout(300)
def test_every_bomb_is_refused_with_bounded_memory(corpus: tuple[Path, list[Case]]) -> None:
    folder, cases = corpus
    bombs = [case for case in cases if case.mutation == "bomb"]
    assert len(bombs) >= 15 and {case.fmt for case in bombs} == set(FORMATS) - {"special"}
    outcomes = run_corpus(folder, bombs, timeout=30.0)  # a fresh worker: its peak RSS is the bombs' alone
    assert [(o.case.name, o.result, o.error) for o in outcomes] == [(b.name, "refused", b.expect) for b in bombs]
    assert max(o.peak_rss_mb for o in outcomes) < PEAK_RSS_LIMIT_MB


def test_corpus_is_deterministic_for_a_seed(tmp_path: Path) -> None:
    first = build_corpus(tmp_path / "a", seed=3)
    time.sleep(1.1)  # formats that stamp the time to the second (HDF5 objects) must not leak it into the corpus
    second = build_corpus(tmp_path / "b", seed=3)
    assert first == second
    regular = [c.name for c in first if (tmp_path / "a" / c.name).is_file() and not (tmp_path / "a" / c.name).is_symlink()]
    differing = [n for n in regular if (tmp_path / "a" / n).read_bytes() != (tmp_path / "b" / n).read_bytes()]
    assert len(regular) > 100 and differing == []


@pytest.mark.slow
@pytest.mark.timeout(3600)
@pytest.mark.parametrize("seed", [1, 2])
def test_large_fuzz_sweep(tmp_path: Path, seed: int) -> None:
    cases = build_corpus(tmp_path / "corpus", seed=seed, scale=8, realdata=REALDATA if REALDATA.is_dir() else None)
    outcomes = run_corpus(tmp_path / "corpus", cases)
    summary = summarise(outcomes)
    assert summary["files"] >= 1000 and problems(outcomes) == []
    assert summary["peak_rss_mb"] < PEAK_RSS_LIMIT_MB
