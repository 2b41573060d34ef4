"""The official `openai` client against the server running a tiny real checkpoint."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
import openai
from PIL import Image

from breastgpt.infer.engine import Engine
from tests.serve.fakes import API_KEY, running_server


def data_url(array: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def test_openai_client_chats_with_images_streaming_and_not(tiny_checkpoint: Path, tmp_path: Path) -> None:
    engine = Engine.from_pretrained(tiny_checkpoint, device="cpu")
    image = np.random.default_rng(0).integers(0, 255, (96, 96, 3), dtype=np.uint8)
    messages = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": data_url(image)}},
                                             {"type": "text", "text": "Is there a mass?"}]}]
    with running_server(engine, tmp_path) as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key=API_KEY, max_retries=0)
        assert [m.id for m in client.models.list().data] == ["breastgpt"]
        first = client.chat.completions.create(model="breastgpt", messages=messages, max_tokens=6, temperature=0,
                                               extra_body={"stage": "diagnosis"})
        second = client.chat.completions.create(model="breastgpt", messages=messages, max_tokens=6, temperature=0,
                                                extra_body={"stage": "diagnosis"})
        streamed = client.chat.completions.create(model="breastgpt", messages=messages, max_tokens=6, temperature=0,
                                                  stream=True, extra_body={"stage": "diagnosis"})
        pieces = [chunk.choices[0].delta.content or "" for chunk in streamed if chunk.choices]
    assert first.choices[0].message.content == second.choices[0].message.content  # greedy is deterministic
    assert "".join(pieces) == first.choices[0].message.content
    assert first.usage.completion_tokens >= 1
    assert first.model_extra["breastgpt"]["research_use_only"] is True
