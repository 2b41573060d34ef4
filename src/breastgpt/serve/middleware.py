"""ASGI layers in front of the routes, outermost first:

* `Guard` — an unexpected exception becomes a JSON 500 (the log gets its type and source line, never its
  message or the request); query strings are dropped before anything (uvicorn's access log included) sees
  them; the request's close callbacks run however it ended (finished, client gone, task cancelled).
* `RequireKey` — `Authorization: Bearer <key>` on every path but `/health`, before routing, so unknown routes,
  wrong methods and the OpenAPI schema answer 401 too.
* `BodyLimit` — bodies are counted as they arrive (declared or chunked) and refused past the limit (413).

Pure ASGI rather than starlette's `BaseHTTPMiddleware`, which re-wraps streaming responses and their
disconnects in extra tasks.
"""

from __future__ import annotations

import hmac
import logging
import traceback
from collections.abc import Callable, Iterable
from pathlib import Path

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from breastgpt.serve.responses import error_response

log = logging.getLogger("breastgpt.serve")
CLOSERS = "breastgpt.closers"
OPEN_PATHS = frozenset({"/health"})


def on_close(request: Request, close: Callable[[], None]) -> None:
    """Run `close` (synchronous, idempotent) when the request ends, however it ends."""
    request.scope[CLOSERS].append(close)


def _origin(error: BaseException) -> str:
    frames = traceback.extract_tb(error.__traceback__)
    return f"{Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else "?"


class Guard:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # The API takes no query parameters; a key or identifier pasted into a URL must not reach a log.
        scope["query_string"] = b""
        closers: list[Callable[[], None]] = []
        scope[CLOSERS] = closers
        started = False

        async def tracked_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracked_send)
        except Exception as error:  # noqa: BLE001 — the last line of defence: answer JSON, log no content
            log.error("unhandled %s at %s", type(error).__name__, _origin(error))
            if not started:
                await error_response(500, "internal server error")(scope, receive, send)
        finally:
            _run_closers(closers)


def _run_closers(closers: Iterable[Callable[[], None]]) -> None:
    for close in closers:
        try:
            close()
        except Exception as error:  # noqa: BLE001 — one failing cleanup must not skip the others
            log.error("cleanup failed: %s at %s", type(error).__name__, _origin(error))


class RequireKey:
    def __init__(self, app: ASGIApp, keys: Iterable[str]) -> None:
        self.app = app
        self.keys = [key.encode() for key in keys]

    def authorised(self, scope: Scope) -> bool:
        values = [value for name, value in scope["headers"] if name == b"authorization"]
        if len(values) != 1:
            return False
        scheme, _, token = values[0].partition(b" ")
        presented = token.strip()
        # compare against every key without an early exit, so timing does not reveal which key was close
        matches = [hmac.compare_digest(presented, key) for key in self.keys]
        return scheme.lower() == b"bearer" and any(matches)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] not in OPEN_PATHS and not self.authorised(scope):
            response = error_response(401, "missing or invalid API key", {"WWW-Authenticate": "Bearer"})
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


class BodyLimit:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await error_response(413, "request body too large")(scope, receive, send)
            return
        body = await self._read(receive)
        if body is None:  # the client left before sending its body
            return
        if len(body) > self.max_bytes:
            await error_response(413, "request body too large")(scope, receive, send)
            return
        await self.app(scope, _replay(body, receive), send)

    async def _read(self, receive: Receive) -> bytes | None:
        """The whole body, or as much as exceeds the limit (then stops reading); None on disconnect."""
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return None
            chunk = message.get("body", b"")
            chunks.append(chunk)
            size += len(chunk)
            if size > self.max_bytes or not message.get("more_body", False):
                return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A `receive` that hands out the buffered body once, then the server's own messages (disconnects)."""
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed
