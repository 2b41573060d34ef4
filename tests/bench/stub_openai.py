"""A scripted OpenAI-compatible chat endpoint on 127.0.0.1 for tests (reusable by other sub-suites).

    with StubOpenAI(["SCORE: 7", "no score", 500]) as stub:
        client = openai.OpenAI(base_url=stub.base_url, api_key="x")

Each request to /v1/chat/completions takes the next scripted answer: a string becomes the assistant message, an
int is returned as that HTTP error status. A callable answer is called with the request body. Requests are kept in
`stub.requests` for assertions.
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any, Callable, Sequence

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

Answer = str | int | Callable[[dict[str, Any]], str]


class StubOpenAI:
    def __init__(self, answers: Sequence[Answer] | Callable[[dict[str, Any]], str], model: str = "stub-model"):
        self._answers = answers
        self._next = 0
        self._lock = threading.Lock()
        self.model = model
        self.requests: list[dict[str, Any]] = []
        self.app = self._build_app()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def _take(self, body: dict[str, Any]) -> Answer:
        with self._lock:
            self.requests.append(body)
            if callable(self._answers):
                return self._answers
            if self._next >= len(self._answers):
                return 503
            answer = self._answers[self._next]
            self._next += 1
            return answer

    def _build_app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/v1/chat/completions")
        async def chat(request: Request) -> JSONResponse:
            body = await request.json()
            answer = self._take(body)
            if isinstance(answer, int):
                return JSONResponse({"error": {"message": f"scripted status {answer}", "type": "stub"}},
                                    status_code=answer)
            text = answer(body) if callable(answer) else answer
            return JSONResponse(self._reply(body, text))

        return app

    def _reply(self, body: dict[str, Any], text: str) -> dict[str, Any]:
        """The completion answering `text` to request `body` (subclasses add fields such as logprobs)."""
        return _completion(body.get("model", self.model), text)

    def __enter__(self) -> StubOpenAI:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError(f"stub OpenAI server did not start on port {self.port}")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._server is not None and self._thread is not None
        self._server.should_exit = True
        self._thread.join(timeout=10)


def _completion(model: str, text: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-stub", "object": "chat.completion", "created": 0, "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }
