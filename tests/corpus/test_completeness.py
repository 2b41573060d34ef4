"""Issue 28 point 3: a source that yields no record or loses more than 20 % of its cases makes the build
incomplete — the corpus is written, `build_corpus` raises, `corpus build` exits 3 with a per-source table of
reasons — and `allow_partial` / `--allow-partial` accepts it. Point 4's CLI switch is checked here too."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from breastgpt.corpus.build import BuildConfig, IncompleteBuildError, SourceSpec, build_corpus
from breastgpt.corpus.completeness import SourceOutcome, outcome_table
from tests.clitext import words
from tests.corpus.fixtures import FULL_LABELS, SECRET, adapters_for, make_source, png_normaliser

ENV = "CORPUS_TEST_SECRET"


@pytest.fixture(autouse=True)
def secret(monkeypatch):
    monkeypatch.setenv(ENV, SECRET)


def _cases(prefix: str, n: int, broken: int = 0, bad_rows: int = 0) -> list[dict]:
    cases = [{"id": f"{prefix}{i:03d}", "patient": f"{prefix.upper()}-PAT-{i:04d}",
              "labels": dict(FULL_LABELS["mammography"])} for i in range(n)]
    cases += [{"id": f"{prefix}-broken{i}", "patient": f"{prefix.upper()}-BRK-{i:04d}", "bytes": b"not a png"}
              for i in range(broken)]
    cases += [{"id": f"{prefix}-bad{i}", "patient": "x", "bad_row": "BI-RADS code '7x' unknown"}
              for i in range(bad_rows)]
    return cases


def _build(src: Path, out: Path, **kw):
    names = sorted(p.name for p in src.iterdir())
    config = BuildConfig(out=out, sources=tuple(SourceSpec(n, src / n) for n in names), secret_env=ENV, **kw)
    return build_corpus(config, adapters=adapters_for(*names), normaliser=png_normaliser)


def test_outcome_counts_and_verdicts():
    assert SourceOutcome(samples=9, unusable=1, quarantined=1, records=40).verdict() == "ok"  # 2 of 10 = 20 %
    lossy = SourceOutcome(samples=8, unusable=2, quarantined=1, records=40)
    assert lossy.cases == 10 and lossy.lost == 3 and lossy.verdict() == "lost 30% of its cases (limit 20%)"
    assert SourceOutcome(samples=3, records=0).verdict() == "no records"
    assert SourceOutcome().verdict() == "no records"


def test_losing_more_than_a_fifth_is_not_accepted_but_written(tmp_path):
    src = tmp_path / "src"
    make_source(src / "alpha", "alpha", _cases("a", 6))
    make_source(src / "beta", "beta", _cases("b", 3, broken=1, bad_rows=1))  # 2 of 5 cases lost
    out = tmp_path / "out"
    with pytest.raises(IncompleteBuildError) as raised:
        _build(src, out)
    summary = raised.value.summary
    assert summary.incomplete == ["beta"] and not summary.accepted
    beta = summary.sources["beta"]
    assert (beta["cases"], beta["samples"], beta["unusable"], beta["quarantined"]) == (5, 4, 1, 1)
    assert beta["verdict"] == "lost 40% of its cases (limit 20%)" and beta["records"] > 0
    assert set(beta["reasons"].values()) == {1} and len(beta["reasons"]) == 2
    assert any(r.startswith("source_problem: ") for r in beta["reasons"])
    assert summary.sources["alpha"]["verdict"] == "ok" and summary.sources["alpha"]["lost"] == 0
    written = json.loads((out / "build_summary.json").read_text())
    assert written["accepted"] is False and written["incomplete"] == ["beta"]
    assert (out / "records.jsonl").is_file() and (out / "manifest.json").is_file()
    assert "beta" in str(raised.value) and "--allow-partial" in str(raised.value)
    accepted = _build(src, out, allow_partial=True)
    assert accepted.accepted and accepted.incomplete == ["beta"] and accepted.reused == 10


def test_source_with_no_records_is_not_accepted(tmp_path):
    src = tmp_path / "src"
    make_source(src / "alpha", "alpha", _cases("a", 4))
    make_source(src / "beta", "beta", [])
    with pytest.raises(IncompleteBuildError) as raised:
        _build(src, tmp_path / "out")
    assert raised.value.summary.incomplete == ["beta"]
    assert raised.value.summary.sources["beta"]["verdict"] == "no records"


def test_outcome_table_names_no_case():
    row = SourceOutcome(samples=4, unusable=1, records=9, missing_annotations={"roi_mask": 2},
                        reasons={"source_problem: image series for '<value>' not found": 1})
    table = outcome_table({"cbis_ddsm": row.as_dict()})
    assert "kept without roi_mask: 2" in table and "1 x source_problem: image series" in table
    assert table.splitlines()[1].split() == ["cbis_ddsm", "5", "1", "9", "2", "ok"]


def _cli_sources(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    make_source(src / "alpha", "alpha", _cases("a", 6))
    make_source(src / "beta", "beta", _cases("b", 2, bad_rows=2))
    return src


def test_cli_exits_3_with_the_table_and_allow_partial_accepts(tmp_path, monkeypatch):
    from breastgpt.corpus import build as build_module
    from breastgpt.corpus.cli import app

    src = _cli_sources(tmp_path)
    adapters = adapters_for("alpha", "beta")
    real = build_module.build_corpus
    monkeypatch.setattr(build_module, "build_corpus",
                        lambda config: real(config, adapters=adapters, normaliser=png_normaliser))
    spec = f"alpha={src / 'alpha'},beta={src / 'beta'}"
    base = ["build", "--sources", spec, "--secret-env", ENV]
    failed = CliRunner().invoke(app, [*base, "--out", str(tmp_path / "out")])
    assert failed.exit_code == 3, failed.output
    text = words(failed.output)
    assert "corpus build incomplete: beta" in text and "--allow-partial" in text
    assert "beta 4 2 " in text and "lost 50% of its cases (limit 20%)" in text
    assert text.count(" x source_problem: ") == 2, text
    accepted = CliRunner().invoke(app, [*base, "--out", str(tmp_path / "out"), "--allow-partial", "--json"])
    assert accepted.exit_code == 0, accepted.output
    result = json.loads(accepted.stdout)
    assert result["accepted"] is True and result["incomplete"] == ["beta"]
    assert result["sources"]["alpha"]["records"] > 0


def test_cli_ignore_dataset_splits(tmp_path, monkeypatch):
    from breastgpt.corpus import build as build_module
    from breastgpt.corpus.cli import app

    src = tmp_path / "src"
    cases = _cases("a", 12)
    for case in cases:
        case["dataset_split"] = "test" if case["id"] < "a004" else "train"
    make_source(src / "alpha", "alpha", cases)
    adapters = adapters_for("alpha")
    real = build_module.build_corpus
    monkeypatch.setattr(build_module, "build_corpus",
                        lambda config: real(config, adapters=adapters, normaliser=png_normaliser))

    def bench_patients(*extra: str) -> tuple[set[str], set[str]]:
        out = tmp_path / f"out{len(extra)}"
        result = CliRunner().invoke(app, ["build", "--sources", f"alpha={src / 'alpha'}", "--secret-env", ENV,
                                          "--out", str(out), "--json", *extra])
        assert result.exit_code == 0, result.output
        rows = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
        return {r["patient_key"] for r in rows if r["split"] == "bench"}, {r["patient_key"] for r in rows}

    official, everyone = bench_patients()
    assert len(official) == 4 and len(everyone) == 12
    hashed, _ = bench_patients("--ignore-dataset-splits")
    assert hashed != official
