"""OpenAI-compatible server: `/v1/models`, `/v1/chat/completions` (streaming and not), `/v1/stats`,
`/openapi.json` (all behind the bearer key) and `/health` (open).

The event loop only moves bytes: request parsing, media decoding and generation run in worker threads, so
`/health` and other clients are answered while a large volume decodes. Each admitted request holds a `Lease`
that the `Guard` middleware closes however the request ends; the admission slot comes back when the request
and every piece of work it started have finished. Limits, keys and error bodies: see `middleware` and
`docs/inference.md`.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.exceptions import HTTPException

from breastgpt import RESEARCH_USE_NOTICE, __version__
from breastgpt.infer.engine import Conversation, Engine, GenerationParams
from breastgpt.model.configuration import slide_encoder_id
from breastgpt.serve.batching import Batcher, Saturated, batch_stats
from breastgpt.serve.body import parse_chat_body
from breastgpt.serve.config import ServeConfig
from breastgpt.serve.lease import Lease
from breastgpt.serve.media import MediaError, MediaResolver
from breastgpt.serve.middleware import BodyLimit, Guard, RequireKey, on_close
from breastgpt.serve.responses import METADATA, error_response, logprobs_body, validation_message
from breastgpt.serve.schemas import ChatRequest
from breastgpt.serve.streaming import events, start_producer

log = logging.getLogger("breastgpt.serve")
CHAT_BODY = {"requestBody": {"required": True,
                             "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ChatRequest"}}}}}


class Pools:
    """Worker threads: `decode` parses bodies and decodes media (bounded, since each may use much memory and
    CPU); `stream` feeds streamed answers (one per admitted request at most; they mostly wait on the engine)."""

    def __init__(self, config: ServeConfig) -> None:
        self.decode = ThreadPoolExecutor(config.decode_workers, thread_name_prefix="breastgpt-decode")
        self.stream = ThreadPoolExecutor(config.max_queue, thread_name_prefix="breastgpt-stream")

    def shutdown(self) -> None:
        for pool in (self.decode, self.stream):
            pool.shutdown(wait=False, cancel_futures=True)


def create_app(config: ServeConfig, engine: Engine) -> FastAPI:
    batcher = Batcher(engine, max_batch=config.max_batch, window_ms=config.batch_window_ms,
                      max_pending=config.max_queue)
    pools = Pools(config)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        batcher.start()
        yield
        batcher.stop()
        pools.shutdown()

    # no /docs or /redoc: a browser cannot send the bearer key; the schema itself is keyed like every route
    app = FastAPI(title="BreastGPT", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url="/openapi.json", description="OpenAI-compatible API. " + RESEARCH_USE_NOTICE)
    app.add_middleware(BodyLimit, max_bytes=config.max_body_bytes)
    app.add_middleware(RequireKey, keys=config.api_keys)
    app.add_middleware(Guard)  # added last = outermost
    app.state.batcher, app.state.config, app.state.engine = batcher, config, engine
    app.openapi = _openapi(app)  # type: ignore[method-assign]
    _add_error_handlers(app)
    _add_routes(app, config, engine, batcher, pools)
    return app


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(HTTPException)
    async def http_error(_: Request, error: HTTPException) -> JSONResponse:
        return error_response(error.status_code, str(error.detail), dict(error.headers or {}))

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, error: RequestValidationError) -> JSONResponse:
        return error_response(422, validation_message(list(error.errors())))

    @app.exception_handler(Saturated)
    async def saturated(_: Request, __: Saturated) -> JSONResponse:
        return error_response(429, "server is at capacity; retry later")

    @app.exception_handler(MediaError)
    async def media_error(_: Request, error: MediaError) -> JSONResponse:
        return error_response(error.status, str(error))


def _add_routes(app: FastAPI, config: ServeConfig, engine: Engine, batcher: Batcher, pools: Pools) -> None:
    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "breastgpt": METADATA}

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": config.served_model_name, "object": "model", "created": 0,
                                            "owned_by": "breastgpt"}], "breastgpt": METADATA}

    @app.get("/v1/stats")
    async def stats() -> dict[str, Any]:
        return {**batch_stats(batcher), "breastgpt": METADATA}

    @app.post("/v1/chat/completions", openapi_extra=CHAT_BODY)
    async def chat(request: Request) -> Any:
        raw = await request.body()
        lease = Lease(batcher.admit())
        on_close(request, lease.close)
        request_id, started = f"chatcmpl-{uuid.uuid4().hex}", time.perf_counter()
        on_close(request, lambda: log.info("request %s ended after %.3fs", request_id,
                                           time.perf_counter() - started))
        prepared = lease.track(pools.decode.submit(_prepare, raw, config, engine, lease.workdir))
        body, conversation, params = await asyncio.wrap_future(prepared)
        log.info("request %s admitted: %d message(s), stream=%s", request_id, len(body.messages), body.stream)
        if body.stream:
            queue = start_producer(engine, conversation, params, lease, pools.stream)
            usage = body.stream_options is not None and body.stream_options.include_usage
            return StreamingResponse(events(request_id, config.served_model_name, queue, request, lease,
                                            config.request_timeout_s, include_usage=usage),
                                     media_type="text/event-stream")
        return await _complete(request_id, conversation, params, batcher, lease, request, config)


def _openapi(app: FastAPI) -> Callable[[], dict[str, Any]]:
    """FastAPI's schema plus the chat body's (the route parses its body itself, off the event loop)."""

    def build() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description,
                                 routes=app.routes)
            chat = ChatRequest.model_json_schema(ref_template="#/components/schemas/{model}")
            components = schema.setdefault("components", {})
            components.setdefault("schemas", {}).update({**chat.pop("$defs", {}), "ChatRequest": chat})
            components["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
            schema["security"] = [{"bearer": []}]
            app.openapi_schema = schema
        return app.openapi_schema

    return build


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
    if body.requested_tokens > config.max_tokens:
        raise HTTPException(422, f"max_tokens above the server limit of {config.max_tokens}")
    unsupported = body.unsupported()
    if unsupported:
        raise HTTPException(400, unsupported)


def _prepare(raw: bytes, config: ServeConfig, engine: Engine,
             workdir: Path) -> tuple[ChatRequest, Conversation, GenerationParams]:
    """Parse, check and decode a request (in a worker thread: all of it is CPU work sized by the client)."""
    parsed = parse_chat_body(raw)
    body = parsed.request
    _check_limits(body, config)
    slide_dim = getattr(engine.processor, "slide_feature_dim", None)
    encoder = slide_encoder_id(getattr(getattr(engine, "model", None), "config", None))
    resolver = MediaResolver(config, workdir, expect_slide_dim=slide_dim, expect_slide_encoder=encoder,
                             preprocessing=engine.preprocessing, long_strings=parsed.long_strings)
    messages = resolver.messages(body.messages)
    params = GenerationParams(max_new_tokens=body.requested_tokens, temperature=body.temperature,
                              top_p=body.top_p, seed=body.seed if body.seed is not None else 0,
                              stop=body.stop_sequences, frequency_penalty=body.frequency_penalty,
                              presence_penalty=body.presence_penalty, logprobs=body.logprobs,
                              top_logprobs=body.top_logprobs or 0)
    return body, Conversation(messages, stage=body.stage, task=body.task), params


async def _watch_disconnect(request: Request, lease: Lease) -> None:
    while not lease.cancel.is_set():
        if await request.is_disconnected():
            lease.cancel.set()
            return
        await asyncio.sleep(0.05)


async def _complete(request_id: str, conversation: Conversation, params: GenerationParams, batcher: Batcher,
                    lease: Lease, request: Request, config: ServeConfig) -> Any:
    job = batcher.submit(conversation, params, lease.cancel)
    lease.track(job.future)
    watcher = asyncio.create_task(_watch_disconnect(request, lease))
    try:
        result = await asyncio.wait_for(asyncio.shield(job.future), timeout=config.request_timeout_s)
    except asyncio.TimeoutError:
        lease.cancel.set()
        return error_response(504, f"generation exceeded {config.request_timeout_s:.0f} s")
    except Exception as error:  # noqa: BLE001 — reported as a 500 with no content echoed
        log.error("request %s failed: %s", request_id, type(error).__name__)
        return error_response(500, "generation failed")
    finally:
        watcher.cancel()
    return {
        "id": request_id, "object": "chat.completion", "created": int(time.time()),
        "model": config.served_model_name,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": result.text},
                     "logprobs": logprobs_body(result.logprobs),
                     "finish_reason": result.finish_reason if result.finish_reason != "cancelled" else "stop"}],
        "usage": {"prompt_tokens": result.prompt_tokens, "completion_tokens": result.completion_tokens,
                  "total_tokens": result.prompt_tokens + result.completion_tokens},
        "breastgpt": METADATA,
    }
