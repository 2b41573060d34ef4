"""LLM judge against a scripted local OpenAI-compatible server; strict score parsing; the reference's provenance in
the prompt; family checks from names and checkpoint configs; agreement with cluster-bootstrap intervals."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.stats import spearmanr
from sklearn.metrics import cohen_kappa_score

from breastgpt.bench.items import BenchDataError, SavedResponse, item_from_record
from breastgpt.bench.judge_controls import (FamilyEvidence, agreement, candidate_family, checkpoint_family,
                                            family_check, family_from_name, model_family, ok_scores)
from breastgpt.bench.judges import (Judge, JudgeConfig, judgement_file, load_judgements, parse_judge_output,
                                    prompt_sha256, render_prompt, save_judgements)
from breastgpt.bench.statistics import ClusterResampler
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
    assert all(s.judge_model == "gpt-judge" and s.prompt_version == "v2" and s.prompt_sha256 == prompt_sha256("v2")
               for s in scores)
    assert scores[0].normalised == 0.8 and scores[1].normalised is None
    sent = stub.requests[0]
    assert sent["model"] == "gpt-judge" and sent["temperature"] == 0.0
    assert sent["messages"][0]["content"] == render_prompt(items[0], "answer o0")
    assert "- oval mass" in sent["messages"][0]["content"]
    assert "written by a language model, not by an expert" in sent["messages"][0]["content"]
    save_judgements(tmp_path / "judgements.jsonl", scores)
    assert load_judgements(tmp_path / "judgements.jsonl") == scores
    assert ok_scores(scores) == {"o0": 8, "o3": 3}


def test_judge_config_validation_and_missing_key(monkeypatch):
    with pytest.raises(ValueError, match=r"judge config: unknown key\(s\) \['temperture'\]"):
        JudgeConfig.from_dict({"base_url": "x", "model": "m", "temperture": 0})
    with pytest.raises(ValueError, match="prompt version"):
        JudgeConfig("x", "m", prompt_version="v0")
    with pytest.raises(ValueError, match="v1 is retired: it calls every reference 'written by experts'"):
        JudgeConfig("x", "m", prompt_version="v1")
    monkeypatch.delenv("MY_JUDGE_KEY", raising=False)
    with pytest.raises(BenchDataError, match="MY_JUDGE_KEY is not set"):
        Judge(JudgeConfig("http://127.0.0.1:1/v1", "m", api_key_env="MY_JUDGE_KEY"))


# ------------------------------------------------------------------------------------------- prompt snapshots

SNAPSHOT_GENERATED = """You are grading an answer to a breast-imaging question against a reference answer.
Reference provenance: written by a language model (gpt-4o-2024-08-06), not by an expert, and not checked by one; it \
may be wrong or incomplete, so do not treat its wording as ground truth.
Judge clinical correctness and completeness of the key findings; ignore style and length.
Rubric: 0 = wrong or unrelated, 10 = clinically equivalent to the reference.

Question:
<image>Describe g1.

Reference answer:
An irregular mass.

Key findings the answer should state:
- irregular mass

Candidate answer:
A mass.

