"""The chat body parser that cuts long data URLs out before validating: same request, same errors as one
whole-body `model_validate_json`, and never a whole-body parse of a large request."""

from __future__ import annotations

import base64
import json
import random

import pytest
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from breastgpt.serve import body as body_module
from breastgpt.serve.body import LONG_STRING_BYTES, parse_chat_body
from breastgpt.serve.schemas import ChatRequest

PAYLOAD = "data:image/png;base64," + base64.b64encode(random.Random(0).randbytes(LONG_STRING_BYTES)).decode()


def image(url: str = PAYLOAD) -> dict:
    return {"type": "image_url", "image_url": {"url": url}}


def request(*parts: dict, **extra: object) -> dict:
    return {"model": "breastgpt", "messages": [{"role": "user", "content": [*parts, {"type": "text", "text": "Q"}]}],
            **extra}


def whole(raw: bytes) -> tuple[str, object]:
    """The reference: one `model_validate_json` over the whole body."""
    try:
        return "ok", ChatRequest.model_validate_json(raw).model_dump()
    except ValidationError as error:
        return "error", [(e["type"], e["loc"], e["msg"]) for e in error.errors(include_input=False)]


def cut(raw: bytes) -> tuple[str, object]:
    try:
        parsed = parse_chat_body(raw)
    except RequestValidationError as error:
        return "error", [(e["type"], tuple(e["loc"]), e["msg"]) for e in error.errors()]
    dumped = parsed.request.model_dump()
    for message in dumped["messages"]:
        for part in message["content"] if isinstance(message["content"], list) else []:
            media = part.get("image_url") or part.get("volume_url") or part.get("slide_features_url")
            if media and media["url"] in parsed.long_strings:
                media["url"] = bytes(parsed.long_strings[media["url"]]).decode()
    return "ok", dumped


BODIES = {
    "one long image": json.dumps(request(image())),
    "two long images": json.dumps(request(image(), image(PAYLOAD[:-4] + "AAAA"))),
    "pretty-printed": json.dumps(request(image()), indent=2),
    "long data string as text is restored": json.dumps(request({"type": "text", "text": PAYLOAD})),
    "long data string as user": json.dumps(request(image(), user=PAYLOAD)),
    "escaped quote before data: stays whole": json.dumps(request({"type": "text", "text": '"' + PAYLOAD})),
    "backslash inside is not cut": json.dumps(request(image(PAYLOAD[:1000] + "\\" + PAYLOAD[1000:]))),
    "non-ASCII inside is not cut": json.dumps(request(image(PAYLOAD[:1000] + "é" + PAYLOAD[1000:])),
                                             ensure_ascii=False),
    "syntax error after, same line": json.dumps(request(image()))[:-1] + ",}",
    "syntax error after, next line": json.dumps(request(image()), indent=1)[:-2] + "\n ]]}",
    "syntax error before": "{" + json.dumps(request(image()))[1:].replace('"model"', "model", 1),
    "unterminated data string": json.dumps(request(image()))[:LONG_STRING_BYTES + 1000],
    "unknown field after": json.dumps(request(image(), unknown=1)),
    "wrong role": json.dumps({"model": "x", "messages": [{"role": "wizard", "content": [image()]}]}),
    "long string as part type": json.dumps(request({"type": PAYLOAD, "image_url": {"url": "x"}})),
    "long string as stage": json.dumps(request(image(), stage=PAYLOAD)),
    "data: after a closing quote": json.dumps(request(image())).replace('"url": "data:', '"url": ""data:', 1),
}


@pytest.mark.parametrize("name", list(BODIES))
def test_the_cut_parse_equals_the_whole_body_parse(name: str) -> None:
    raw = BODIES[name].encode()
    assert len(raw) > LONG_STRING_BYTES
    assert cut(raw) == whole(raw)


def test_random_damage_gives_the_whole_body_parse_s_errors() -> None:
    source = json.dumps(request(image(), image()), indent=1).encode()
    rng = random.Random(7)
    structure = [i for i, byte in enumerate(source) if byte in b'{}[]:,"']
    outcomes = set()
    for _ in range(150):
        at = rng.randrange(len(source))
        if rng.random() < 0.5:  # damage near the structure, where most errors are
            at = rng.choice(structure)
        damaged = source[:at] + rng.choice([b'"', b"\\", b"}", b",", b"\n", b"\x00", b"\xc3"]) + source[at + 1:]
        expected = whole(damaged)
        assert cut(damaged) == expected, at
        outcomes.add(expected[0])
    assert outcomes == {"ok", "error"}


def test_a_large_body_is_never_parsed_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    sizes: list[int] = []
    original = ChatRequest.model_validate_json

    def recording(raw: bytes, *args: object, **kwargs: object) -> ChatRequest:
        sizes.append(len(raw))
        return original(raw, *args, **kwargs)

    monkeypatch.setattr(body_module.ChatRequest, "model_validate_json", recording)
    raw = json.dumps(request(*[image()] * 8)).encode()
    parsed = parse_chat_body(raw)
    assert len(raw) > 8 * LONG_STRING_BYTES and len(parsed.long_strings) == 8
    assert len(sizes) == 1 and sizes[0] < 4096
    assert [bytes(view).decode() for view in parsed.long_strings.values()] == [PAYLOAD] * 8
