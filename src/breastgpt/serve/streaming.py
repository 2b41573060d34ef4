"""Server-sent events for a streamed chat completion.

The engine's token stream runs in a worker thread tracked by the request's lease; the generator below only
moves text from that thread to the client. It holds no cleanup of its own: when the client leaves, starlette
cancels it at whatever await it is in, and the lease (closed by the `Guard` middleware) stops the engine and
gives the slot back once the thread has ended.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from concurrent.futures import Executor
from typing import Any

from starlette.requests import Request

from breastgpt.infer.engine import Conversation, Engine, GenerationParams, StreamUsage
from breastgpt.serve.lease import Lease
from breastgpt.serve.responses import METADATA, error_body

log = logging.getLogger("breastgpt.serve")
DONE = "data: [DONE]\n\n"


def chunk(request_id: str, model: str, delta: dict[str, Any], finish: str | None) -> str:
    payload = {"id": request_id, "object": "chat.completion.chunk", "created": int(time.time()), "model": model,
               "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], "breastgpt": METADATA}
    return f"data: {json.dumps(payload)}\n\n"


def usage_chunk(request_id: str, model: str, usage: StreamUsage) -> str:
    """OpenAI's last chunk with `stream_options.include_usage`: no choices, the request's token counts."""
    counts = {"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens,
              "total_tokens": usage.prompt_tokens + usage.completion_tokens}
    payload = {"id": request_id, "object": "chat.completion.chunk", "created": int(time.time()), "model": model,
               "choices": [], "usage": counts, "breastgpt": METADATA}
    return f"data: {json.dumps(payload)}\n\n"


def error_event(status: int, message: str) -> str:
    return f"data: {json.dumps(error_body(status, message))}\n\n"


def start_producer(engine: Engine, conversation: Conversation, params: GenerationParams, lease: Lease,
                   pool: Executor) -> asyncio.Queue:
    """Run `engine.stream` in `pool`; its pieces arrive on the returned queue, then its `StreamUsage` (or the
    exception, or None when cancelled)."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[str | StreamUsage | None | BaseException] = asyncio.Queue()

    def produce() -> None:
        try:
            usage = None
            if not lease.cancel.is_set():  # a stream queued behind others whose client already left
                pieces = engine.stream(conversation, params, cancel=lease.cancel)
                while not lease.cancel.is_set():
                    try:
                        loop.call_soon_threadsafe(queue.put_nowait, next(pieces))
                    except StopIteration as end:
                        usage = end.value
                        break
            loop.call_soon_threadsafe(queue.put_nowait, usage)
        except Exception as error:  # noqa: BLE001 — delivered to the client as an error event
            loop.call_soon_threadsafe(queue.put_nowait, error)

    lease.track(pool.submit(produce))
    return queue


async def events(request_id: str, model: str, queue: asyncio.Queue, request: Request, lease: Lease,
                 timeout_s: float, include_usage: bool = False) -> AsyncIterator[str]:
    deadline = time.monotonic() + timeout_s
    yield chunk(request_id, model, {"role": "assistant", "content": ""}, None)
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            lease.cancel.set()
            yield error_event(504, f"generation exceeded {timeout_s:.0f} s")
            return
        if await request.is_disconnected():
            lease.cancel.set()
            return
        try:
            item = await asyncio.wait_for(queue.get(), timeout=min(remaining, 0.25))
        except asyncio.TimeoutError:
            continue
        if item is None or isinstance(item, StreamUsage):
            yield chunk(request_id, model, {}, "stop")
            if include_usage and isinstance(item, StreamUsage):
                yield usage_chunk(request_id, model, item)
            yield DONE
            return
        if isinstance(item, BaseException):
            log.error("request %s failed during streaming: %s", request_id, type(item).__name__)
            yield error_event(500, "generation failed")
            return
        yield chunk(request_id, model, {"content": item}, None)
