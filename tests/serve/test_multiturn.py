"""Issue 34, point 3: a three-turn conversation with media in turns 1 and 3 gets the same answer from `serve` (the
official `openai` client, OpenAI message history) as from `ask --history` given the same history, because both
hand the model the same tokens and pixels."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import openai
import torch
from PIL import Image
from typer.testing import CliRunner

from breastgpt.cli import app
from breastgpt.infer.ask import AskInputs, build_conversation, load_history
from breastgpt.infer.engine import Engine
from breastgpt.serve.app import _prepare
from breastgpt.serve.config import ServeConfig
from tests.serve.fakes import API_KEY, running_server

QUESTIONS = ("Screening mammogram. What is the BI-RADS assessment category?", "Is a biopsy indicated?",
             "Diagnostic ultrasound of the recalled lesion. Is the lesion benign or malignant?")
ANSWERS = ("BI-RADS 4", "Yes, a core biopsy of the mass.")


def _images(folder: Path) -> list[Path]:
    rng = np.random.default_rng(7)
    paths = []
    for i, size in enumerate(((80, 64), (64, 96))):
        path = folder / f"turn{2 * i + 1}.png"
        Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


def _url(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()


def openai_messages(images: list[Path]) -> list[dict]:
    return [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": _url(images[0])}},
                                         {"type": "text", "text": QUESTIONS[0]}]},
            {"role": "assistant", "content": ANSWERS[0]},
            {"role": "user", "content": QUESTIONS[1]},
            {"role": "assistant", "content": ANSWERS[1]},
            {"role": "user", "content": [{"type": "image_url", "image_url": {"url": _url(images[1])}},
                                         {"type": "text", "text": QUESTIONS[2]}]}]


def history_file(folder: Path, images: list[Path]) -> Path:
    turns = [{"role": "user", "content": [{"type": "image", "path": images[0].name},
                                          {"type": "text", "text": QUESTIONS[0]}]},
             {"role": "assistant", "content": ANSWERS[0]},
             {"role": "user", "content": QUESTIONS[1]},
             {"role": "assistant", "content": ANSWERS[1]}]
    path = folder / "history.json"
    path.write_text(json.dumps(turns))
    return path


def test_serve_and_ask_answer_a_three_turn_conversation_alike(tiny_checkpoint: Path, tmp_path: Path) -> None:
    engine = Engine.from_pretrained(tiny_checkpoint, device="cpu")
    images = _images(tmp_path)
    messages = openai_messages(images)
    with running_server(engine, tmp_path) as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key=API_KEY, max_retries=0)
        served = client.chat.completions.create(model="breastgpt", messages=messages, max_tokens=8, temperature=0,
                                                extra_body={"stage": "diagnosis"})
        alone = client.chat.completions.create(model="breastgpt", messages=messages[-1:], max_tokens=8,
                                               temperature=0, extra_body={"stage": "diagnosis"})
    result = CliRunner().invoke(app, ["ask", "--model", str(tiny_checkpoint), "--max-new-tokens", "8", "--stage",
                                      "diagnosis", "--history", str(history_file(tmp_path, images)),
                                      "--image", str(images[1]), QUESTIONS[2]])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == served.choices[0].message.content.strip()
    assert served.usage.prompt_tokens > alone.usage.prompt_tokens + 20  # the history was read, media included


def test_serve_and_ask_build_the_same_model_inputs(tiny_checkpoint: Path, tmp_path: Path) -> None:
    engine = Engine.from_pretrained(tiny_checkpoint, device="cpu")
    images = _images(tmp_path)
    raw = json.dumps({"model": "breastgpt", "messages": openai_messages(images), "stage": "diagnosis"}).encode()
    (tmp_path / "work").mkdir()
    config = ServeConfig(model_dir=tmp_path, api_keys=(API_KEY,))
    _, served, _ = _prepare(raw, config, engine, tmp_path / "work")
    asked, _ = build_conversation(engine, QUESTIONS[2], AskInputs(images=[images[1]]), "diagnosis",
                                  history=load_history(history_file(tmp_path, images)))
    a, b = engine._inputs([served]), engine._inputs([asked])  # noqa: SLF001 — the tensors generation sees
    assert set(a) == set(b)
    for key in a:
        if isinstance(a[key], torch.Tensor):
            assert torch.equal(a[key], b[key]), key
    assert int((a["input_ids"] == engine.processor.tokenizer.convert_tokens_to_ids("<|im_start|>")).sum()) == 7  # system, 5 turns, reply
    assert len(a["image_grid_thw"]) == 2  # one image in turn 1, one in turn 3


def test_a_bad_history_file_is_a_clear_error(tiny_checkpoint: Path, tmp_path: Path) -> None:
    bad = tmp_path / "history.json"
    bad.write_text(json.dumps([{"role": "tool", "content": "x"}]))
    result = CliRunner().invoke(app, ["ask", "--model", str(tiny_checkpoint), "--history", str(bad), "Q?"])
    assert result.exit_code == 2 and "history.json" in result.output
