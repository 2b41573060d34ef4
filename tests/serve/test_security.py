"""Security and robustness of the OpenAI-compatible server, against a scripted engine."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.serve.fakes import API_KEY, ScriptedEngine, running_server

AUTH = {"Authorization": f"Bearer {API_KEY}"}


def png_data_url(size: int = 32) -> str:
    buffer = io.BytesIO()
    Image.fromarray(np.full((size, size, 3), 127, np.uint8)).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def chat(content: object, **extra: object) -> dict:
    return {"model": "breastgpt", "messages": [{"role": "user", "content": content}], **extra}


@pytest.fixture()
def server(tmp_path: Path):
    media = tmp_path / "media"
    media.mkdir()
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(media / "allowed.png")
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(tmp_path / "outside.png")
    with running_server(ScriptedEngine(), tmp_path, media_root=media, max_body_bytes=200_000) as url:
        yield url, media, tmp_path


def test_every_route_but_health_needs_the_key(server) -> None:
    url, _, _ = server
    assert httpx.get(f"{url}/health").status_code == 200
    assert httpx.get(f"{url}/health").json()["breastgpt"]["research_use_only"] is True
    for method, route in (("GET", "/v1/models"), ("POST", "/v1/chat/completions"), ("GET", "/v1/stats")):
        for headers in ({}, {"Authorization": "Bearer wrong-key-0000000000"}, {"Authorization": API_KEY}):
            response = httpx.request(method, f"{url}{route}", headers=headers, json=chat("hi"))
            assert response.status_code == 401, (route, headers)
            assert response.headers["www-authenticate"] == "Bearer"


def test_a_good_request_answers_with_the_notice(server) -> None:
    url, _, _ = server
    response = httpx.post(f"{url}/v1/chat/completions", headers=AUTH,
                          json=chat([{"type": "image_url", "image_url": {"url": png_data_url()}},
                                     {"type": "text", "text": "birads?"}]))
    assert response.status_code == 200
    body = response.json()
    assert body["choices"][0]["message"]["content"] == "1 0 0 | BIRADS?"
    assert "not a medical device" in body["breastgpt"]["notice"]


def test_oversize_body_is_413(server) -> None:
    url, _, _ = server
    response = httpx.post(f"{url}/v1/chat/completions", headers=AUTH, json=chat("x" * 300_000))
    assert response.status_code == 413


MALFORMED = [
    b"not json",
    b"{}",
    json.dumps({"model": "breastgpt"}).encode(),
    json.dumps({"model": "breastgpt", "messages": []}).encode(),
    json.dumps(chat("hi", unknown_field=1)).encode(),
    json.dumps({"model": "breastgpt", "messages": [{"role": "wizard", "content": "hi"}]}).encode(),
    json.dumps(chat([{"type": "image_url", "image_url": {"url": "data:image/png;base64,@@@"}}])).encode(),
    json.dumps(chat([{"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}])).encode(),
    json.dumps(chat("hi", max_tokens=10**9)).encode(),
    json.dumps(chat("hi", temperature=-1)).encode(),
    json.dumps(chat([{"type": "audio", "audio": {}}])).encode(),
    json.dumps({"model": "another-model", "messages": [{"role": "user", "content": "hi"}]}).encode(),
]


@pytest.mark.parametrize("payload", MALFORMED, ids=range(len(MALFORMED)))
def test_malformed_requests_get_4xx_never_5xx(server, payload: bytes) -> None:
    url, _, _ = server
    response = httpx.post(f"{url}/v1/chat/completions", headers={**AUTH, "content-type": "application/json"},
                          content=payload)
    assert 400 <= response.status_code < 500, response.text


def test_remote_urls_are_refused(server) -> None:
    url, _, _ = server
    response = httpx.post(f"{url}/v1/chat/completions", headers=AUTH,
                          json=chat([{"type": "image_url", "image_url": {"url": "https://example.org/x.png"}}]))
    assert response.status_code == 403 and "remote" in response.json()["error"]["message"]


def test_paths_outside_the_media_root_are_refused(server) -> None:
    url, media, root = server
    allowed = httpx.post(f"{url}/v1/chat/completions", headers=AUTH,
                         json=chat([{"type": "image_url", "image_url": {"url": f"file://{media / 'allowed.png'}"}}]))
    assert allowed.status_code == 200
    for target in (root / "outside.png", media / ".." / "outside.png", Path("/etc/passwd")):
        response = httpx.post(f"{url}/v1/chat/completions", headers=AUTH,
                              json=chat([{"type": "image_url", "image_url": {"url": f"file://{target}"}}]))
        assert response.status_code == 403, target
        assert str(target) not in response.text


def test_the_media_count_limit_defaults_to_32(tmp_path: Path) -> None:
    part = {"type": "image_url", "image_url": {"url": png_data_url(8)}}
    with running_server(ScriptedEngine(), tmp_path) as url:
        accepted = httpx.post(f"{url}/v1/chat/completions", headers=AUTH, json=chat([part] * 32), timeout=60)
        refused = httpx.post(f"{url}/v1/chat/completions", headers=AUTH, json=chat([part] * 33), timeout=60)
    assert accepted.json()["choices"][0]["message"]["content"] == "32 0 0 | "
    assert refused.status_code == 400 and refused.json()["error"]["message"] == "more than 32 media items in one request"


def test_too_many_media_items(tmp_path: Path) -> None:
    with running_server(ScriptedEngine(), tmp_path, max_media_per_request=3) as url:
        parts = [{"type": "image_url", "image_url": {"url": png_data_url(8)}}] * 4
        response = httpx.post(f"{url}/v1/chat/completions", headers=AUTH, json=chat(parts))
    assert response.status_code == 400 and "more than 3 media" in response.json()["error"]["message"]


def test_saturation_answers_429(tmp_path: Path) -> None:
    import concurrent.futures

    with running_server(ScriptedEngine(delay=1.0), tmp_path, max_queue=2, max_batch=1) as url:
        with concurrent.futures.ThreadPoolExecutor(6) as pool:
            codes = list(pool.map(lambda _: httpx.post(f"{url}/v1/chat/completions", headers=AUTH,
                                                       json=chat("hi"), timeout=30).status_code, range(6)))
    assert codes.count(429) >= 1 and codes.count(200) >= 2


def test_timeout_answers_504(tmp_path: Path) -> None:
    with running_server(ScriptedEngine(delay=3.0), tmp_path, request_timeout_s=0.3) as url:
        response = httpx.post(f"{url}/v1/chat/completions", headers=AUTH, json=chat("hi"), timeout=30)
    assert response.status_code == 504


def test_concurrent_requests_are_batched(tmp_path: Path) -> None:
    import concurrent.futures

    engine = ScriptedEngine(delay=0.2)
    with running_server(engine, tmp_path, max_batch=8, batch_window_ms=100) as url:
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda i: httpx.post(f"{url}/v1/chat/completions", headers=AUTH,
                                                         json=chat(f"q{i}"), timeout=30).json(), range(8)))
    assert [a["choices"][0]["message"]["content"] for a in answers] == [f"0 0 0 | Q{i}" for i in range(8)]
    assert max(engine.batches) > 1


def test_client_disconnect_cancels_generation(tmp_path: Path) -> None:
    engine = ScriptedEngine(delay=2.0)
    with running_server(engine, tmp_path) as url:
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(f"{url}/v1/chat/completions", headers=AUTH, json=chat("bye"), timeout=0.3)
        response = httpx.get(f"{url}/v1/stats", headers=AUTH, timeout=10)
        import time

        time.sleep(0.6)
        stats = httpx.get(f"{url}/v1/stats", headers=AUTH, timeout=10).json()
    assert response.status_code == 200
    assert stats["batches"] in (0, 1)  # the cancelled job stopped early (or was never run)


def test_logs_carry_no_request_content(server, caplog: pytest.LogCaptureFixture) -> None:
    url, _, _ = server
    with caplog.at_level("DEBUG", logger="breastgpt"):
        httpx.post(f"{url}/v1/chat/completions", headers=AUTH, json=chat("PATIENT JANE DOE 1958"))
    assert "JANE" not in caplog.text and "1958" not in caplog.text
