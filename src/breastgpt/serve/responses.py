"""The server's error body and research-use metadata: every answer, error or not, carries the notice, and every
error is JSON with an OpenAI-style `type`."""

from __future__ import annotations

import json
from typing import Any, Sequence

from starlette.responses import JSONResponse

from breastgpt import RESEARCH_USE_NOTICE, __version__

METADATA = {"research_use_only": True, "notice": RESEARCH_USE_NOTICE, "server": f"breastgpt {__version__}"}

ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
               404: "not_found_error", 405: "invalid_request_error", 413: "payload_too_large",
               422: "invalid_request_error", 429: "rate_limit_exceeded", 500: "server_error", 504: "timeout"}


def error_type(status: int) -> str:
    return ERROR_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")


def error_body(status: int, message: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": error_type(status), "code": status}, "breastgpt": METADATA}


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(status_code=status, content=error_body(status, message), headers=headers)


def validation_message(errors: list[Any]) -> str:
    """Where and what, never the offending value (it may be a key, a patient's name or megabytes of base64)."""
    problems = [{"loc": list(error.get("loc", ())), "msg": error.get("msg", "")} for error in errors]
    return json.dumps(problems)[:2000]


def _token(text: str, logprob: float) -> dict[str, Any]:
    return {"token": text, "logprob": logprob, "bytes": list(text.encode("utf-8"))}


def logprobs_body(tokens: Sequence[Any] | None) -> dict[str, Any] | None:
    """OpenAI's `choices[].logprobs` from the engine's `TokenLogprob`s (None when they were not asked for)."""
    if tokens is None:
        return None
    return {"content": [{**_token(t.token, t.logprob), "top_logprobs": [_token(text, lp) for text, lp in t.top]}
                        for t in tokens], "refusal": None}
