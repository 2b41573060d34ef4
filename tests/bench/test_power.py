"""Exact values on tiny inputs for the power, testing and calibration helpers (hand-computed in comments)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from breastgpt.bench.metrics import expected_calibration_error
from breastgpt.bench.statistics import bootstrap_p_value, clustered_power, holm


def test_design_effect_and_mdd_by_hand():
    # p = 0.5, n = 6, s² = 0.25; cluster sums a=2, b=0, c=1 (2 items each): residuals 1, −1, 0
    # V = 3/2 · 2 / 36 = 1/12; SRS variance 0.25 / 6 = 1/24; design effect 2; effective n 3
    # MDD = (1.959964 + 0.841621) · √(2/12) = 2.801585 · 0.408248 = 1.143743
    power = clustered_power(np.array([1, 1, 0, 0, 1, 0]), np.array(list("aabbcc")))
    assert power.design_effect == pytest.approx(2.0)
    assert power.effective_n == pytest.approx(3.0)
    assert power.mdd == pytest.approx(2.801585 * math.sqrt(2 / 12), abs=1e-5)


def test_independent_items_have_design_effect_near_g_over_g_minus_1():
    # every item its own cluster: V = n/(n−1) · Σ(y − ȳ)² / n² = s²/(n−1), so deff = n/(n−1) = 4/3 for n = 4
    power = clustered_power(np.array([1.0, 0.0, 1.0, 1.0]), np.arange(4))
    assert power.design_effect == pytest.approx(4 / 3)
    assert clustered_power(np.array([1.0, 0.0]), np.array(["a", "a"])) is None  # one cluster


def test_holm_by_hand():
    # sorted 0.01·4 = 0.04, 0.03·3 = 0.09, 0.04·2 = 0.08 -> 0.09 (monotone), 0.2·1 = 0.2
    assert holm([0.01, 0.04, 0.03, 0.2]) == pytest.approx([0.04, 0.09, 0.09, 0.2])
    out = holm([0.5, float("nan"), 0.01])  # NaN is not part of the family: m = 2
    assert out[0] == pytest.approx(0.5) and math.isnan(out[1]) and out[2] == pytest.approx(0.02)
    assert holm([0.6, 0.7]) == pytest.approx([1.0, 1.0])


def test_bootstrap_p_value_by_hand():
    # 9 resamples: 2 are <= 0, 7 >= 0 -> 2 · min(3/10, 8/10) = 0.6
    assert bootstrap_p_value(np.array([-1, -2, 1, 2, 3, 4, 5, 6, 7])) == pytest.approx(0.6)
    assert bootstrap_p_value(np.ones(99)) == pytest.approx(0.02)  # 2 · 1/100


def test_ece_by_hand():
    # bins of width 0.1: {0.95, 0.95} acc 1/2 conf 0.95 -> 0.45·2/4; {0.65} acc 1 -> 0.35·1/4; {0.25} acc 0 -> 0.25/4
    ece = expected_calibration_error(np.array([0.95, 0.95, 0.65, 0.25]), np.array([1, 0, 1, 0]))
    assert ece == pytest.approx(0.45 * 0.5 + 0.35 * 0.25 + 0.25 * 0.25)
    assert expected_calibration_error(np.array([1.0, 0.5]), np.array([1, 0])) == pytest.approx(0.25)


# ------------------------------------------------------------------------------------------ in the scores


def _closed_bench(tmp_path, correct_a, correct_b, patients):
    from breastgpt.bench.items import item_from_record, write_jsonl_atomic
    from tests.bench.helpers import closed_record

    recs = [closed_record(f"q{i}", p, 1) for i, p in enumerate(patients)]
    for name, correct in (("a", correct_a), ("b", correct_b)):
        write_jsonl_atomic(tmp_path / name / "responses.jsonl",
                           [{"item_id": f"q{i}", "response": "B" if c else "A", "model": name}
                            for i, c in enumerate(correct)])
    write_jsonl_atomic(tmp_path / "bench.jsonl", recs)
    return [item_from_record(r) for r in recs]


def test_every_group_carries_its_design_effect_and_mdd(tmp_path):
    from breastgpt.bench.aggregate import find_group, score_run
    from breastgpt.bench.scoring import ScoreConfig

    items = _closed_bench(tmp_path, [1, 1, 0, 0, 1, 0], [0] * 6, list("aabbcc"))
    scores, _ = score_run(items, tmp_path / "a", ScoreConfig(n_resamples=100, embeddings=False))
    power = find_group(scores.groups, "overall", {}, "accuracy")["power"]
    assert power["design_effect"] == pytest.approx(2.0) and power["mdd"] == pytest.approx(1.143743, abs=1e-5)
    assert scores.paper_row["Dx Mam"]["power"] == power  # the paper cell is the same six items


def test_compare_gives_holm_adjusted_p_values_and_baselines(tmp_path):
    from typer.testing import CliRunner

    from breastgpt.bench.aggregate import comparison
    from breastgpt.bench.cli import app
    from breastgpt.bench.scoring import ScoreConfig, load_run, score_responses

    patients = [f"p{i // 2}" for i in range(80)]
    items = _closed_bench(tmp_path, [1] * 60 + [0] * 20, [i % 2 for i in range(80)], patients)
    cfg = ScoreConfig(n_resamples=500, embeddings=False)
    da, db = (score_responses(items, load_run(tmp_path / n, items), cfg) for n in ("a", "b"))
    result = comparison(items, da, db, cfg, "rouge_l")
    rows = {r["where"]: r for r in result["differences"]}
    assert set(rows) == {"closed", "Dx Mam"} and result["multiple_comparisons"] == "Holm across 2 columns"
    raw = [rows[k]["difference"]["p_value"] for k in ("closed", "Dx Mam")]
    assert raw[0] == raw[1] < 0.01  # the same items: the same resampled differences
    # two equal p-values: the first is multiplied by 2, the second by 1 but kept monotone -> both 2p
    assert [rows[k]["p_holm"] for k in ("closed", "Dx Mam")] == pytest.approx([2 * raw[0]] * 2)
    closed = rows["closed"]
    assert closed["a"]["point"] == 0.75 and closed["b"]["point"] == 0.5 and closed["difference"]["point"] == 0.25
    assert closed["baselines"]["chance"]["point"] == 0.5 and "prior" not in closed["baselines"]
    res = CliRunner().invoke(app, ["compare", str(tmp_path / "bench.jsonl"), str(tmp_path / "a"), str(tmp_path / "b"),
                                   "--resamples", "200"], env={"COLUMNS": "250"})
    assert res.exit_code == 0, res.output
    assert "p (Holm)" in res.output and "chance" in res.output and "75.0" in res.output


def test_judge_open_column_takes_its_baselines_on_a_metric_they_have(tmp_path):
    from breastgpt.bench.aggregate import score_run
    from breastgpt.bench.items import item_from_record, write_jsonl_atomic
    from breastgpt.bench.judges import JudgeScore, prompt_sha256, save_judgements
    from breastgpt.bench.report import first_screen, report_dict
    from breastgpt.bench.scoring import ScoreConfig
    from tests.bench.helpers import open_record

    recs = [open_record(f"o{i}", f"p{i}", "an oval circumscribed mass", ["oval mass"]) for i in range(6)]
    items = [item_from_record(r) for r in recs]
    write_jsonl_atomic(tmp_path / "run" / "responses.jsonl",
                       [{"item_id": f"o{i}", "response": "An oval circumscribed mass.", "model": "cand"}
                        for i in range(6)]
                       + [{"item_id": f"o{i}", "response": "No image.", "model": "cand", "variant": "no_image"}
                          for i in range(6)])
    save_judgements(tmp_path / "run" / "judgements_judge.jsonl",
                    [JudgeScore(f"o{i}", "cand", 8, "ok", "SCORE: 8", "judge", "v2", prompt_sha256("v2"), "0-10")
                     for i in range(6)])
    scores, _ = score_run(items, tmp_path / "run", ScoreConfig(n_resamples=100, embeddings=False))
    cell = scores.paper_row["open"]
    assert scores.open_metric == "judge" and cell["point"] == pytest.approx(0.8)
    assert cell["baselines_metric"] == "rouge_l" and cell["baselines"]["text_only"]["point"] == 0.0
    assert cell["model_on_baselines_metric"]["point"] == pytest.approx(1.0)
    assert first_screen(report_dict(scores, []))["open_baselines_metric"] == "rouge_l"
    from breastgpt.bench.report import render_html

    html = render_html(report_dict(scores, []))
    assert "baselines are on rouge_l" in html and "the model scores 100.0" in html
