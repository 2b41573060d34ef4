"""Acceptance (issue 3, point 3): synthetic cohorts of every source, built into a corpus, give records for every
template, and `corpus stats --json` shows it."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from breastgpt.corpus.build import BuildConfig, SourceSpec, build_corpus
from breastgpt.corpus.cli import app as corpus_app
from breastgpt.corpus.pathway import pathway_template_ids
from breastgpt.corpus.templates import load_templates
from breastgpt.synth.cohort import GENERATORS, generate


def test_every_template_gets_records_from_the_synthetic_sources(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("BREASTGPT_DEID_SECRET", "coverage-secret-0123456789abcdef")
    roots = generate(tmp_path / "raw", patients=10, seed=1)
    assert set(roots) == set(GENERATORS)
    summary = build_corpus(BuildConfig(out=tmp_path / "corpus",
                                       sources=tuple(SourceSpec(name, root) for name, root in roots.items()),
                                       seed=0))
    assert summary.quarantined == 0 and summary.phi_gate == "passed"
    result = CliRunner().invoke(corpus_app, ["stats", str(tmp_path / "corpus"), "--json"])
    assert result.exit_code == 0, result.output
    stats = json.loads(result.stdout)
    templates = {t.id for t in load_templates().templates}
    assert len(templates) >= 136
    templates |= set(pathway_template_ids())  # the linked cohort's patients give pathway records too
    assert set(stats["by_template"]) == templates
    assert all(count > 0 for count in stats["by_template"].values())
    assert set(stats["by_source"]) == set(GENERATORS)
