"""End-to-end extraction: quarantine, resume, SIGKILL safety, and the `slides` CLI."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from breastgpt.artifacts import is_temp_name
from breastgpt.pathology.cli import app
from breastgpt.pathology.extract import ExtractConfig, extract_slides
from breastgpt.pathology.features import load_features
from breastgpt.pathology.tiling import TilingConfig
from tests.pathology.slides import garble_tile, small_slide, tile_index_at

SRC = Path(__file__).resolve().parents[2] / "src"
# 256 px tiles at 1 µm/px keep each slide to a few dozen tiles.
CONFIG = ExtractConfig(encoder="tiny-random", tiling=TilingConfig(target_mpp=1.0, tile_size=256), workers=0,
                       batch_size=4, thumbnail_max_side=256)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("cohort")
    slides = [small_slide(folder / f"s{i}.tif", seed=i).path for i in range(3)]
    broken = small_slide(folder / "broken.tif", seed=9).path
    garble_tile(broken, tile_index_at(broken, 512, 768))  # inside the first tissue blob
    return [slides[0], broken, slides[1], slides[2]]


def _outputs(folder: Path) -> dict[str, tuple[np.ndarray, np.ndarray, dict]]:
    result = {}
    for path in sorted((folder / "features").glob("*.h5")):
        data = load_features(path)
        attrs = {k: v for k, v in data.attrs.items() if k != "created"}
        result[path.name] = (data.coords, data.features, attrs)
    return result


def _assert_same(a: dict, b: dict) -> None:
    assert sorted(a) == sorted(b)
    for name in a:
        assert np.array_equal(a[name][0], b[name][0]) and np.array_equal(a[name][1], b[name][1])
        assert a[name][2] == b[name][2]


def test_quarantine_resume_and_request_change(cohort: list[Path], tmp_path: Path) -> None:
    summary = extract_slides(cohort, tmp_path, CONFIG)
    assert summary["counts"] == {"done": 3, "skipped": 0, "quarantined": 1}
    broken = next(s for s in summary["slides"] if s["slide_id"] == "broken")
    assert broken["status"] == "quarantined" and broken["error"]["error"] == "corrupt_file"
    state = json.loads((tmp_path / "state" / "broken.json").read_text())
    assert state["status"] == "quarantined" and "cannot decode" in state["error"]["problem"]
    first = _outputs(tmp_path)
    assert sorted(first) == ["s0.h5", "s1.h5", "s2.h5"]
    coords, feats, attrs = first["s0.h5"]
    assert feats.shape == (len(coords), 32) and attrs["tile_size"] == 256 and attrs["target_mpp"] == 1.0
    assert attrs["footprint_level0"] == [512, 512] and attrs["reader"] == "openslide"
    assert (tmp_path / "thumbnails" / "s0.png").is_file()
    again = extract_slides(cohort, tmp_path, CONFIG)
    assert again["counts"] == {"done": 0, "skipped": 3, "quarantined": 1}
    changed = extract_slides(cohort[:1], tmp_path, ExtractConfig(
        encoder="tiny-random", tiling=TilingConfig(target_mpp=1.0, tile_size=256, min_tissue_fraction=0.5),
        workers=0, batch_size=4, thumbnail_max_side=256))
    assert changed["counts"]["done"] == 1


_CHILD = """
import sys
from breastgpt.pathology.extract import ExtractConfig, extract_slides
from breastgpt.pathology.tiling import TilingConfig
config = ExtractConfig(encoder="tiny-random", tiling=TilingConfig(target_mpp=1.0, tile_size=256), workers=1,
                       batch_size=4, thumbnail_max_side=256)
extract_slides(sys.argv[2:], sys.argv[1], config)
"""


def test_sigkill_then_resume_gives_identical_outputs(cohort: list[Path], tmp_path: Path) -> None:
    reference = tmp_path / "reference"
    extract_slides(cohort, reference, CONFIG)
    resumed = tmp_path / "resumed"
    env = os.environ | {"PYTHONPATH": str(SRC)}
    rng = random.Random(1234)
    for _ in range(3):
        child = subprocess.Popen([sys.executable, "-c", _CHILD, str(resumed), *map(str, cohort)], env=env,
                                 start_new_session=True)
        time.sleep(rng.uniform(1.0, 6.0))
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)  # the child and its reader processes
        child.wait()
    final = extract_slides(cohort, resumed, CONFIG)
    assert final["counts"]["quarantined"] == 1
    assert [p.name for p in (resumed / "features").iterdir() if is_temp_name(p.name)] == []
    _assert_same(_outputs(reference), _outputs(resumed))


def test_cli_extract_overlay_describe(cohort: list[Path], tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["extract", str(cohort[0]), "--out", str(tmp_path), "--encoder", "tiny-random",
                                 "--target-mpp", "1.0", "--tile-size", "256", "--workers", "0", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["counts"]["done"] == 1
    h5 = tmp_path / "features" / "s0.h5"
    data = load_features(h5)
    result = runner.invoke(app, ["overlay", str(h5), "--indices", "0,2", "--out", str(tmp_path / "ov")])
    assert result.exit_code == 0, result.output
    geo = json.loads((tmp_path / "ov" / "s0.geojson").read_text())
    assert geo["type"] == "FeatureCollection" and len(geo["features"]) == 2
    x, y = (int(v) for v in data.coords[2])
    assert geo["features"][1]["geometry"]["coordinates"][0] == [[x, y], [x + 512, y], [x + 512, y + 512],
                                                                 [x, y + 512], [x, y]]
    assert (tmp_path / "ov" / "s0.heatmap.png").is_file()
    scores = tmp_path / "scores.json"
    scores.write_text(json.dumps(list(range(len(data.coords)))))
    result = runner.invoke(app, ["overlay", str(h5), "--scores", str(scores), "--top", "3", "--out",
                                 str(tmp_path / "sc")])
    assert result.exit_code == 0, result.output
    top = json.loads((tmp_path / "sc" / "s0.geojson").read_text())["features"]
    assert [f["properties"]["tile_index"] for f in top] == [len(data.coords) - 1 - i for i in range(3)]
    result = runner.invoke(app, ["describe", str(cohort[0]), "--json"])
    assert result.exit_code == 0 and json.loads(result.stdout)["mpp"] == [0.5, 0.5]
    result = runner.invoke(app, ["extract", str(cohort[1]), "--out", str(tmp_path / "q"), "--encoder",
                                 "tiny-random", "--target-mpp", "1.0", "--tile-size", "256", "--workers", "0"])
    assert result.exit_code == 1 and "quarantined" in result.stdout
