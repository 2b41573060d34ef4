"""`corpus export --format swift`: volumes as PNG frame lists, 2-D boxes as ms-swift `norm1` objects, slide rows
left out with a count and reason, root-relative or absolute paths. ms-swift itself reads the export in
tests/interop/test_swift.py."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from breastgpt.corpus.cli import app
from breastgpt.corpus.swift_export import BOX_3D_ROWS, SLIDE_ROWS
from breastgpt.io.volume import read_corpus_volume
from tests.clitext import words
from tests.corpus.swift_corpus import MEDIA, write_swift_corpus

runner = CliRunner()


def test_the_export_is_in_forms_ms_swift_reads(tmp_path: Path) -> None:
    records = write_swift_corpus(tmp_path / "corpus")
    result = runner.invoke(app, ["export", str(tmp_path / "corpus"), "--out", str(tmp_path / "swift.jsonl")])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in (tmp_path / "swift.jsonl").read_text().splitlines()]
    slides = sum(1 for r in records if r.slides)
    boxes_3d = sum(1 for r in records if r.objects and len(r.objects["bbox"][0]) == 6)
    volumes = [r for r in records if r.videos]
    assert slides > 0 and boxes_3d > 0 and volumes
    assert len(rows) == len(records) - slides
    text = words(result.output)
    assert f"left out {slides} {words(SLIDE_ROWS)}" in text and f"{boxes_3d} {words(BOX_3D_ROWS)}" in text
    assert "<slide>" not in (tmp_path / "swift.jsonl").read_text()
    frame_rows = [row for row in rows if row["videos"]]
    assert len(frame_rows) == len(volumes)
    volume = read_corpus_volume(tmp_path / "corpus" / MEDIA["mri"])
    for row in frame_rows:
        (frames,) = row["videos"]
        assert len(frames) == volume.shape[0] and not Path(frames[0]).is_absolute()
        decoded = np.stack([np.asarray(Image.open(tmp_path / "corpus" / f)) for f in frames])
        assert np.array_equal(decoded, volume)
        assert "objects" not in row or all(len(box) == 4 for box in row["objects"]["bbox"])
    with_objects = [row for row in rows if "objects" in row]
    assert with_objects and all(row["objects"]["bbox_type"] == "norm1" for row in with_objects)
    assert with_objects[0]["objects"]["bbox"][0] == [0.1, 0.2, 0.3, 0.4]  # 0-1000 grid [100, 200, 300, 400]


def test_absolute_paths_and_reused_frames(tmp_path: Path) -> None:
    write_swift_corpus(tmp_path / "corpus")
    first = runner.invoke(app, ["export", str(tmp_path / "corpus"), "--out", str(tmp_path / "a.jsonl"),
                                "--absolute", "--split", "bench"])
    second = runner.invoke(app, ["export", str(tmp_path / "corpus"), "--out", str(tmp_path / "b.jsonl"),
                                 "--absolute", "--split", "bench"])
    assert first.exit_code == second.exit_code == 0
    assert "6 volume frames written" in words(first.output) and "0 volume frames written" in words(second.output)
    rows = [json.loads(line) for line in (tmp_path / "a.jsonl").read_text().splitlines()]
    paths = [p for row in rows for p in row["images"]] + [f for row in rows for v in row["videos"] for f in v]
    assert paths and all(Path(p).is_absolute() and Path(p).is_file() for p in paths)
    assert (tmp_path / "a.jsonl").read_text() == (tmp_path / "b.jsonl").read_text()


def test_an_export_with_no_rows_fails(tmp_path: Path) -> None:
    write_swift_corpus(tmp_path / "corpus")
    result = runner.invoke(app, ["export", str(tmp_path / "corpus"), "--out", str(tmp_path / "x.jsonl"),
                                 "--split", "val"])
    assert result.exit_code == 1 and "exported 0 of 0 records" in words(result.output)
