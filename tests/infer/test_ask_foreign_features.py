"""`ask --slide-features` on TRIDENT and CLAM feature files (written as those tools write them)."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from breastgpt.cli import app
from tests.clitext import words
from tests.pathology.test_foreign_features import _arrays, write_clam, write_trident

runner = CliRunner()


def _ask(checkpoint: Path, *args: str):
    return runner.invoke(app, ["ask", "--model", str(checkpoint), "--max-new-tokens", "4", *args, "What is shown?"])


def test_ask_reads_a_trident_feature_file(tiny_checkpoint: Path, tmp_path: Path) -> None:
    features, coords = _arrays()
    result = _ask(tiny_checkpoint, "--slide-features", str(write_trident(tmp_path / "t.h5", features, coords)))
    assert result.exit_code == 0, result.output
    assert result.stdout.strip()


def test_ask_on_a_clam_file_names_the_missing_flag_then_works_with_it(tiny_checkpoint: Path, tmp_path: Path) -> None:
    features, coords = _arrays(1)
    path = str(write_clam(tmp_path / "c.h5", features, coords))
    result = _ask(tiny_checkpoint, "--slide-features", path)
    assert result.exit_code == 2 and "pass --tile-size-level0" in words(result.output)
    result = _ask(tiny_checkpoint, "--slide-features", path, "--tile-size-level0", "1024")
    assert result.exit_code == 2 and "pass --tile-mpp" in words(result.output)
    result = _ask(tiny_checkpoint, "--slide-features", path, "--tile-size-level0", "1024", "--tile-mpp", "0.5")
    assert result.exit_code == 0, result.output


def test_tile_flags_without_a_feature_file_are_refused(tiny_checkpoint: Path) -> None:
    result = _ask(tiny_checkpoint, "--tile-mpp", "0.5")
    assert result.exit_code == 2 and "describe a --slide-features file" in words(result.output)
