"""`breastgpt demo --quick`: every stage runs and the outputs carry no planted identifier."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from breastgpt.cli import app
from breastgpt.synth.writers import PLANTED_IDENTIFIERS

runner = CliRunner()


def test_quick_demo_runs_every_stage_and_leaks_nothing(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    result = runner.invoke(app, ["demo", "--quick", "--out", str(out)], env={"BREASTGPT_DEID_SECRET": "s" * 32})
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["ok"] is True and "not a medical device" in summary["notice"]
    stages = {stage["name"]: stage for stage in summary["stages"]}
    assert stages["synthesize"]["figures"] == {"patients": 3, "dicom_files": 12}
    assert stages["inspect"]["figures"]["read"] == 12 and stages["inspect"]["figures"]["failed"] == 0
    assert stages["de-identify"]["figures"] == {"written": 12, "pseudonymous_patients": 3}
    assert stages["PHI scan"]["figures"]["leaks"] == 0
    written = [p for p in (out / "deidentified").rglob("*") if p.is_file()] + [out / "demo.log", out / "summary.json"]
    for path in written:
        blob = path.read_bytes() + str(path.relative_to(out)).encode()
        for value in list(PLANTED_IDENTIFIERS.values()) + ["FAKEPHI-ID-00000", "FAKEPHI"]:
            assert value.encode() not in blob, f"{value} leaked into {path}"
