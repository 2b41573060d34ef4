"""`breastgpt deid run|scan` through the sub-app."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from breastgpt.deid.cli import app
from breastgpt.deid.pseudonym import SECRET_ENV_VAR
from tests.deid.conftest import SECRET, Cohort

runner = CliRunner()


def test_run_then_scan_clean(cohort: Cohort, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = runner.invoke(app, ["run", str(cohort.root), str(out), "--source", "t", "--us-regions", "--json"],
                           env={SECRET_ENV_VAR: SECRET.decode()})
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["counts"] == {"written": 4}
    assert all(not Path(record["output"]).is_absolute() for record in payload["files"])
    assert str(cohort.root) not in result.stdout
    scan = runner.invoke(app, ["scan", str(out), "--reference", str(cohort.root), "--json"])
    assert scan.exit_code == 0, scan.output
    report = json.loads(scan.stdout)
    assert report["findings"] == [] and report["values"] > 50 and report["unreadable_references"] == 0


def test_scan_finds_a_leak_and_exits_1(cohort: Cohort, tmp_path: Path) -> None:
    leak = tmp_path / "out" / "note.txt"
    leak.parent.mkdir()
    leak.write_text("patient MRN4471902")
    scan = runner.invoke(app, ["scan", str(leak.parent), "--reference", str(cohort.mg1), "--json"])
    assert scan.exit_code == 1
    findings = json.loads(scan.stdout)["findings"]
    assert [(finding["kind"], finding["masked"]) for finding in findings] == [("patient_id", "m********2")]
    assert "MRN4471902" not in scan.stdout


def test_scan_flags_scheduled_step_id_and_implementation_version_name(cohort: Cohort, tmp_path: Path) -> None:
    """Issue 27: both survived `deid run` and were not collected by `deid scan`."""
    leak = tmp_path / "out" / "note.txt"
    leak.parent.mkdir()
    leak.write_text("step SPS7734021Q written by HILDEGARD_PACS7")
    scan = runner.invoke(app, ["scan", str(leak.parent), "--reference", str(cohort.mg1), "--json"])
    assert scan.exit_code == 1
    findings = json.loads(scan.stdout)["findings"]
    assert sorted(finding["kind"] for finding in findings) == ["identifier", "implementation"]
    run = runner.invoke(app, ["run", str(cohort.root), str(tmp_path / "deid"), "--us-regions", "--json"],
                        env={SECRET_ENV_VAR: SECRET.decode()})
    assert run.exit_code == 0, run.output
    clean = runner.invoke(app, ["scan", str(tmp_path / "deid"), "--reference", str(cohort.root), "--json"])
    assert clean.exit_code == 0 and json.loads(clean.stdout)["findings"] == []


def test_run_refuses_missing_or_short_secret(cohort: Cohort, tmp_path: Path) -> None:
    missing = runner.invoke(app, ["run", str(cohort.root), str(tmp_path / "o")], env={SECRET_ENV_VAR: ""})
    assert missing.exit_code == 2 and SECRET_ENV_VAR in missing.output
    secret_file = tmp_path / "s.txt"
    secret_file.write_text("short")
    short = runner.invoke(app, ["run", str(cohort.root), str(tmp_path / "o"), "--secret-file", str(secret_file)])
    assert short.exit_code == 2 and "at least 16" in short.output


def test_run_with_keep_region_and_bad_region(cohort: Cohort, tmp_path: Path) -> None:
    env = {SECRET_ENV_VAR: SECRET.decode()}
    good = runner.invoke(app, ["run", str(cohort.root), str(tmp_path / "o"), "--keep-region", "0,10,48,36",
                               "--json"], env=env)
    assert good.exit_code == 0 and json.loads(good.stdout)["counts"] == {"written": 4}
    bad = runner.invoke(app, ["run", str(cohort.root), str(tmp_path / "o2"), "--keep-region", "0,10,48"], env=env)
    assert bad.exit_code == 2 and "four integers" in bad.output
