"""The root command line: help everywhere, doctor's exit status."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from breastgpt import cli
from tests.clitext import words

runner = CliRunner()


def test_root_help_lists_every_verb_and_the_research_notice() -> None:
    result = runner.invoke(cli.app, ["--help"])
    assert result.exit_code == 0
    for verb in ("doctor", "inspect", "demo"):
        assert verb in result.output
    assert "not a medical device" in words(result.output)


@pytest.mark.parametrize("verb", ["doctor", "inspect", "demo"])
def test_every_verb_has_help(verb: str) -> None:
    result = runner.invoke(cli.app, [verb, "--help"])
    assert result.exit_code == 0 and "Usage" in result.output


def test_doctor_json_reports_decoders_and_passes_here() -> None:
    result = runner.invoke(cli.app, ["doctor", "--json"])
    report = json.loads(result.stdout)
    names = {check["name"] for check in report["checks"]}
    assert "DICOM JPEG 2000 Image Compression (Lossless Only)" in names and "torchvision ops" in names
    assert report["ok"] is True and result.exit_code == 0


def test_doctor_fails_with_a_fix_when_an_essential_piece_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    from breastgpt import doctor

    real = doctor._package

    def without_pydicom(module: str, **kwargs):
        if module == "pydicom":
            return doctor.Check("pydicom", False, "not importable", True, doctor.FIX)
        return real(module, **kwargs)

    monkeypatch.setattr(doctor, "_package", without_pydicom)
    result = runner.invoke(cli.app, ["doctor"])
    assert result.exit_code == 1
    assert "MISSING" in result.output and "make env" in words(result.output)


def test_version_prints_the_version_and_exits_zero() -> None:
    from breastgpt import __version__

    result = runner.invoke(cli.app, ["--version"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == __version__ and __version__[0].isdigit()
