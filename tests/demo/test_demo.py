"""`breastgpt demo --quick`: every stage runs, nothing identifying leaks, and the model learns from the images.

The quick demo is the whole pathway at a reduced size (four sources, 24 synthetic patients each, 150 CPU training
steps, no comparator); the learning assertion is a reduced form of the full demo's bar (below). It takes about a
minute on two cores, so it is behind the `slow` marker; the default suite runs the whole pathway in miniature
(tests/demo/test_full_recipe.py), with the same stage list and leak checks.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from breastgpt.cli import app
from breastgpt.synth.writers import PLANTED_IDENTIFIERS

pytestmark = pytest.mark.slow
runner = CliRunner()
ABNORMALITY_TEMPLATES = {"scr-mam-abnormality-choice", "dx-mam-abnormality-choice"}


@pytest.fixture(scope="module")
def quick_demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, str]:
    out = tmp_path_factory.mktemp("demo") / "out"
    result = runner.invoke(app, ["demo", "--quick", "--out", str(out)], env={"BREASTGPT_DEID_SECRET": "s" * 32})
    assert result.exit_code == 0, result.output
    return out, json.loads((out / "summary.json").read_text()), result.output


def test_every_stage_runs(quick_demo) -> None:
    out, summary, output = quick_demo
    assert summary["ok"] is True and "not a medical device" in summary["notice"]
    stages = {stage["name"]: stage for stage in summary["stages"]}
    assert list(stages) == ["synthesize DICOM", "inspect", "de-identify", "PHI scan", "cohort", "corpus", "audit",
                            "task set", "slide features", "model", "train breastgpt", "train thumbnail", "bench",
                            "score", "report"]
    assert stages["synthesize DICOM"]["figures"] == {"patients": 3, "dicom_files": 12}
    assert stages["de-identify"]["figures"] == {"written": 12, "pseudonymous_patients": 3}
    assert stages["cohort"]["figures"]["patients"] == 96
    assert stages["audit"]["figures"]["leakage"] is False
    assert stages["task set"]["figures"]["bench_by_modality"].keys() == {"mammography", "mri", "pathology"}
    assert stages["slide features"]["figures"]["extracted"] == 24
    assert stages["train breastgpt"]["figures"]["steps"] == 150
    assert "skipped" in stages["train thumbnail"]["figures"]
    html = (out / "report.html").read_text()
    assert "data:image/png;base64," in html and "not a medical device" in html
    assert "Image-dependent closed questions" in output and "research software" in output


def test_nothing_identifying_leaks(quick_demo) -> None:
    out, summary, _ = quick_demo
    stages = {stage["name"]: stage for stage in summary["stages"]}
    assert stages["PHI scan"]["figures"]["leaks"] == 0
    written = [p for p in (out / "deidentified").rglob("*") if p.is_file()] + [out / "demo.log", out / "summary.json"]
    for path in written:
        blob = path.read_bytes() + str(path.relative_to(out)).encode()
        for value in list(PLANTED_IDENTIFIERS.values()) + ["FAKEPHI-ID-00000", "FAKEPHI"]:
            assert value.encode() not in blob, f"{value} leaked into {path}"


def test_the_model_reads_the_mammographic_finding_from_the_image(quick_demo) -> None:
    """Reduced learning check. What the small model learns from pixels in minutes is the type of mammographic
    finding. On those questions it must beat the no-image ablation by 25 points (intervals apart) and the template's
    most frequent training answer by 15 (the prior margin is the tight one: the prior is right on most items)."""
    from breastgpt.bench.items import item_from_record
    from breastgpt.bench.statistics import ClusterResampler, MetricSpec
    from breastgpt.corpus.records import iter_jsonl
    from breastgpt.demo.evaluate import prior_correct, score_model

    out, summary, _ = quick_demo
    rows = list(iter_jsonl(out / "task_set" / "bench.jsonl"))
    items = [item_from_record(row, f"bench:{i}") for i, row in enumerate(rows)]
    scored = score_model(items, out / "bench" / "breastgpt")
    prior = prior_correct(items, list(iter_jsonl(out / "task_set" / "train.jsonl")))
    mask = np.array([it.template_id in ABNORMALITY_TEMPLATES for it in items])
    assert mask.sum() >= 20
    rs = ClusterResampler(np.array([it.patient_key for it in items]), n_resamples=1000, seed=0)
    iv = rs.bootstrap_batch({"full": MetricSpec.mean(scored.correct["full"], mask),
                             "no_image": MetricSpec.mean(scored.correct["no_image"], mask),
                             "prior": MetricSpec.mean(prior, mask)})
    full, no_image, prior_iv = iv["full"].as_dict(), iv["no_image"].as_dict(), iv["prior"].as_dict()
    assert full["point"] >= no_image["point"] + 0.25, (full, no_image)
    assert full["point"] >= prior_iv["point"] + 0.15, (full, prior_iv)
    assert full["low"] > no_image["high"], (full, no_image)
    # The whole-set figures and the per-template table are in the summary, with the prior baseline.
    main = summary["results"]["models"]["breastgpt"]
    assert main["table"][0]["set"] == "all image-dependent" and "prior" in main["table"][0]
    assert {row["template"] for row in main["templates"]} >= ABNORMALITY_TEMPLATES
