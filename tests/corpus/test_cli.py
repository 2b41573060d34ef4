"""The `corpus` sub-app, invoked directly with typer's CliRunner."""

from __future__ import annotations

import json
import shutil

from typer.testing import CliRunner

from breastgpt.corpus.cli import app
from breastgpt.corpus.records import read_records_jsonl, write_records_jsonl
from tests.corpus.test_audit import clean, clean_once  # noqa: F401  (fixtures)

runner = CliRunner()


def test_templates_json_counts():
    result = runner.invoke(app, ["templates", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["counts"]["total"] == len(data["templates"]) >= 136
    assert data["counts"]["by_stage_modality"]["treatment/pathology"] >= 15
    assert sum(data["counts"]["by_family"].values()) == data["counts"]["total"]
    plain = runner.invoke(app, ["templates"])
    assert plain.exit_code == 0 and f"{data['counts']['total']} task templates" in plain.output


def test_audit_stats_verify_export_on_a_clean_build(clean):
    _, out = clean
    audit = runner.invoke(app, ["audit", str(out), "--json"])
    assert audit.exit_code == 0, audit.output
    assert json.loads(audit.output)["leakage"] is False
    assert (out / "audit_report.json").is_file() and (out / "audit_report.txt").is_file()
    stats = runner.invoke(app, ["stats", str(out), "--json"])
    assert stats.exit_code == 0
    data = json.loads(stats.output)
    assert data["records"] == len(read_records_jsonl(out / "records.jsonl"))
    assert (out / "corpus_stats.png").read_bytes()[:4] == b"\x89PNG"
    assert runner.invoke(app, ["verify", str(out)]).exit_code == 0
    exported = runner.invoke(app, ["export", str(out), "--out", str(out / "swift.jsonl"), "--split", "bench"])
    assert exported.exit_code == 0 and (out / "swift.jsonl").is_file()


def test_audit_exits_nonzero_on_leakage(clean):
    _, out = clean
    records = read_records_jsonl(out / "records.jsonl")
    records[0].split = "bench" if records[0].split == "train" else "train"
    write_records_jsonl(out / "records.jsonl", records)
    result = runner.invoke(app, ["audit", str(out), "--no-near-duplicates"])
    assert result.exit_code == 1
    assert "LEAKAGE FOUND" in result.output and "patients_in_several_splits: 1" in result.output
    assert runner.invoke(app, ["verify", str(out)]).exit_code == 1  # records.jsonl no longer matches manifest


def test_build_cli_reports_bad_spec(tmp_path):
    result = runner.invoke(app, ["build", "--sources", "nonsense", "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "name=path" in result.output


def test_import_cli(tmp_path):
    from tests.bench.test_published import PUBLISHED  # the published-layout fixture (media not downloaded here)

    src = tmp_path / "pub.json"
    src.write_text(json.dumps(PUBLISHED))
    result = runner.invoke(app, ["import", str(src), "--out", str(tmp_path / "r.jsonl"), "--split", "bench"])
    assert result.exit_code == 0, result.output
    assert len(read_records_jsonl(tmp_path / "r.jsonl")) == 15
    assert "closed_vqa=7" in result.output and "grounding=2" in result.output


def test_build_cli_external_must_name_a_source(tmp_path):
    result = runner.invoke(app, ["build", "--sources", f"vindr={tmp_path}", "--out", str(tmp_path / "o"),
                                 "--external", "cbis_ddsm"])
    assert result.exit_code == 2
    assert "not among the sources" in result.output
