"""A scripted engine (exact, instant answers) and a helper that runs the app with uvicorn on loopback."""

from __future__ import annotations

import socket
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generator, Iterator

import uvicorn

from breastgpt.infer.engine import Conversation, Generation, GenerationParams, StreamUsage
from breastgpt.preprocessing import Preprocessing
from breastgpt.serve.app import create_app
from breastgpt.serve.config import ServeConfig

API_KEY = "test-key-0123456789abcdef"


@dataclass
class FakeProcessor:
    slide_feature_dim: int | None = 8


@dataclass
class ScriptedEngine:
    """Answers "<n images> <n volumes> <n slides> | <last user text upper-cased>" after `delay` seconds."""

    delay: float = 0.0
    processor: FakeProcessor = field(default_factory=FakeProcessor)
    batches: list[int] = field(default_factory=list)
    preprocessing: Preprocessing = field(default_factory=Preprocessing)

    @staticmethod
    def answer(conversation: Conversation) -> str:
        counts = {"image": 0, "volume": 0, "slide": 0}
        text = ""
        for message in conversation.messages:
            parts = [message["content"]] if isinstance(message["content"], str) else message["content"]
            for part in parts:
                if isinstance(part, str):
                    text = part
                elif part["type"] == "text":
                    text = part["text"]
                else:
                    counts[part["type"]] += 1
        return f"{counts['image']} {counts['volume']} {counts['slide']} | {text.upper()}"

    def generate(self, conversations: list[Conversation], params: GenerationParams, cancel: Any = None) -> list[Generation]:
        self.batches.append(len(conversations))
        deadline = time.monotonic() + self.delay
        while time.monotonic() < deadline:
            if cancel is not None and cancel.is_set():
                return [Generation("", 1, 0, "cancelled") for _ in conversations]
            time.sleep(0.005)
        return [Generation(self.answer(c), 10, 3, "stop") for c in conversations]

    def stream(self, conversation: Conversation, params: GenerationParams,
               cancel: Any = None) -> Generator[str, None, StreamUsage | None]:
        words = self.answer(conversation).split(" ")
        for word in words:
            if cancel is not None and cancel.is_set():
                return None
            time.sleep(self.delay / 5)
            yield word + " "
        return StreamUsage(prompt_tokens=10, completion_tokens=len(words))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def running_server(engine: Any, tmp_path: Path, log_level: str = "warning", **overrides: Any) -> Iterator[str]:
    """Serve the app on 127.0.0.1 in a thread (uvicorn, access log on, as `breastgpt serve` runs it); yields the
    base URL. Stops by itself at the end."""
    config = ServeConfig(model_dir=tmp_path, api_keys=(API_KEY,), port=free_port(), **overrides)
    app = create_app(config, engine)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=config.port, log_level=log_level))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{config.port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
