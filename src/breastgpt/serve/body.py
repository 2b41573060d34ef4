"""Parse a chat request body without holding the interpreter lock for long.

The body is parsed in a worker thread, but one `model_validate_json` call over a 58 MiB body holds the
interpreter lock for ~80 ms (more on a loaded machine), and the event loop — `/health` included — waits for it.
Such a body is large because of its data URLs: so each long data URL string (plain base64 text: printable ASCII,
no quote, no backslash) is cut out of the raw bytes with `find` calls and a character check a megabyte at a time,
and the small remaining skeleton is parsed and validated as usual. A media URL keeps its stand-in and the media
resolver reads the payload from the body's bytes (`ParsedBody.long_strings`); a long string anywhere else is put
back as text, a megabyte at a time.

The result and the errors are those of parsing the whole body in one call:
* a long string is cut only where it is a whole JSON string's content (its quote is not escaped, and the content
  is plain text), and its stand-in keeps the `data:` prefix, so the skeleton is valid exactly when the body is;
* a JSON syntax error's column is mapped back to the body's own (stand-ins hold no newline, so lines agree);
* a validation error whose message quotes a stand-in is produced again from the whole body.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field

from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError

from breastgpt.serve.schemas import ChatRequest, MediaURL

LONG_STRING_BYTES = 256 * 1024  # shorter strings parse in well under a millisecond
CHUNK_BYTES = 1 << 20
MAX_CANDIDATES = 100_000  # `"data:` openings examined; a body with more is parsed whole (slower, still correct)
MAX_BACKSLASH_RUN = 64
PLAIN = bytes(c for c in range(0x20, 0x7F) if c not in b'"\\')  # printable ASCII less quote and backslash
POSITION = re.compile(r"line (\d+) column (\d+)")
OPENING = b'"data:'


@dataclass
class Skeleton:
    """The body with its long strings replaced by stand-ins; `cuts` are (offset in the skeleton, length of the
    stand-in, length of the original) for each, in order."""

    raw: bytes
    token: str
    payloads: dict[str, memoryview] = field(default_factory=dict)
    cuts: list[tuple[int, int, int]] = field(default_factory=list)


@dataclass
class ParsedBody:
    """The validated request; media URLs found in `long_strings` stand for those bytes of the body."""

    request: ChatRequest
    long_strings: dict[str, memoryview] = field(default_factory=dict)


def parse_chat_body(raw: bytes) -> ParsedBody:
    """The validated request, or `RequestValidationError` with the errors a whole-body parse gives."""
    skeleton = cut_long_strings(raw)
    if not skeleton.payloads:
        return ParsedBody(_validate(raw))
    try:
        request = ChatRequest.model_validate_json(skeleton.raw)
    except ValidationError as error:
        errors = error.errors(include_input=False)
        if any(skeleton.token in str(problem.get("msg", "")) for problem in errors):
            return ParsedBody(_validate(raw))
        raise RequestValidationError([_map_position(problem, skeleton) for problem in errors]) from None
    _restore(request, skeleton.payloads)
    return ParsedBody(request, skeleton.payloads)


def _validate(raw: bytes) -> ChatRequest:
    try:
        return ChatRequest.model_validate_json(raw)
    except ValidationError as error:
        raise RequestValidationError(error.errors(include_input=False)) from None


def _is_delimiter(raw: bytes, quote: int) -> bool:
    """Whether the quote at `quote` is unescaped (an even run of backslashes before it)."""
    before = raw[max(0, quote - MAX_BACKSLASH_RUN):quote]
    run = len(before) - len(before.rstrip(b"\\"))
    return run % 2 == 0 and run < MAX_BACKSLASH_RUN


def _is_plain(view: memoryview) -> bool:
    return all(not bytes(view[start:start + CHUNK_BYTES]).translate(None, PLAIN)
               for start in range(0, len(view), CHUNK_BYTES))


def _find(raw: bytes, needle: bytes, start: int) -> int:
    """`raw.find(needle, start)`, a megabyte per call (one multi-byte find over 58 MB holds the lock ~60 ms)."""
    for window in range(start, len(raw), CHUNK_BYTES):
        found = raw.find(needle, window, window + CHUNK_BYTES + len(needle) - 1)
        if found >= 0:
            return found
    return -1


def cut_long_strings(raw: bytes) -> Skeleton:
    skeleton = Skeleton(raw=raw, token=secrets.token_hex(8))
    view, pieces, kept_to, shift = memoryview(raw), [], 0, 0
    position = _find(raw, OPENING, 0)
    for _ in range(MAX_CANDIDATES):
        if position < 0:
            break
        end = _find(raw, b'"', position + 1)
        if end < 0:
            break
        content = view[position + 1:end]
        if len(content) >= LONG_STRING_BYTES and _is_delimiter(raw, position) and _is_plain(content):
            stand_in = f"data:breastgpt-long-string/{skeleton.token}-{len(skeleton.payloads)}"
            skeleton.payloads[stand_in] = content
            pieces += [view[kept_to:position + 1], stand_in.encode()]
            skeleton.cuts.append((position + 1 + shift, len(stand_in), len(content)))
            shift += len(stand_in) - len(content)
            kept_to = end
        position = _find(raw, OPENING, end + 1)
    if skeleton.payloads:
        skeleton.raw = b"".join([*pieces, view[kept_to:]])
    return skeleton


def _map_position(problem: dict, skeleton: Skeleton) -> dict:
    """A JSON syntax error's line/column in the skeleton, as the same place in the original body."""
    message = str(problem.get("msg", ""))
    found = POSITION.search(message)
    if problem.get("type") != "json_invalid" or not found:
        return problem
    line, column = int(found.group(1)), int(found.group(2))
    line_start = 0
    for _ in range(line - 1):
        line_start = skeleton.raw.index(b"\n", line_start) + 1
    offset = line_start + column - 1
    grown = sum(original - length for start, length, original in skeleton.cuts if line_start <= start < offset)
    mapped = message[:found.start()] + f"line {line} column {column + grown}" + message[found.end():]
    return {**problem, "msg": mapped}


def _restore(node: object, payloads: dict[str, memoryview]) -> None:
    """Put each long string back where its stand-in ended up, except in media URLs (the resolver reads those)."""
    if isinstance(node, MediaURL):
        return
    if isinstance(node, list):
        for index, item in enumerate(node):
            if isinstance(item, str) and item in payloads:
                node[index] = _text(payloads[item])
            else:
                _restore(item, payloads)
    elif isinstance(node, BaseModel):
        for name in type(node).model_fields:
            value = getattr(node, name)
            if isinstance(value, str) and value in payloads:
                setattr(node, name, _text(payloads[value]))
            else:
                _restore(value, payloads)


def _text(content: memoryview) -> str:
    """Decoded a megabyte at a time: one decode of the whole payload would hold the lock for tens of ms."""
    return "".join(bytes(content[start:start + CHUNK_BYTES]).decode("ascii")
                   for start in range(0, len(content), CHUNK_BYTES))
