"""End-to-end scoring of a tiny run directory: exact accuracies, clinical metrics, shortcuts, judge, report, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from breastgpt.bench.aggregate import compare, find_group, score_run
from breastgpt.bench.cli import app
from breastgpt.bench.items import BenchDataError, SavedResponse, item_from_record, write_jsonl_atomic
from breastgpt.bench.judges import JudgeScore, prompt_sha256, save_judgements
from breastgpt.bench.report import write_report
from breastgpt.bench.scoring import ScoreConfig, load_run, score_responses
from tests.bench.helpers import closed_record, grounding_record, open_record

OPTS = ["BI-RADS 2", "BI-RADS 3", "BI-RADS 4", "BI-RADS 5"]
TARGET = {"name": "birads", "kind": "ordinal", "option_values": [2, 3, 4, 5], "positive_threshold": 4}
MODEL = "Qwen3-VL-8B"


def _records():
    closed = [("q0", "p0", 2), ("q1", "p0", 0), ("q2", "p1", 3), ("q3", "p2", 1), ("q4", "p3", 2), ("q5", "p4", 0)]
    recs = [closed_record(i, p, a, options=OPTS, target=TARGET) for i, p, a in closed]
    recs += [grounding_record("g0", "p5", [0, 0, 100, 100]), grounding_record("g1", "p5", [0, 0, 100, 100])]
    recs += [open_record("o0", "p5", "the mass is oval", ["oval mass"]),
             open_record("o1", "p1", "no suspicious finding", ["no mass"])]
    return recs


def _responses(q1: str = "Answer: B"):
    full = {"q0": "C", "q1": q1, "q2": "I am not sure", "q3": "BI-RADS 3", "q5": "A",  # q4 has no answer
            "g0": "[0,0,100,50]", "g1": "[200,200,300,300]", "o0": "the oval mass", "o1": "A mass is seen."}
    rows = [{"item_id": k, "response": v, "model": MODEL} for k, v in full.items()]
    rows += [{"item_id": k, "response": v, "model": MODEL, "variant": "no_image"}
             for k, v in {"q0": "C", "q1": "A", "q3": "A"}.items()]
    rows.append({"item_id": "q0", "response": "B", "model": MODEL, "variant": "permute_options",
                 "option_order": [3, 2, 1, 0]})
    return rows


def _judgement(item_id, score, status):
    return JudgeScore(item_id, MODEL, score, status, f"SCORE: {score}", "Qwen2.5-72B", "v1", prompt_sha256("v1"),
                      "0-10")


@pytest.fixture()
def bench(tmp_path):
    items_path = tmp_path / "bench.jsonl"
    write_jsonl_atomic(items_path, _records())
    run = tmp_path / "run"
    write_jsonl_atomic(run / "responses.jsonl", _responses())
    save_judgements(run / "judgements.jsonl", [_judgement("o0", 8, "ok"), _judgement("o1", None, "unparseable")])
    items = [item_from_record(r) for r in _records()]
    return items, items_path, run


def _point(scores, grouping, key, metric):
    return find_group(scores.groups, grouping, key, metric)["point"]


def test_per_item_scores(bench):
    items, _, run = bench
    df = score_responses(items, load_run(run, items), ScoreConfig(embeddings=False)).set_index(["item_id", "variant"])
    assert df.loc[("q0", "full"), "status"] == "letter" and df.loc[("q3", "full"), "status"] == "text"
    assert df.loc[("q2", "full"), "status"] == "unparseable" and df.loc[("q4", "full"), "status"] == "missing"
    assert df.loc[("q0", "permute_options"), "pred_index"] == 2 and df.loc[("q0", "permute_options"), "correct"] == 1
    assert df.loc[("g0", "full"), "iou"] == 0.5 and df.loc[("g0", "full"), "hit"] == 1.0
    assert df.loc[("o0", "full"), "rouge_l"] == pytest.approx(4 / 7)
    assert (df.loc[("o0", "full"), "kf_recall"], df.loc[("o1", "full"), "kf_recall"]) == (1.0, 0.0)
    assert df.loc[("o0", "full"), "judge"] == 0.8 and np.isnan(df.loc[("o1", "full"), "judge"])


def test_aggregate_exact_values(bench):
    items, _, run = bench
    sc, files = score_run(items, run, ScoreConfig(n_resamples=300, embeddings=False))
    assert sc.model == MODEL and sc.open_metric == "judge" and [f.name for f in files] == [
        "responses.jsonl", "judgements.jsonl"]
    assert sc.paper_row["Dx Mam"]["point"] == 0.5 and sc.paper_row["closed"]["point"] == 0.5
    assert sc.paper_row["Scr BUS"] is None and sc.paper_row["open"]["point"] == 0.8
    assert _point(sc, "overall", {}, "unparseable_rate") == pytest.approx(2 / 6)
    assert _point(sc, "overall", {}, "mean_iou") == 0.25 and _point(sc, "overall", {}, "hit_rate@0.5") == 0.5
    assert _point(sc, "provenance", {"provenance": "generated"}, "key_finding_recall") == 0.5
    cell = find_group(sc.groups, "cell", {"stage": "diagnosis", "modality": "mammography",
                                          "task_family": "closed_vqa", "source": "vindr"}, "accuracy")
    assert (cell["n_items"], cell["n_clusters"]) == (6, 5) and "only 5 patients" in cell["warning"]
    (birads,) = sc.clinical
    # Positives q0 (4), q2 (5, unparseable -> worst case 2), q4 (4, missing -> 2): sensitivity 1/3; negatives all TN.
    assert birads["sensitivity"]["point"] == pytest.approx(1 / 3) and birads["specificity"]["point"] == 1.0
    assert birads["n_unparseable"] == 2 and birads["levels"] == [2.0, 3.0, 4.0, 5.0]
    assert birads["confusion"] == [[1, 1, 0, 0], [0, 1, 0, 0], [1, 0, 1, 0], [1, 0, 0, 0]]
    assert birads["auc"] is None and birads["calibration"] == []
    gaps = {(s["variant"], s["where"]): s for s in sc.shortcuts}
    assert gaps[("no_image", "overall")]["gap"]["point"] == 0.0 and gaps[("no_image", "overall")]["flag"]
    assert gaps[("permute_options", "overall")]["gap"]["point"] == 0.0
    assert sc.judge["judges"][0]["family_check"]["status"] == "same"  # Qwen judging a Qwen model
    assert sc.clustering == {"unit": "patients", "n_items": 10, "n_clusters": 6, "warning": None,
                             "by_level": {"patient": {"items": 10, "clusters": 6}}}
    assert any("no response" in w for w in sc.warnings)


def test_compare_is_paired(bench, tmp_path):
    items, _, run = bench
    run_b = tmp_path / "run_b"
    write_jsonl_atomic(run_b / "responses.jsonl", _responses(q1="A"))
    cfg = ScoreConfig(n_resamples=200, embeddings=False)
    da = score_responses(items, load_run(run, items), cfg)
    db = score_responses(items, load_run(run_b, items), cfg)
    rows = {r["where"]: r["difference"] for r in compare(items, da, db, cfg, "rouge_l")}
    assert rows["closed"]["point"] == pytest.approx(-1 / 6)
    assert rows["closed"]["high"] <= 0.0  # b is never worse on any resample: the same patients are drawn for both
    assert rows["open"]["point"] == 0.0 and (rows["open"]["low"], rows["open"]["high"]) == (0.0, 0.0)


def test_run_dir_errors(bench, tmp_path):
    items, _, run = bench
    bad = tmp_path / "bad"
    write_jsonl_atomic(bad / "responses.jsonl", [{"item_id": "zz", "response": "A", "model": MODEL}])
    with pytest.raises(BenchDataError, match="unknown item 'zz'"):
        load_run(bad, items)
    write_jsonl_atomic(bad / "responses.jsonl", [{"item_id": "q0", "response": "A", "model": "a"},
                                                 {"item_id": "q1", "response": "A", "model": "b"}])
    with pytest.raises(BenchDataError, match="2 models"):
        load_run(bad, items)
    with pytest.raises(BenchDataError, match="no responses"):
        load_run(tmp_path / "empty", items)


def test_report_files_and_html(bench, tmp_path):
    items, items_path, run = bench
    sc, files = score_run(items, run, ScoreConfig(n_resamples=200, embeddings=True))
    rep = write_report(sc, tmp_path / "out", [items_path, *files])
    assert sc.per_item.set_index(["item_id", "variant"]).loc[("o0", "full"), "embedding"] > 0.5
    saved = json.loads((tmp_path / "out" / "report.json").read_text())
    assert saved == rep and saved["schema"] == "breastgpt.bench.report/1"
    assert [i["path"] for i in saved["manifest"]["inputs"]][0] == str(items_path)
    assert len(saved["manifest"]["inputs"][0]["sha256"]) == 64
    lines = (tmp_path / "out" / "item_scores.jsonl").read_text().splitlines()
    assert len(lines) == 10 + 3 + 1
    html = (tmp_path / "out" / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 2  # cell bars + one confusion matrix (no scores -> no calibration)
    assert "Dx Mam" in html and "http" not in html.replace("http-equiv", "")
    assert not list((tmp_path / "out").glob("*.partial"))


def test_cli_score_report_compare(bench, tmp_path):
    _, items_path, run = bench
    runner = CliRunner()
    res = runner.invoke(app, ["score", str(items_path), str(run), "--out", str(tmp_path / "o"), "--resamples", "100",
                              "--no-embeddings", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["paper_row"]["Dx Mam"]["point"] == 0.5
    (tmp_path / "o" / "report.html").unlink()
    res = runner.invoke(app, ["report", str(tmp_path / "o" / "report.json")])
    assert res.exit_code == 0 and (tmp_path / "o" / "report.html").is_file()
    res = runner.invoke(app, ["compare", str(items_path), str(run), str(run), "--resamples", "50", "--json"])
    assert res.exit_code == 0, res.output
    assert {r["where"]: r["difference"]["point"] for r in json.loads(res.stdout)["differences"]}["closed"] == 0.0
    res = runner.invoke(app, ["score", str(items_path), str(tmp_path / "nothing"), "--no-embeddings"])
    assert res.exit_code == 2 and "no responses" in res.output
    res = runner.invoke(app, ["score", str(items_path), str(run), "--open-metric", "bleu"])
    assert res.exit_code != 0


def test_report_renders_a_binary_target_without_kappa(tmp_path):
    """A binary clinical target has sensitivity/specificity but no weighted κ; the report shows a dash (it used
    to fail on the missing κ, found by `breastgpt demo`)."""
    target = {"name": "malignancy", "kind": "binary", "option_values": [False, True]}
    recs = [closed_record(f"b{i}", f"p{i}", i % 2, target=target) for i in range(6)]
    items_path = tmp_path / "bench.jsonl"
    write_jsonl_atomic(items_path, recs)
    run = tmp_path / "run"
    write_jsonl_atomic(run / "responses.jsonl", [{"item_id": f"b{i}", "response": "AB"[i % 3 == 0], "model": MODEL}
                                                 for i in range(6)])
    items = [item_from_record(r) for r in recs]
    sc, files = score_run(items, run, ScoreConfig(n_resamples=100, embeddings=False))
    (clinical,) = sc.clinical
    assert clinical["kind"] == "binary" and "kappa_linear" not in clinical
    write_report(sc, tmp_path / "out", [items_path, *files])
    html = (tmp_path / "out" / "report.html").read_text()
    assert "malignancy" in html and "κ linear" in html
