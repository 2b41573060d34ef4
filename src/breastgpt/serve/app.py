"""OpenAI-compatible server: `/v1/models`, `/v1/chat/completions` (streaming and not), `/health`.

Hardening: bearer keys on every route but `/health` (constant-time comparison), body-size limit (413), strict
request schemas (422 on unknown fields), limits on messages, media and tokens, remote URLs and paths outside the
media root refused, 429 when saturated, per-request timeout (504), generation cancelled when the client leaves,
dynamic batching, no request content in logs, and a research-use notice in every response.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.middleware.base import BaseHTTPMiddleware

from breastgpt import RESEARCH_USE_NOTICE, __version__
from breastgpt.infer.engine import Conversation, Engine, GenerationParams
from breastgpt.serve.batching import Batcher, Saturated, batch_stats
from breastgpt.serve.config import ServeConfig
from breastgpt.serve.media import MediaError, MediaResolver
from breastgpt.serve.schemas import ChatRequest

log = logging.getLogger("breastgpt.serve")
METADATA = {"research_use_only": True, "notice": RESEARCH_USE_NOTICE, "server": f"breastgpt {__version__}"}


class BodyLimit(BaseHTTPMiddleware):
    """Refuse bodies above the limit by declared length, and by counting when the length is not declared."""

    def __init__(self, app: Any, max_bytes: int) -> None:
        super().__init__(app)
        self.max_bytes = max_bytes

    async def dispatch(self, request: Request, call_next: Any) -> Any:
        declared = request.headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            return _error(413, "request body too large", "payload_too_large")
        if declared is None and request.method in ("POST", "PUT", "PATCH"):
            body = b""
            async for chunk in request.stream():
                body += chunk
                if len(body) > self.max_bytes:
                    return _error(413, "request body too large", "payload_too_large")
            request._body = body  # noqa: SLF001 — starlette re-reads the cached body downstream
        return await call_next(request)


def _error(status: int, message: str, code: str) -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": {"message": message, "type": code, "code": status},
                                                     "breastgpt": METADATA})


def create_app(config: ServeConfig, engine: Engine) -> FastAPI:
    batcher = Batcher(engine, max_batch=config.max_batch, window_ms=config.batch_window_ms,
                      max_pending=config.max_queue)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        batcher.start()
        yield
        batcher.stop()

    app = FastAPI(title="BreastGPT", version=__version__, lifespan=lifespan,
                  description="OpenAI-compatible API. " + RESEARCH_USE_NOTICE)
    app.add_middleware(BodyLimit, max_bytes=config.max_body_bytes)
    app.state.batcher, app.state.config, app.state.engine = batcher, config, engine
    keys = [key.encode() for key in config.api_keys]

    def authorised(request: Request) -> None:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        presented = token.strip().encode()
        # compare against every key without an early exit, so timing does not reveal which prefix matched
        matches = [hmac.compare_digest(presented, key) for key in keys]
        if scheme.lower() != "bearer" or not any(matches):
            raise HTTPException(status_code=401, detail="missing or invalid API key",
                                headers={"WWW-Authenticate": "Bearer"})

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, error: HTTPException) -> JSONResponse:
        response = _error(error.status_code, str(error.detail), "invalid_request_error")
        response.headers.update(error.headers or {})
        return response

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, error: RequestValidationError) -> JSONResponse:
        problems = [{"loc": list(e["loc"]), "msg": e["msg"]} for e in error.errors()]
        return _error(422, json.dumps(problems)[:2000], "invalid_request_error")

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "breastgpt": METADATA}

    @app.get("/v1/models", dependencies=[Depends(authorised)])
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": config.served_model_name, "object": "model", "created": 0,
                                            "owned_by": "breastgpt"}], "breastgpt": METADATA}

    @app.post("/v1/chat/completions", dependencies=[Depends(authorised)])
    async def chat(body: ChatRequest, request: Request) -> Any:
        _check_limits(body, config)
        try:
            batcher.admit()
        except Saturated:
            return _error(429, "server is at capacity; retry later", "rate_limit_exceeded")
        request_id = f"chatcmpl-{uuid.uuid4().hex}"
        started = time.perf_counter()
        workdir = tempfile.TemporaryDirectory(prefix="breastgpt-req-")
        try:
            conversation, params = _prepare(body, config, engine, Path(workdir.name))
        except MediaError as error:
            batcher.release()
            workdir.cleanup()
            return _error(error.status, str(error), "invalid_request_error")
        except Exception:
            batcher.release()
            workdir.cleanup()
            raise
        log.info("request %s admitted: %d message(s), stream=%s", request_id, len(body.messages), body.stream)
        if body.stream:
            return StreamingResponse(_stream(request_id, conversation, params, engine, batcher, request, config,
                                             workdir, started), media_type="text/event-stream")
        try:
            return await _complete(request_id, conversation, params, batcher, request, config)
        finally:
            batcher.release()
            workdir.cleanup()
            log.info("request %s done in %.3fs", request_id, time.perf_counter() - started)

    @app.get("/v1/stats", dependencies=[Depends(authorised)])
    async def stats() -> dict[str, Any]:
        return {**batch_stats(batcher), "breastgpt": METADATA}

    return app


def _check_limits(body: ChatRequest, config: ServeConfig) -> None:
    if body.model != config.served_model_name:
        raise HTTPException(404, f"model {body.model!r} is not served here; GET /v1/models lists it")
    if len(body.messages) > config.max_messages:
        raise HTTPException(400, f"too many messages (max {config.max_messages})")
    for message in body.messages:
        parts = [message.content] if isinstance(message.content, str) else message.content
        chars = sum(len(p) if isinstance(p, str) else len(getattr(p, "text", "")) for p in parts)
        if chars > config.max_message_chars:
            raise HTTPException(400, f"a message exceeds {config.max_message_chars} characters")
    requested = body.max_completion_tokens or body.max_tokens or 256
    if requested > config.max_tokens:
        raise HTTPException(400, f"max_tokens above the server limit of {config.max_tokens}")


def _prepare(body: ChatRequest, config: ServeConfig, engine: Engine, workdir: Path) -> tuple[Conversation, GenerationParams]:
    slide_dim = getattr(engine.processor, "slide_feature_dim", None)
    resolver = MediaResolver(config, workdir, expect_slide_dim=slide_dim)
    messages = resolver.messages(body.messages)
    params = GenerationParams(max_new_tokens=body.max_completion_tokens or body.max_tokens or 256,
                              temperature=body.temperature, top_p=body.top_p, seed=body.seed or 0)
    return Conversation(messages, stage=body.stage, task=body.task), params


async def _watch_disconnect(request: Request, cancel: Any) -> None:
    while not cancel.is_set():
        if await request.is_disconnected():
            cancel.set()
            return
        await asyncio.sleep(0.05)


async def _complete(request_id: str, conversation: Conversation, params: GenerationParams, batcher: Batcher,
                    request: Request, config: ServeConfig) -> Any:
    job = batcher.submit(conversation, params)
    watcher = asyncio.create_task(_watch_disconnect(request, job.cancel))
    try:
        result = await asyncio.wait_for(asyncio.shield(job.future), timeout=config.request_timeout_s)
    except asyncio.TimeoutError:
        job.cancel.set()
        return _error(504, f"generation exceeded {config.request_timeout_s:.0f} s", "timeout")
    except asyncio.CancelledError:
        job.cancel.set()
        raise
    except Exception:
        log.exception("request %s failed", request_id)
        return _error(500, "generation failed", "server_error")
    finally:
        watcher.cancel()
    return {
        "id": request_id, "object": "chat.completion", "created": int(time.time()),
        "model": config.served_model_name,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": result.text},
                     "finish_reason": result.finish_reason if result.finish_reason != "cancelled" else "stop"}],
        "usage": {"prompt_tokens": result.prompt_tokens, "completion_tokens": result.completion_tokens,
                  "total_tokens": result.prompt_tokens + result.completion_tokens},
        "breastgpt": METADATA,
    }


def _chunk(request_id: str, model: str, delta: dict[str, Any], finish: str | None) -> str:
    payload = {"id": request_id, "object": "chat.completion.chunk", "created": int(time.time()), "model": model,
               "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], "breastgpt": METADATA}
    return f"data: {json.dumps(payload)}\n\n"


async def _stream(request_id: str, conversation: Conversation, params: GenerationParams, engine: Engine,
                  batcher: Batcher, request: Request, config: ServeConfig, workdir: Any, started: float) -> AsyncIterator[str]:
    import threading

    cancel = threading.Event()
    queue: asyncio.Queue[str | None | BaseException] = asyncio.Queue()
    loop = asyncio.get_running_loop()

    def produce() -> None:
        try:
            for text in engine.stream(conversation, params, cancel=cancel):
                loop.call_soon_threadsafe(queue.put_nowait, text)
            loop.call_soon_threadsafe(queue.put_nowait, None)
        except BaseException as error:  # delivered to the response as an error event
            loop.call_soon_threadsafe(queue.put_nowait, error)

    producer = loop.run_in_executor(None, produce)
    deadline = time.monotonic() + config.request_timeout_s
    try:
        yield _chunk(request_id, config.served_model_name, {"role": "assistant", "content": ""}, None)
        while True:
            timeout = deadline - time.monotonic()
            if timeout <= 0 or await request.is_disconnected():
                cancel.set()
                break
            try:
                item = await asyncio.wait_for(queue.get(), timeout=min(timeout, 0.25))
            except asyncio.TimeoutError:
                continue
            if item is None:
                yield _chunk(request_id, config.served_model_name, {}, "stop")
                yield "data: [DONE]\n\n"
                break
            if isinstance(item, BaseException):
                log.error("request %s failed during streaming: %s", request_id, type(item).__name__)
                yield f"data: {json.dumps({'error': {'message': 'generation failed', 'code': 500}})}\n\n"
                break
            yield _chunk(request_id, config.served_model_name, {"content": item}, None)
    finally:
        cancel.set()
        await producer
        batcher.release()
        workdir.cleanup()
        log.info("request %s (stream) done in %.3fs", request_id, time.perf_counter() - started)
