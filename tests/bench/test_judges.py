"""LLM judge against a scripted local OpenAI-compatible server; strict score parsing; agreement; family checks."""

from __future__ import annotations

import pytest

from breastgpt.bench.items import BenchDataError, SavedResponse, item_from_record
from breastgpt.bench.judges import (Judge, JudgeConfig, agreement, load_judgements, model_family, ok_scores,
                                    parse_judge_output, prompt_sha256, render_prompt, same_family_warning,
                                    save_judgements)
from tests.bench.helpers import open_record
from tests.bench.stub_openai import StubOpenAI


@pytest.mark.parametrize("text,rubric,expected", [
    ("Good match.\nSCORE: 7", "0-10", 7),
    ("score: 10", "0-10", 10),
    ("**Score:** 4", "1-5", 4),
    ("Close.\nSCORE: 0", "0-10", 0),
    ("SCORE: 0", "1-5", None),        # outside the rubric
    ("SCORE: 11", "0-10", None),
    ("SCORE: 7.5", "0-10", None),     # not an integer
    ("SCORE: 7/10", "0-10", None),
    ("I'd give it a 7.", "0-10", None),
    ("SCORE: 6\nSCORE: 8", "0-10", None),  # two scores: not guessed
    ("", "0-10", None),
])
def test_parse_judge_output_is_strict(text, rubric, expected):
    assert parse_judge_output(text, rubric) == expected


def _items():
    return [item_from_record(open_record(f"o{i}", f"p{i}", "Oval circumscribed mass.", ["oval mass"]))
            for i in range(4)]


def test_judge_through_stub_server_records_provenance(tmp_path):
    items = _items()
    responses = [SavedResponse(it.id, f"answer {it.id}", "Qwen3-VL-8B") for it in items]
    responses.append(SavedResponse("o0", "B", "Qwen3-VL-8B", variant="no_image"))  # ablations are not judged
    with StubOpenAI(["Fine.\nSCORE: 8", "no score given", 500, "SCORE: 3"]) as stub:
        judge = Judge(JudgeConfig(base_url=stub.base_url, model="gpt-judge", api_key_env=None, max_retries=0))
        scores = judge.score_many(items, responses)
    assert [(s.item_id, s.score, s.status) for s in scores] == [
        ("o0", 8, "ok"), ("o1", None, "unparseable"), ("o2", None, "error"), ("o3", 3, "ok")]
    assert scores[1].raw == "no score given"
    assert all(s.judge_model == "gpt-judge" and s.prompt_version == "v1" and s.prompt_sha256 == prompt_sha256("v1")
               for s in scores)
    assert scores[0].normalised == 0.8 and scores[1].normalised is None
    sent = stub.requests[0]
    assert sent["model"] == "gpt-judge" and sent["temperature"] == 0.0
    assert sent["messages"][0]["content"] == render_prompt(items[0], "answer o0")
    assert "- oval mass" in sent["messages"][0]["content"]
    save_judgements(tmp_path / "judgements.jsonl", scores)
    assert load_judgements(tmp_path / "judgements.jsonl") == scores
    assert ok_scores(scores) == {"o0": 8, "o3": 3}


def test_judge_config_validation_and_missing_key(monkeypatch):
    with pytest.raises(ValueError, match="unknown judge config keys"):
        JudgeConfig.from_dict({"base_url": "x", "model": "m", "temperture": 0})
    with pytest.raises(ValueError, match="prompt version"):
        JudgeConfig("x", "m", prompt_version="v0")
    monkeypatch.delenv("MY_JUDGE_KEY", raising=False)
    with pytest.raises(BenchDataError, match="MY_JUDGE_KEY is not set"):
        Judge(JudgeConfig("http://127.0.0.1:1/v1", "m", api_key_env="MY_JUDGE_KEY"))


@pytest.mark.parametrize("name,family", [
    ("Qwen/Qwen3-VL-8B-Instruct", "qwen"), ("breastgpt-8b", "qwen"), ("gpt-5.4", "openai-gpt"),
    ("meta-llama/Llama-3.1-70B-Instruct", "llama"), ("google/gemma-3-27b-it", "google"),
    ("claude-opus-4", "anthropic-claude"), ("my-own-model", None),
])
def test_model_family(name, family):
    assert model_family(name) == family


def test_same_family_warning():
    assert "qwen-family" in same_family_warning("Qwen2.5-72B-Instruct", "BreastGPT-8B")
    assert same_family_warning("gpt-5.4", "BreastGPT-8B") is None
    assert same_family_warning("unknown-a", "unknown-b") is None


def test_agreement_exact():
    a = {"x": 1, "y": 2, "z": 3, "w": 4, "only_a": 5}
    b = {"x": 1, "y": 2, "z": 3, "w": 4}
    got = agreement(a, b, "1-5")
    assert (got.n, got.spearman, got.kappa_quadratic) == (4, pytest.approx(1.0), pytest.approx(1.0))
    rev = agreement(a, {"x": 4, "y": 3, "z": 2, "w": 1}, "1-5")
    assert rev.spearman == pytest.approx(-1.0) and rev.kappa_quadratic < 0
    flat = agreement({"x": 3, "y": 3}, {"x": 1, "y": 2}, "1-5")
    assert flat.n == 2 and flat.spearman != flat.spearman  # NaN: a constant rater has no rank correlation
