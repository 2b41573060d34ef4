"""Metric names live in one registry: what reports and `compare` emit is registered, and a new metric computed
from the answer text is one decorated function (metric_registry.text_metric) that reaches scoring, the groups,
the cell tables, baselines and the --open-metric choices with no other edit."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from breastgpt.bench.aggregate import find_group, score_run
from breastgpt.bench.cli import app
from breastgpt.bench.items import write_jsonl_atomic
from breastgpt.bench.metric_registry import (METRICS, OPEN_FAMILIES, family_metrics, group_metrics, open_options,
                                             response_columns, text_metric)
from breastgpt.bench.report import cell_sections, write_report
from breastgpt.bench.scoring import ScoreConfig
from tests.bench.test_report import _responses, run  # noqa: F401  (the report tests' bench and run)


def _intervals(entry: dict) -> set[str]:
    """Keys of an entry whose values are intervals: the metrics it reports."""
    return {k for k, v in entry.items() if isinstance(v, dict) and "point" in v}


def test_every_metric_the_report_and_compare_emit_is_registered(run):  # noqa: F811
    items, items_path, run_dir, tmp = run
    human = {f"o{i}": s for i, s in enumerate([1, 9, 2, 9, 0])}
    responses = run_dir / "responses.jsonl"  # with option scores, for the calibration table
    probs = {"q": [0.7, 0.1, 0.1, 0.1], "u": [0.4, 0.6]}
    write_jsonl_atomic(responses, [{**r, **({"option_probs": probs[r["item_id"][0]]} if r["item_id"][0] in probs
                                            else {})} for r in _responses()])
    sc, files = score_run(items, run_dir, ScoreConfig(n_resamples=50, embeddings=False), human_grades=human)
    report = write_report(sc, tmp / "out", files)
    groups = {g["metric"] for g in report["groups"]}
    clinical = set().union(*(_intervals(c) for c in report["clinical"]))
    agreement = set().union(*(_intervals(a) for a in report["judge"]["judge_agreement"]
                              + report["judge"]["human_agreement"]))
    assert {"accuracy", "mean_iou", "judge", "rouge_l"} <= groups and {"sensitivity", "kappa_quadratic"} <= clinical
    assert agreement == {"spearman", "kappa_quadratic"}
    calibration = _intervals(report["calibration"])
    assert calibration == {"ece"}
    assert groups | clinical | agreement | calibration <= set(METRICS.names())
    assert groups <= set(group_metrics())
    assert {s["metric"] for s in report["shortcuts"]} <= set(response_columns())  # the gap's per-item column
    other = tmp / "run_b"
    write_jsonl_atomic(other / "responses.jsonl", [{**r, "model": "other"} for r in _responses()])
    res = CliRunner().invoke(app, ["compare", str(items_path), str(run_dir), str(other), "--resamples", "50",
                                   "--no-embeddings", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["open_metric"] in open_options()


def test_derived_views_of_the_builtin_metrics():
    assert open_options() == ("judge", "embedding", "rouge_l", "key_finding_recall")
    assert family_metrics() == {
        "closed_vqa": ("accuracy", "unparseable_rate"), "grounding": ("mean_iou", "hit_rate@0.5"),
        **{f: ("judge", "embedding_cosine", "rouge_l", "key_finding_recall") for f in OPEN_FAMILIES}}
    with pytest.raises(ValueError, match=r"is not one of \['auto', 'judge', 'embedding', 'rouge_l', 'key_finding_recall'\]"):
        ScoreConfig(open_metric="bleu")


@pytest.fixture()
def answer_words():
    """A new metric, registered the way a user adds one: a decorated function of (item, answer text)."""
    @text_metric("answer_words", "answer length (words)", column="n_words", families=OPEN_FAMILIES,
                 open_option="answer_words", baseline=True)
    def _answer_words(item, text):
        return float(len(text.split())) if item.answer is not None else np.nan

    yield _answer_words
    METRICS.remove("answer_words")


def test_a_new_text_metric_is_one_decorated_function(run, answer_words):  # noqa: F811
    items, items_path, run_dir, tmp = run
    sc, _ = score_run(items, run_dir, ScoreConfig(n_resamples=50, embeddings=False, open_metric="answer_words"))
    df = sc.per_item.set_index("item_id")
    assert df.loc["o1", "n_words"] == 3.0 and df.loc["o0", "n_words"] == 3.0 and np.isnan(df.loc["q0", "n_words"])
    overall = find_group(sc.groups, "overall", {}, "answer_words")
    assert overall["n_items"] == 6 and overall["point"] == pytest.approx((3 * 5 + 8) / 6)  # 5 open + 1 caption
    assert sc.paper_row["open"]["point"] == pytest.approx(overall["point"])  # the paper's open column reads it
    sections = {s["family"]: s["metrics"] for s in cell_sections(sc.groups)}
    assert sections["open_vqa"][-1] == "answer_words" and sections["grounded_caption"][-1] == "answer_words"
    res = CliRunner().invoke(app, ["score", str(items_path), str(run_dir), "--resamples", "50", "--no-embeddings",
                                   "--open-metric", "answer_words", "--json"])
    assert res.exit_code == 0, res.output

