"""Issue 30 point 3: option scoring — a local model's per-option log-likelihoods, an endpoint's `logprobs`, and
the AUC, ECE and reliability data they feed in the report."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from breastgpt.bench.aggregate import score_run
from breastgpt.bench.clients import letter_probabilities
from breastgpt.bench.items import item_from_record, load_items, load_responses, write_jsonl_atomic
from breastgpt.bench.report import write_report
from breastgpt.bench.runner import RunConfig, run_bench
from breastgpt.bench.scoring import ScoreConfig
from tests.bench.helpers import closed_record
from tests.bench.stub_openai import StubOpenAI
from tests.bench.test_ablations import make_record
from tests.bench.test_runner import checkpoint, config, item_of, write_bench  # noqa: F401  (fixture)

TARGET = {"name": "malignancy", "kind": "binary", "option_values": [False, True]}


# ------------------------------------------------------------------------------------------------- scoring


def test_option_probabilities_give_ece_auc_and_reliability(tmp_path: Path) -> None:
    # 4 items, answers B A B A; P(B) = 0.9, 0.8, 0.3, 0.4: top option right for items 0 and 3 only
    recs = [closed_record(f"q{i}", f"p{i}", a, target=TARGET) for i, a in enumerate([1, 0, 1, 0])]
    items = [item_from_record(r) for r in recs]
    p_b = [0.9, 0.8, 0.3, 0.4]
    write_jsonl_atomic(tmp_path / "run" / "responses.jsonl",
                       [{"item_id": f"q{i}", "response": "AB"[i % 2 == 0], "model": "m",
                         "option_probs": [1 - p, p]} for i, p in enumerate(p_b)])
    scores, files = score_run(items, tmp_path / "run", ScoreConfig(n_resamples=200, embeddings=False))
    full = scores.per_item[scores.per_item["variant"] == "full"]
    assert full["confidence"].tolist() == pytest.approx([0.9, 0.8, 0.7, 0.6])
    assert full["option_correct"].tolist() == [1.0, 0.0, 0.0, 1.0]
    # bins 9 {0.9: right}, 8 {0.8: wrong}, 7 {0.7: wrong}, 6 {0.6: right}: (0.1 + 0.8 + 0.7 + 0.4) / 4 = 0.5
    assert scores.calibration["ece"]["point"] == pytest.approx(0.5)
    assert [b["n"] for b in scores.calibration["bins"]] == [1, 1, 1, 1]
    (clinical,) = scores.clinical
    # the positive-class probability is P(B = True): AUC of [0.9, 0.8, 0.3, 0.4] against [1, 0, 1, 0] = 0.5
    assert clinical["auc"]["point"] == pytest.approx(roc_auc_score([1, 0, 1, 0], p_b)) == pytest.approx(0.5)
    report = write_report(scores, tmp_path / "out", files)
    html = (tmp_path / "out" / "report.html").read_text()
    assert "Option scores: calibration" in html and "reliability of option scores" in html
    assert report["calibration"]["n_items"] == 4


def test_permuted_option_probabilities_map_back_to_the_original_options(tmp_path: Path) -> None:
    recs = [closed_record("q0", "p0", 1, options=["x", "y", "z"])]
    items = [item_from_record(r) for r in recs]
    write_jsonl_atomic(tmp_path / "run" / "responses.jsonl", [
        {"item_id": "q0", "response": "B", "model": "m"},
        {"item_id": "q0", "response": "A", "model": "m", "variant": "permute_options", "option_order": [1, 2, 0],
         "option_probs": [0.7, 0.2, 0.1]}])  # presented y, z, x
    scores, _ = score_run(items, tmp_path / "run", ScoreConfig(n_resamples=50, embeddings=False))
    permuted = scores.per_item[scores.per_item["variant"] == "permute_options"].iloc[0]
    assert permuted["confidence"] == pytest.approx(0.7) and permuted["option_correct"] == 1.0


def test_letter_probabilities_from_top_logprobs() -> None:
    top = [{"token": "B", "logprob": math.log(0.6)}, {"token": " A", "logprob": math.log(0.2)},
           {"token": "The", "logprob": math.log(0.15)}, {"token": "(C", "logprob": math.log(0.05)}]
    assert letter_probabilities(top, 3) == pytest.approx((0.2 / 0.85, 0.6 / 0.85, 0.05 / 0.85))
    assert letter_probabilities(top[2:3], 3) is None  # no option letter among the alternatives


# ------------------------------------------------------------------------------------------------- endpoint


class LogprobStub(StubOpenAI):
    """Answers the correct letter with the top_logprobs an OpenAI endpoint returns: 0.7 on it, 0.3 on 'A' (or on
    'B' when the answer is A); `with_logprobs=False` behaves like an endpoint that ignores the request."""

    def __init__(self, truth: dict[str, str], with_logprobs: bool = True):
        self.truth, self.with_logprobs = truth, with_logprobs
        super().__init__(lambda body: truth[item_of(body)])

    def _reply(self, body: dict[str, Any], letter: str) -> dict[str, Any]:
        reply = super()._reply(body, letter)
        if self.with_logprobs and body.get("logprobs"):
            other = "B" if letter == "A" else "A"
            top = [{"token": letter, "logprob": math.log(0.7), "bytes": None},
                   {"token": other, "logprob": math.log(0.3), "bytes": None}]
            reply["choices"][0]["logprobs"] = {"content": [{"token": letter, "logprob": math.log(0.7),
                                                            "bytes": None, "top_logprobs": top}]}
        return reply


def test_endpoint_logprobs_become_option_probabilities(tmp_path: Path) -> None:
    recs = [make_record(f"c{i}", f"p{i}", answer=i % 4) for i in range(4)]
    bench = write_bench(tmp_path, recs)
    truth = {f"c{i}": "ABCD"[i % 4] for i in range(4)}
    with LogprobStub(truth) as stub:
        m = run_bench(config(bench, stub, tmp_path / "run", option_scores=True))
        assert all(b["logprobs"] is True and b["top_logprobs"] == 20 for b in stub.requests)
    assert m["option_scores"] is True and m["decoding"]["option_scores"] is True
    saved = {r.item_id: r.option_probs for r in load_responses(tmp_path / "run" / "responses.jsonl")}
    assert saved["c0"] == pytest.approx((0.7, 0.3, 0.0, 0.0)) and saved["c2"] == pytest.approx((0.3, 0.0, 0.7, 0.0))
    with LogprobStub(truth, with_logprobs=False) as stub:
        run_bench(config(bench, stub, tmp_path / "plain", option_scores=True))
    assert all(r.option_probs is None for r in load_responses(tmp_path / "plain" / "responses.jsonl"))
    with LogprobStub(truth) as stub:  # without --option-scores nothing is asked for
        run_bench(config(bench, stub, tmp_path / "off"))
        assert not any("logprobs" in b for b in stub.requests)


# ---------------------------------------------------------------------------------------------- local model


@pytest.mark.slow  # builds the tiny checkpoint and imports the model stack
def test_local_option_scores_match_a_per_option_forward(tmp_path: Path, checkpoint: Path) -> None:  # noqa: F811
    import torch

    from breastgpt.infer.engine import Conversation, Engine
    from breastgpt.infer.records import record_conversation

    recs = [make_record(f"c{i}", f"p{i}", answer=i % 4) for i in range(2)]
    bench = write_bench(tmp_path, recs)
    cfg = RunConfig(bench=bench, model=f"local:{checkpoint}", out=tmp_path / "run", max_new_tokens=3,
                    batch_size=2, device="cpu", option_scores=True, embeddings=False)
    run_bench(cfg)
    saved = {r.item_id: r.option_probs for r in load_responses(tmp_path / "run" / "responses.jsonl")}
    engine = Engine.from_pretrained(checkpoint, device="cpu")
    for rec in recs:
        conv: Conversation = record_conversation(rec, tmp_path).conversation
        logliks = []
        for letter, option in zip("ABCD", rec.label["options"]):  # one unpadded sequence per option
            encoded = engine.processor.encode([*conv.prompt_messages(),
                                               {"role": "assistant", "content": f"{letter}. {option}"}])
            batch = engine.processor.pad_batch([encoded], padding_side="right")
            labels = batch.pop("labels")[0]
            with torch.inference_mode():
                logits = engine.model(**batch).logits[0].float()
            logprobs = torch.log_softmax(logits[:-1], dim=-1)
            keep = labels[1:] >= 0
            logliks.append(float(logprobs[keep].gather(-1, labels[1:][keep].unsqueeze(-1)).sum()))
        expected = np.exp(np.array(logliks) - max(logliks))
        assert saved[rec.id] == pytest.approx(tuple(expected / expected.sum()), abs=1e-4)
        assert sum(saved[rec.id]) == pytest.approx(1.0)
