"""Data URLs decoded piecewise are exactly what one `base64.b64decode(..., validate=True)` gives or refuses."""

from __future__ import annotations

import base64
import os

import pytest

import breastgpt.serve.media as media
from breastgpt.serve.media import MediaError, _base64_chunks


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(media, "BASE64_CHUNK_CHARS", 8)  # many chunk boundaries in a short payload


@pytest.mark.parametrize("size", [0, 1, 2, 3, 5, 6, 7, 12, 101])
def test_piecewise_decoding_is_exact(size: int) -> None:
    data = os.urandom(size)
    assert b"".join(_base64_chunks("x," + base64.b64encode(data).decode(), 2)) == data


@pytest.mark.parametrize("payload", ["AA==AAAA", "AAAAAAA=AAAA", "AAA", "A===", "AA AA", "AAAA\nAAAA",
                                     "ÄÄÄÄ", "@@@@", "AAAAAAAAAAA-"])
def test_what_strict_base64_refuses_is_refused(payload: str) -> None:
    with pytest.raises(ValueError):
        base64.b64decode(payload, validate=True)
    with pytest.raises(MediaError):
        b"".join(_base64_chunks("x," + payload, 2))
