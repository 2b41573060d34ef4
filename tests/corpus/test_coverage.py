"""Acceptance (issue 3, point 3): synthetic cohorts of every source, built into a corpus, give records for every
template whose answer the default preprocessing keeps in the pixels (issue 28, point 7), and `corpus stats --json`
shows it."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from breastgpt.corpus.audit import AuditConfig, audit_corpus
from breastgpt.corpus.build import BuildConfig, SourceSpec, build_corpus
from breastgpt.corpus.cli import app as corpus_app
from breastgpt.corpus.pathway import pathway_template_ids
from breastgpt.corpus.templates import load_templates
from breastgpt.corpus.templates.evidence import unmet_conditions
from breastgpt.preprocessing import Preprocessing
from breastgpt.synth.cohort import GENERATORS, generate


def test_every_template_gets_records_from_the_synthetic_sources(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("BREASTGPT_DEID_SECRET", "coverage-secret-0123456789abcdef")
    roots = generate(tmp_path / "raw", patients=10, seed=1, workers=2)
    assert set(roots) == set(GENERATORS)
    summary = build_corpus(BuildConfig(out=tmp_path / "corpus",
                                       sources=tuple(SourceSpec(name, root) for name, root in roots.items()),
                                       seed=0, workers=2))  # both cores: the suite runs in one process
    assert summary.quarantined == 0 and summary.phi_gate == "passed"
    result = CliRunner().invoke(corpus_app, ["stats", str(tmp_path / "corpus"), "--json"])
    assert result.exit_code == 0, result.output
    stats = json.loads(result.stdout)
    templates = {t.id for t in load_templates().templates}
    assert len(templates) >= 136
    dropped = {t.id for t in load_templates().templates if unmet_conditions(t, Preprocessing())}
    assert dropped == {"scr-mam-laterality-choice"}  # the breast's side is gone after orientation normalisation
    templates |= set(pathway_template_ids())  # the linked cohort's patients give pathway records too
    assert set(stats["by_template"]) == templates - dropped
    assert all(count > 0 for count in stats["by_template"].values())
    assert set(stats["by_source"]) == set(GENERATORS)
    audit = audit_corpus(tmp_path / "corpus", AuditConfig(near_duplicates=False))
    assert audit.findings["unanswerable_from_pixels"] == []
    # Pathway templates are outside the per-template evidence table (their answers are the slide's labels, asked
    # after earlier studies): the audit counts their records as not covered by the contract.
    pathway = set(pathway_template_ids())
    assert audit.info["answerability"]["checked_templates"] == len(templates - dropped - pathway)
    assert audit.info["answerability"]["records_of_unknown_templates"] == sum(
        n for t, n in stats["by_template"].items() if t in pathway)
