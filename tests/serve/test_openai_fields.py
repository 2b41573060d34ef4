"""The chat fields OpenAI clients send, through the official `openai` client against the server running a tiny
real checkpoint: stop sequences, frequency/presence penalties and log-probabilities checked against a plain
greedy decoder written here (no cache, no generation utilities), stream usage, the no-op fields, WebP/TIFF/BMP
images, and a 400 naming the supported value for what the server does not implement."""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import openai
import pytest
import torch
from PIL import Image

from breastgpt.infer.engine import Conversation, Engine, OpenAIPenalties
from tests.serve.fakes import API_KEY, ScriptedEngine, running_server

QUESTION = [{"role": "user", "content": "Describe the lesion margins."}]


@pytest.fixture(scope="module")
def engine(tiny_checkpoint: Path) -> Engine:
    return Engine.from_pretrained(tiny_checkpoint, device="cpu")


@pytest.fixture(scope="module")
def client(engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[openai.OpenAI]:
    with running_server(engine, tmp_path_factory.mktemp("serve")) as url:
        yield openai.OpenAI(base_url=f"{url}/v1", api_key=API_KEY, max_retries=0)


def reference_greedy(engine: Engine, steps: int, frequency: float = 0.0,
                     presence: float = 0.0) -> tuple[list[int], list[torch.Tensor]]:
    """Greedy decoding by full forward passes; OpenAI's penalties applied by their published formula. Returns the
    token ids and, per step, the model's own log-probabilities (before penalties)."""
    ids = engine._inputs([Conversation(QUESTION)])["input_ids"]  # noqa: SLF001 — the server's exact prompt
    prompt_length, chosen, logprobs = ids.shape[1], [], []
    eos = set(engine._eos_ids())  # noqa: SLF001
    with torch.inference_mode():
        for _ in range(steps):
            logits = engine.model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits[0, -1].float()
            counts = torch.bincount(ids[0, prompt_length:], minlength=logits.shape[0])[:logits.shape[0]].float()
            token = int((logits - frequency * counts - presence * (counts > 0).float()).argmax())
            if token in eos:
                break
            chosen.append(token)
            logprobs.append(torch.log_softmax(logits, dim=-1))
            ids = torch.cat([ids, torch.tensor([[token]])], dim=1)
    return chosen, logprobs


def ask(client: openai.OpenAI, **extra: object) -> object:
    return client.chat.completions.create(model="breastgpt", messages=QUESTION, temperature=0, **extra)


def test_logprobs_are_the_model_s_own_log_probabilities(client: openai.OpenAI, engine: Engine) -> None:
    answer = ask(client, max_tokens=6, logprobs=True, top_logprobs=3)
    ids, reference = reference_greedy(engine, 6)
    content = answer.choices[0].logprobs.content
    assert len(content) == len(ids) == answer.usage.completion_tokens >= 1
    for entry, token, logprobs in zip(content, ids, reference):
        assert entry.token == engine.processor.tokenizer.decode([token])
        assert math.isclose(entry.logprob, float(logprobs[token]), abs_tol=1e-4)
        assert [alt.logprob for alt in entry.top_logprobs] == sorted((a.logprob for a in entry.top_logprobs),
                                                                     reverse=True)
        best = logprobs.topk(3)
        assert [round(a.logprob, 4) for a in entry.top_logprobs] == [round(float(v), 4) for v in best.values]
        assert bytes(entry.bytes) == entry.token.encode()
    assert ask(client, max_tokens=6).choices[0].logprobs is None  # only when asked for


def test_penalties_follow_openai_s_formula(client: openai.OpenAI, engine: Engine) -> None:
    plain_ids, _ = reference_greedy(engine, 12)
    penalised_ids, _ = reference_greedy(engine, 12, frequency=1.5, presence=1.0)
    assert plain_ids != penalised_ids  # the tiny model repeats itself; the penalties change its answer
    decode = engine.processor.tokenizer.decode
    assert ask(client, max_tokens=12).choices[0].message.content == decode(plain_ids, skip_special_tokens=True)
    penalised = ask(client, max_tokens=12, frequency_penalty=1.5, presence_penalty=1.0)
    assert penalised.choices[0].message.content == decode(penalised_ids, skip_special_tokens=True)


def test_the_penalty_processor_counts_generated_tokens_only() -> None:
    ids = torch.tensor([[5, 1, 1, 1, 2], [5, 3, 0, 0, 0]])  # prompt of one token, then four generated
    scores = torch.zeros(2, 6)
    out = OpenAIPenalties(prompt_length=1, frequency=0.5, presence=2.0)(ids, scores)
    assert out[0].tolist() == [0.0, -3.5, -2.5, 0.0, 0.0, 0.0]  # token 5 is only in the prompt
    assert out[1].tolist() == [-3.5, 0.0, 0.0, -2.5, 0.0, 0.0]


def test_stop_sequences_end_the_answer_streamed_or_not(client: openai.OpenAI) -> None:
    full = ask(client, max_tokens=16).choices[0].message.content
    assert len(full) >= 6
    stop = full[len(full) // 2:len(full) // 2 + 2]
    expected = full[:full.find(stop)]
    stopped = ask(client, max_tokens=16, stop=[stop, "\u2603never"])
    assert stopped.choices[0].message.content == expected
    assert stopped.choices[0].finish_reason == "stop"
    streamed = ask(client, max_tokens=16, stop=stop, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in streamed if c.choices) == expected


def test_stream_usage_is_the_last_chunk(client: openai.OpenAI) -> None:
    whole = ask(client, max_tokens=8)
    chunks = list(ask(client, max_tokens=8, stream=True, stream_options={"include_usage": True}))
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (
        whole.usage.prompt_tokens, whole.usage.completion_tokens)
    assert all(chunk.usage is None for chunk in chunks[:-1])
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == whole.choices[0].message.content


def test_fields_with_their_default_meaning_are_accepted(client: openai.OpenAI) -> None:
    plain = ask(client, max_tokens=6).choices[0].message.content
    same = ask(client, max_tokens=6, n=1, user="reader-7", response_format={"type": "text"}, tool_choice="none",
               frequency_penalty=0, presence_penalty=0, logit_bias={})
    assert same.choices[0].message.content == plain


def image_url(array: np.ndarray, fmt: str, mime: str, **options: object) -> dict:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt, **options)
    return {"type": "image_url", "image_url": {"url": f"data:{mime};base64,{base64.b64encode(buffer.getvalue()).decode()}"}}


def test_webp_tiff_and_bmp_images_give_the_png_answer(client: openai.OpenAI) -> None:
    array = np.random.default_rng(3).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    answers = {}
    for fmt, mime, options in [("PNG", "image/png", {}), ("WEBP", "image/webp", {"lossless": True}),
                               ("TIFF", "image/tiff", {}), ("BMP", "image/bmp", {})]:
        messages = [{"role": "user", "content": [image_url(array, fmt, mime, **options),
                                                 {"type": "text", "text": "Any mass?"}]}]
        answers[fmt] = client.chat.completions.create(model="breastgpt", messages=messages, max_tokens=6,
                                                      temperature=0).choices[0].message.content
    assert len(answers) == 4 and len(set(answers.values())) == 1


UNSUPPORTED = [
    ({"n": 2}, "n must be 1"),
    ({"response_format": {"type": "json_object"}}, "only 'text'"),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {}}}}, "only 'text'"),
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]}, "tool calling"),
    ({"tool_choice": "auto"}, "tool_choice may only be 'none'"),
    ({"logit_bias": {"100": 5}}, "logit_bias"),
    ({"top_logprobs": 2}, "needs logprobs"),
    ({"logprobs": True, "stream": True}, "non-streamed"),
    ({"stream_options": {"include_usage": True}}, "stream: true"),
]


@pytest.mark.parametrize(("extra", "said"), UNSUPPORTED, ids=[str(e) for e, _ in UNSUPPORTED])
def test_unsupported_values_are_400_naming_what_is_supported(tmp_path: Path, extra: dict, said: str) -> None:
    with running_server(ScriptedEngine(), tmp_path) as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key=API_KEY, max_retries=0)
        with pytest.raises(openai.BadRequestError) as refused:
            response = client.chat.completions.create(model="breastgpt", messages=QUESTION, **extra)
            list(response) if extra.get("stream") else None
    assert refused.value.status_code == 400 and said in refused.value.body["message"]
