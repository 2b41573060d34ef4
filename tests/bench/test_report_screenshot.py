"""Issue 8 point 6: the HTML report renders in headless Chromium (skipped when no chromium is on PATH; CI installs
the Debian `chromium` package so it runs there)."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

from breastgpt.bench.aggregate import score_run
from breastgpt.bench.items import item_from_record, write_jsonl_atomic
from breastgpt.bench.report import write_report
from breastgpt.bench.scoring import ScoreConfig
from tests.bench.helpers import closed_record, grounding_record

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="chromium / chromium-browser not on PATH (apt-get install chromium)")
def test_report_html_screenshot_is_not_blank(tmp_path):
    target = {"name": "birads", "kind": "ordinal", "option_values": [2, 3, 4, 5], "positive_threshold": 4}
    recs = [closed_record(f"q{i}", f"p{i % 9}", i % 4, options=["2", "3", "4", "5"], target=target)
            for i in range(36)]
    for r in recs[::3]:  # a held-out external source
        r.update(source="inbreast", split="external", patient_key=f"x{r['patient_key']}")
    recs += [grounding_record(f"g{i}", f"p{i % 9}", [100, 100, 400, 400]) for i in range(6)]
    write_jsonl_atomic(tmp_path / "run" / "responses.jsonl",
                       [{"item_id": f"q{i}", "response": "ABCD"[(i * 7) % 4], "model": "m", "score": (i % 4) / 3}
                        for i in range(36)]
                       + [{"item_id": f"g{i}", "response": "[120,100,400,380]", "model": "m"} for i in range(6)])
    items = [item_from_record(r) for r in recs]
    train = [item_from_record({**r, "id": f"t{r['id']}"}) for r in recs]
    scores, files = score_run(items, tmp_path / "run", ScoreConfig(n_resamples=200, embeddings=False), train=train)
    write_report(scores, tmp_path / "out", files)
    html = (tmp_path / "out" / "report.html").read_text()
    first = html.split("<h2>", 2)[1]  # the first section: the paper's columns with external results and baselines
    assert first.startswith("Paper layout with baselines") and "Dx Mam" in first
    assert all(row in first for row in ("external (held-out sources)", "chance (uniform guess)",
                                        "training prior (per template)", "MDD at 80% power"))
    png = tmp_path / "shot.png"
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
           f"--screenshot={png}", "--window-size=1280,2000", (tmp_path / "out" / "report.html").as_uri()]
    subprocess.run(cmd, check=True, timeout=120, capture_output=True)
    assert png.is_file()
    pixels = np.asarray(Image.open(png).convert("L"), dtype=float)
    assert pixels.shape == (2000, 1280)
    assert pixels.std() > 10  # text, tables and plots, not a blank page
    assert (pixels < 128).mean() > 0.005  # enough dark pixels to be rendered content