Give a one-sentence justification, then finish with exactly one line of the form
SCORE: <integer from 0 to 10>""".replace("\\\n", "")


def _open_item(provenance, rid="g1"):
    rec = open_record(rid, "p1", "An irregular mass.", ["irregular mass"])
    rec["answer_provenance"] = provenance
    return item_from_record(rec)


def test_prompt_snapshot_for_a_model_written_reference():
    item = _open_item({"kind": "generated", "generator_model": "gpt-4o-2024-08-06", "generator_prompt_sha256": "ab"})
    assert render_prompt(item, "A mass.") == SNAPSHOT_GENERATED


@pytest.mark.parametrize("provenance,line", [
    ("label", "Reference provenance: derived by rule from a human annotation (a structured label), so it is terse "
              "and may omit findings that were not annotated."),
    ("report", "Reference provenance: taken from a clinician's written report."),
    ("generated", "Reference provenance: written by a language model, not by an expert, and not checked by one; it "
                  "may be wrong or incomplete, so do not treat its wording as ground truth."),
    ("unknown", "Reference provenance: unknown; it may have been written by a language model, so do not assume an "
                "expert wrote or checked it."),
])
def test_prompt_states_the_reference_provenance(provenance, line):
    prompt = render_prompt(_open_item(provenance), "A mass.")
    assert prompt.splitlines()[1] == line
    assert "expert" not in prompt.splitlines()[0] and "written by experts" not in prompt


def test_each_judge_has_its_own_file_name():
    assert judgement_file("gpt-4.1") == "judgements_gpt-4.1.jsonl"
    assert judgement_file("Qwen/Qwen2.5-72B-Instruct") == "judgements_Qwen_Qwen2.5-72B-Instruct.jsonl"
    assert judgement_file("gpt-4.1") != judgement_file("gpt-4.1-mini")


# --------------------------------------------------------------------------------------------------- families


@pytest.mark.parametrize("name,family", [
    ("Qwen/Qwen3-VL-8B-Instruct", "qwen"), ("breastgpt-8b", "qwen"), ("gpt-5.4", "openai-gpt"),
    ("meta-llama/Llama-3.1-70B-Instruct", "llama"), ("google/gemma-3-27b-it", "google"),
    ("claude-opus-4", "anthropic-claude"), ("my-own-model", None),
])
def test_model_family(name, family):
    assert model_family(name) == family


def _checkpoint(folder, config=None, adapter=None):
    folder.mkdir(parents=True)
    if config is not None:
        (folder / "config.json").write_text(json.dumps(config))
    if adapter is not None:
        (folder / "adapter_config.json").write_text(json.dumps(adapter))
    return folder


def test_checkpoint_family_comes_from_its_base_model_config(tmp_path):
    ours = _checkpoint(tmp_path / "run-17", {"model_type": "breastgpt", "architectures": [
        "BreastGPTForConditionalGeneration"], "_name_or_path": "/ckpt/Qwen3-VL-8B-Instruct"})
    assert model_family("run-17") is None  # the folder name says nothing
    assert checkpoint_family(ours) == FamilyEvidence(
        "qwen", "checkpoint config.json _name_or_path '/ckpt/Qwen3-VL-8B-Instruct'")
    nested = _checkpoint(tmp_path / "final", {"model_type": "llava", "text_config": {"model_type": "mistral"}})
    assert checkpoint_family(nested).family == "mistral"
    lora = _checkpoint(tmp_path / "lora", adapter={"base_model_name_or_path": "meta-llama/Llama-3.2-11B-Vision"})
    assert checkpoint_family(lora).family == "llama"
    unknown = _checkpoint(tmp_path / "step-900", {"model_type": "my_arch", "architectures": ["MyModel"]})
    assert checkpoint_family(unknown).family is None
    mixed = _checkpoint(tmp_path / "mixed", {"model_type": "qwen2_vl", "_name_or_path": "google/gemma-3-4b"})
    assert checkpoint_family(mixed).family is None and "several families" in checkpoint_family(mixed).basis
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.json").write_text("{not json")
    with pytest.raises(BenchDataError, match="unreadable checkpoint config"):
        checkpoint_family(tmp_path / "broken")


def test_family_check_says_unknown_never_different_when_it_cannot_tell(tmp_path):
    same = family_check("Qwen2.5-72B-Instruct", family_from_name("BreastGPT-8B"))
    assert same["status"] == "same" and "both qwen-family" in same["text"]
    other = family_check("gpt-5.4", FamilyEvidence("qwen", "checkpoint config.json model_type 'breastgpt'"))
    assert other == {"status": "different", "text": "different family: judge openai-gpt, candidate qwen (checkpoint "
                                                    "config.json model_type 'breastgpt')"}
    for judge, candidate in (("gpt-5.4", family_from_name("run-17")), ("my-judge", family_from_name("gpt-5.4"))):
        check = family_check(judge, candidate)
        assert check["status"] == "unknown" and check["text"].startswith("unknown family")
        assert "different" not in check["text"]


def test_candidate_family_prefers_run_json_then_the_checkpoint(tmp_path):
    ckpt = _checkpoint(tmp_path / "ckpt-a", {"model_type": "breastgpt"})
    run = tmp_path / "run"
    run.mkdir()
    assert candidate_family(run, "ckpt-a") == FamilyEvidence(None, "model name 'ckpt-a'")
    (run / "run.json").write_text(json.dumps({"model": {"spec": f"local:{ckpt}", "name": "ckpt-a"}}))
    assert candidate_family(run, "ckpt-a").family == "qwen"
    recorded = {"family": "llama", "basis": "checkpoint config.json model_type 'llama'"}
    (run / "run.json").write_text(json.dumps({"model": {"spec": f"local:{ckpt}", "family": recorded}}))
    assert candidate_family(run, "ckpt-a") == FamilyEvidence("llama", recorded["basis"])


# -------------------------------------------------------------------------------------------------- agreement


def test_agreement_points_match_scipy_and_sklearn():
    rng = np.random.default_rng(3)
    ids = [f"i{k}" for k in range(40)]
    a = {i: int(v) for i, v in zip(ids, rng.integers(0, 11, 40))}
    b = {i: int(min(10, max(0, a[i] + d))) for i, d in zip(ids, rng.integers(-2, 3, 40))}
    del b["i0"], a["i1"]  # each rater skipped one item
    rs = ClusterResampler([f"p{k // 2}" for k in range(40)], n_resamples=300, seed=1)
    got = agreement(a, b, "0-10", ids, rs)
    common = [i for i in ids if i in a and i in b]
    assert got["n"] == 38 and got["spearman"]["n_items"] == 38
    assert got["spearman"]["point"] == pytest.approx(spearmanr([a[i] for i in common], [b[i] for i in common])[0])
    assert got["kappa_quadratic"]["point"] == pytest.approx(cohen_kappa_score(
        [a[i] for i in common], [b[i] for i in common], weights="quadratic", labels=list(range(11))))
    for m in ("spearman", "kappa_quadratic"):
        assert got[m]["low"] < got[m]["point"] < got[m]["high"] and got[m]["n_clusters"] == 19  # p0 (i0, i1) is out


def test_perfect_agreement_has_a_flagged_zero_width_interval():
    ids = [f"i{k}" for k in range(6)]
    a = {i: k % 5 + 1 for k, i in enumerate(ids)}
    rs = ClusterResampler(ids, n_resamples=200, seed=0)
    got = agreement(a, dict(a), "1-5", ids, rs)
    assert got["spearman"]["point"] == pytest.approx(1.0) and got["kappa_quadratic"]["point"] == pytest.approx(1.0)
    assert got["kappa_quadratic"]["zero_width"] and "zero-width interval" in got["kappa_quadratic"]["warning"]
    assert "only 6 patients" in got["spearman"]["warning"]
    with pytest.raises(BenchDataError, match="outside the 1-5 rubric"):
        agreement(a, {"i0": 9}, "1-5", ids, rs)
