"""Report fixes: box IoU only for grounding items, zero-width intervals flagged, clinical small-subset warnings
shown, judge agreement rounded with intervals, `compare` warnings kept, the cell table grouped per family."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from typer.testing import CliRunner

from breastgpt.bench.aggregate import find_group, score_run
from breastgpt.bench.cli import app
from breastgpt.bench.items import item_from_record, write_jsonl_atomic
from breastgpt.bench.metric_registry import family_metrics
from breastgpt.bench.judges import JudgeScore, judgement_file, prompt_sha256, save_judgements
from breastgpt.bench.report import cell_sections, format_interval, write_report
from breastgpt.bench.scoring import ScoreConfig
from tests.bench.helpers import closed_record, grounding_record, open_record

TARGET = {"name": "birads", "kind": "ordinal", "option_values": [2, 3, 4, 5], "positive_threshold": 4}
OPTS = ["2", "3", "4", "5"]


def _records():
    recs = [closed_record(f"q{i}", f"p{i % 6}", i % 4, options=OPTS, target=TARGET) for i in range(12)]
    recs += [closed_record(f"u{i}", f"p{i}", 0, modality="ultrasound", stage="screening", source="bus") for i in
             range(3)]
    recs.append(grounding_record("g0", "p1", [0, 0, 100, 100]))
    caption = open_record("c0", "p2", "An oval mass in the upper outer quadrant.", ["oval mass"],
                          family="grounded_caption")
    caption["label"]["box"] = [0, 0, 100, 100]
    recs.append(caption)
    recs += [open_record(f"o{i}", f"p{i}", "An oval circumscribed mass.", ["oval mass"]) for i in range(5)]
    return recs


def _responses():
    rows = [{"item_id": f"q{i}", "response": "ABCD"[i % 4] if i < 9 else "A", "model": "cand"} for i in range(12)]
    rows += [{"item_id": f"u{i}", "response": "A", "model": "cand"} for i in range(3)]  # all right: 100 %
    rows += [{"item_id": "g0", "response": "[0,0,100,50]", "model": "cand"},
             {"item_id": "c0", "response": "An oval mass in the upper outer quadrant.", "model": "cand"}]
    rows += [{"item_id": f"o{i}", "response": "An oval mass." if i % 2 else "A spiculated mass.", "model": "cand"}
             for i in range(5)]
    return rows


def _judge(model: str, scores: list[int]) -> list[JudgeScore]:
    return [JudgeScore(f"o{i}", "cand", s, "ok", f"SCORE: {s}", model, "v2", prompt_sha256("v2"), "0-10")
            for i, s in enumerate(scores)]


@pytest.fixture()
def run(tmp_path):
    items_path = tmp_path / "bench.jsonl"
    write_jsonl_atomic(items_path, _records())
    run_dir = tmp_path / "run"
    write_jsonl_atomic(run_dir / "responses.jsonl", _responses())
    save_judgements(run_dir / judgement_file("gpt-4.1"), _judge("gpt-4.1", [2, 8, 3, 9, 1]))
    save_judgements(run_dir / judgement_file("llama-judge"), _judge("llama-judge", [3, 7, 3, 8, 2]))
    write_jsonl_atomic(tmp_path / "human.jsonl", [{"item_id": f"o{i}", "score": s} for i, s in
                                                  enumerate([1, 9, 2, 9, 0])])
    return [item_from_record(r) for r in _records()], items_path, run_dir, tmp_path


def test_grounded_captions_are_not_scored_for_box_iou(run):
    items, _, run_dir, _ = run
    sc, _ = score_run(items, run_dir, ScoreConfig(n_resamples=100, embeddings=False))
    df = sc.per_item.set_index("item_id")
    assert df.loc["g0", "iou"] == 0.5 and np.isnan(df.loc["c0", "iou"]) and np.isnan(df.loc["c0", "hit"])
    mean_iou = find_group(sc.groups, "overall", {}, "mean_iou")
    assert (mean_iou["point"], mean_iou["n_items"]) == (0.5, 1)  # was 0.25 when the caption counted as IoU 0
    assert df.loc["c0", "status"] == "answered" and df.loc["c0", "rouge_l"] == 1.0


def test_zero_width_intervals_are_flagged_not_printed_as_exact(run):
    items, _, run_dir, tmp = run
    sc, files = score_run(items, run_dir, ScoreConfig(n_resamples=200, embeddings=False))
    us = sc.paper_row["Scr BUS"]
    assert (us["point"], us["low"], us["high"], us["zero_width"]) == (1.0, 1.0, 1.0, True)
    assert us["warning"] == ("only 3 patients (< 30); zero-width interval (all resamples equal: not evidence of "
                             "certainty)")
    assert format_interval(us) == "[zero-width ⚠]" and format_interval({"low": 0.5, "high": 0.75}) == "[50.0, 75.0]"
    write_report(sc, tmp / "out", files)
    html = (tmp / "out" / "report.html").read_text()
    assert "[100.0, 100.0]" not in html and html.count("[zero-width ⚠]") >= 1
    assert "Scr BUS: only 3 patients (&lt; 30); zero-width interval" in html


def test_clinical_small_subset_warnings_are_shown(run):
    items, _, run_dir, tmp = run
    sc, files = score_run(items, run_dir, ScoreConfig(n_resamples=200, embeddings=False))
    clinical = [w for w in sc.warnings if w.startswith("clinical birads")]
    assert [w.split(":")[0] for w in clinical] == [
        "clinical birads sensitivity", "clinical birads specificity", "clinical birads kappa_linear",
        "clinical birads kappa_quadratic"]
    assert all("only 6 patients (< 30)" in w for w in clinical)
    assert clinical[1] == ("clinical birads specificity: only 6 patients (< 30); zero-width interval (all resamples "
                           "equal: not evidence of certainty)")
    write_report(sc, tmp / "out", files)
    html = (tmp / "out" / "report.html").read_text()
    row = html[html.index("<td class=\"l\">birads</td>"):]
    row = row[:row.index("</tr>")]
    # a reason all metrics share is said once, the others per metric
    assert "<small>only 6 patients (&lt; 30); sensitivity: 95% interval half-width" in row
    assert "specificity: zero-width interval" in row and row.count("only 6 patients") == 1


def test_agreement_is_rounded_with_intervals(run):
    _, items_path, run_dir, tmp = run
    res = CliRunner().invoke(app, ["score", str(items_path), str(run_dir), "--out", str(tmp / "o"), "--resamples",
                                   "300", "--no-embeddings", "--human-grades", str(tmp / "human.jsonl")])
    assert res.exit_code == 0, res.output
    lines = [line for line in res.stdout.splitlines() if line.startswith("agreement")]
    assert [line.split(" (n=")[0] for line in lines] == [
        "agreement gpt-4.1 vs llama-judge", "agreement gpt-4.1 vs human grades",
        "agreement llama-judge vs human grades"]
    number = r"-?\d\.\d\d"
    interval = rf"(\[{number}, {number}\]|\[zero-width ⚠\]|\[undefined\])"
    for line in lines:
        assert re.fullmatch(rf"agreement .+ \(n=5\): Spearman ρ {number} {interval}, quadratic κ {number} {interval}",
                            line), line
    assert "Spearman ρ 0.97" in lines[0]  # ranks (2, 8, 3, 9, 1) vs (3, 7, 3, 8, 2): one tie
    report = json.loads((tmp / "o" / "report.json").read_text())
    rho = report["judge"]["judge_agreement"][0]["spearman"]
    assert rho["point"] == pytest.approx(0.9746794344808963) and rho["n_clusters"] == 5
    html = (tmp / "o" / "report.html").read_text()
    assert not re.search(r"\d\.\d{5,}", html.split("<h2>Inputs</h2>")[0])  # no long floats anywhere in the tables
    assert "gpt-4.1 vs human grades" in html and "gpt-4.1 (primary)" in html
    write_jsonl_atomic(tmp / "stray.jsonl", [{"item_id": "zz", "score": 3}])
    res = CliRunner().invoke(app, ["score", str(items_path), str(run_dir), "--resamples", "50", "--no-embeddings",
                                   "--human-grades", str(tmp / "stray.jsonl")])
    assert res.exit_code == 2 and "human grades for items not in the bench: ['zz']" in res.output


def test_compare_keeps_and_shows_its_warnings(run):
    _, items_path, run_dir, tmp = run
    other = tmp / "run_b"
    write_jsonl_atomic(other / "responses.jsonl", [{**r, "model": "other"} for r in _responses()])
    res = CliRunner().invoke(app, ["compare", str(items_path), str(run_dir), str(other), "--resamples", "100",
                                   "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    closed = next(r for r in out["differences"] if r["where"] == "closed")
    assert closed["difference"]["point"] == 0.0 and closed["difference"]["zero_width"]
    assert "closed: only 6 patients (< 30); zero-width interval (all resamples equal: not evidence of certainty)" \
        in out["warnings"]
    assert "open: only 0 patients (< 30); interval undefined" in out["warnings"]  # run B has no judge scores
    assert out["clustering"]["unit"] == "patients"
    text = CliRunner().invoke(app, ["compare", str(items_path), str(run_dir), str(other), "--resamples", "100"],
                              env={"COLUMNS": "250"})
    assert "warning: closed: only 6 patients (< 30); zero-width interval" in text.output
    assert "[zero-width ⚠]" in text.output


def test_cell_table_is_one_sorted_table_per_family(run):
    items, _, run_dir, _ = run
    sc, _ = score_run(items, run_dir, ScoreConfig(n_resamples=100, embeddings=False))
    sections = cell_sections(sc.groups)
    # each family's registered metrics in registration order (pinned in test_metric_registry), less those this
    # run leaves undefined: no embeddings were computed, and the judges scored only the open_vqa items
    registered = family_metrics()
    assert [(s["family"], s["metrics"]) for s in sections] == [
        ("closed_vqa", list(registered["closed_vqa"])), ("grounding", list(registered["grounding"])),
        ("open_vqa", [m for m in registered["open_vqa"] if m != "embedding_cosine"]),
        ("grounded_caption", [m for m in registered["grounded_caption"] if m not in ("embedding_cosine", "judge")])]
    closed = sections[0]["rows"]
    assert [(r["stage"], r["modality"], r["source"]) for r in closed] == [
        ("screening", "ultrasound", "bus"), ("diagnosis", "mammography", "vindr")]  # the paper's column order
    assert (closed[1]["n_items"], closed[1]["n_clusters"]) == (12, 6)
    assert closed[1]["values"][0]["point"] == pytest.approx(9 / 12)
    n_cell_groups = sum(g["grouping"] == "cell" for g in sc.groups)
    shown = sum(v is not None for s in sections for r in s["rows"] for v in r["values"])
    assert n_cell_groups == shown and sum(len(s["rows"]) for s in sections) == 5  # every metric row, in 5 table rows
