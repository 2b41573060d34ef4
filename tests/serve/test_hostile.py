"""A hostile client against the real uvicorn server (issue 27): disconnect storms, slow decodes, keyless
probes, out-of-range numbers, damaged media and exceptions nobody planned for."""

from __future__ import annotations

import base64
import concurrent.futures
import json
import logging
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from breastgpt.pathology.synthetic import SyntheticScene, write_svs_like
from tests.serve.fakes import API_KEY, ScriptedEngine, running_server

AUTH = {"Authorization": f"Bearer {API_KEY}"}
QUESTION = "one two three four five six seven eight"


def chat(content: object = QUESTION, **extra: object) -> dict:
    return {"model": "breastgpt", "messages": [{"role": "user", "content": content}], **extra}


def in_flight(url: str) -> int:
    return httpx.get(f"{url}/v1/stats", headers=AUTH, timeout=10).json()["in_flight"]


def wait_until_idle(url: str, seconds: float = 20.0) -> int:
    deadline = time.monotonic() + seconds
    while (count := in_flight(url)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return count


def stream_and_leave(url: str, after_chunks: int) -> int:
    """Open a streamed request, read `after_chunks` SSE events (0: none, only the headers), then hang up."""
    with httpx.Client(timeout=20) as client:
        with client.stream("POST", f"{url}/v1/chat/completions", headers=AUTH, json=chat(stream=True)) as response:
            seen = 0
            for line in response.iter_lines():
                if seen >= after_chunks:
                    break
                seen += line.startswith("data: ")
            return response.status_code


def assert_error(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["error"]["code"] == status and body["error"]["type"]
    assert body["breastgpt"]["research_use_only"] is True
    return body


def test_twenty_clients_leaving_after_the_first_chunk_leak_no_slot(tmp_path: Path) -> None:
    with running_server(ScriptedEngine(delay=2.0), tmp_path, max_queue=20, max_batch=20) as url:
        with concurrent.futures.ThreadPoolExecutor(20) as pool:
            assert list(pool.map(lambda _: stream_and_leave(url, 1), range(20))) == [200] * 20
        assert wait_until_idle(url) == 0
        # the whole queue is free again: twenty ordinary requests at once all get in
        with concurrent.futures.ThreadPoolExecutor(20) as pool:
            codes = list(pool.map(lambda _: httpx.post(f"{url}/v1/chat/completions", headers=AUTH, json=chat(),
                                                       timeout=60).status_code, range(20)))
        assert codes == [200] * 20
        assert wait_until_idle(url) == 0


@pytest.mark.parametrize("after_chunks", [0, 2, 5])
def test_leaving_at_any_chunk_gives_the_slot_back(tmp_path: Path, after_chunks: int) -> None:
    # 0.1 s a word: the client is gone long before the answer's last word
    with running_server(ScriptedEngine(delay=0.5), tmp_path, max_queue=2) as url:
        for _ in range(4):  # twice the queue: a single leaked slot would turn the last ones into 429
            assert stream_and_leave(url, after_chunks) == 200
            assert wait_until_idle(url) == 0
        client = openai.OpenAI(base_url=f"{url}/v1", api_key=API_KEY, max_retries=0)
        pieces = [c.choices[0].delta.content or "" for c in
                  client.chat.completions.create(model="breastgpt", messages=chat()["messages"], stream=True)]
        assert "".join(pieces).strip() == f"0 0 0 | {QUESTION.upper()}"


def test_non_streamed_clients_that_time_out_leak_no_slot(tmp_path: Path) -> None:
    with running_server(ScriptedEngine(delay=1.0), tmp_path, max_queue=2, max_batch=1) as url:
        for _ in range(4):
            with pytest.raises(httpx.ReadTimeout):
                httpx.post(f"{url}/v1/chat/completions", headers=AUTH, json=chat(), timeout=0.2)
        assert wait_until_idle(url) == 0
        assert httpx.post(f"{url}/v1/chat/completions", headers=AUTH, json=chat(), timeout=30).status_code == 200


class BlockingDecode:
    """Stands in for a decode that takes as long as the test wants, keeping its thread busy with Python work
    (holding the GIL in turns, as a real reader's Python code does)."""

    def __init__(self) -> None:
        self.started, self.release = threading.Event(), threading.Event()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        import numpy as np

        self.started.set()
        deadline = time.monotonic() + 60
        while not self.release.is_set() and time.monotonic() < deadline:
            sum(range(10_000))
        return np.zeros((2, 16, 16, 3), np.uint8), "mri-percentile"


def test_health_answers_while_a_volume_decodes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    decode = BlockingDecode()
    monkeypatch.setattr("breastgpt.serve.media.load_volume", decode)
    volume = {"type": "volume_url", "volume_url": {"url": "data:application/gzip;base64,AAAA"}}
    with running_server(ScriptedEngine(), tmp_path) as url:
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            answer = pool.submit(httpx.post, f"{url}/v1/chat/completions", headers=AUTH, json=chat([volume]),
                                 timeout=90)
            assert decode.started.wait(30)
            latencies = []
            for _ in range(10):
                start = time.perf_counter()
                # were decoding on the event loop, this would wait for the release below and time out
                assert httpx.get(f"{url}/health", timeout=5).status_code == 200
                latencies.append(time.perf_counter() - start)
                time.sleep(0.05)
            assert not answer.done()  # the decode was still running during every probe
            decode.release.set()
            assert answer.result().json()["choices"][0]["message"]["content"] == "0 1 0 | "
    print(f"/health during a busy decode: max {max(latencies) * 1000:.0f} ms")  # shown with pytest -s
    assert max(latencies) < 2.0  # typically a few ms; an event loop stuck in the decode never answers


KEYLESS_PROBES = [("GET", "/docs"), ("GET", "/redoc"), ("GET", "/openapi.json"), ("GET", "/docs/oauth2-redirect"),
                  ("GET", "/v1/models"), ("GET", "/v1/stats"), ("POST", "/v1/chat/completions"),
                  ("GET", "/no-such-route"), ("DELETE", "/v1/models")]


@pytest.fixture()
def server(tmp_path: Path):
    with running_server(ScriptedEngine(), tmp_path, max_queue=3) as url:
        yield url


@pytest.mark.parametrize(("method", "path"), KEYLESS_PROBES)
def test_every_path_but_health_needs_the_key(server: str, method: str, path: str) -> None:
    response = httpx.request(method, f"{server}{path}", json=chat())
    assert_error(response, 401)
    assert response.headers["www-authenticate"] == "Bearer"


def test_the_schema_is_served_to_key_holders_and_the_browser_pages_are_off(server: str) -> None:
    schema = httpx.get(f"{server}/openapi.json", headers=AUTH).json()
    assert "/v1/chat/completions" in schema["paths"] and "/health" in schema["paths"]
    assert set(schema["components"]["schemas"]["ChatRequest"]["properties"]) >= {"messages", "seed", "stage"}
    assert schema["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    for page in ("/docs", "/redoc"):
        assert_error(httpx.get(f"{server}{page}", headers=AUTH), 404)
    assert_error(httpx.get(f"{server}/v1/chat/completions", headers=AUTH), 405)


def test_a_key_in_the_query_string_is_refused_and_never_logged(tmp_path: Path) -> None:
    lines: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: lines.append(record.getMessage())  # type: ignore[method-assign]
    with running_server(ScriptedEngine(), tmp_path, log_level="info") as url:
        access = logging.getLogger("uvicorn.access")
        access.addHandler(handler)
        try:
            assert_error(httpx.get(f"{url}/v1/models?api_key={API_KEY}"), 401)
            assert_error(httpx.post(f"{url}/v1/chat/completions?key={API_KEY}", json=chat()), 401)
            assert httpx.get(f"{url}/v1/models?api_key={API_KEY}&patient=JANE", headers=AUTH).status_code == 200
        finally:
            access.removeHandler(handler)
    assert len(lines) == 3 and all("/v1/" in line for line in lines), lines  # the access log was captured
    assert not any(API_KEY in line or "?" in line or "JANE" in line for line in lines), lines


OUT_OF_RANGE = [
    {"seed": 2**64}, {"seed": -1}, {"seed": True}, {"seed": "7"}, {"seed": 1.5},
    {"max_tokens": 0}, {"max_tokens": -5}, {"max_tokens": 10**30}, {"max_tokens": 2000}, {"max_tokens": True},
    {"max_tokens": 2.5}, {"max_completion_tokens": 0}, {"max_completion_tokens": 5000},
    {"temperature": -0.1}, {"temperature": 2.01}, {"temperature": "0.5"}, {"temperature": 1e309},
    {"top_p": 0}, {"top_p": 1.5}, {"top_p": -1}, {"n": 0}, {"n": 129}, {"n": True}, {"stream": "yes"}, {"stream": 1},
    {"frequency_penalty": 2.5}, {"presence_penalty": -3}, {"top_logprobs": 21}, {"top_logprobs": -1},
    {"stop": ["a", "b", "c", "d", "e"]}, {"stop": ""},
]


@pytest.mark.parametrize("extra", OUT_OF_RANGE, ids=[json.dumps(e) for e in OUT_OF_RANGE])
def test_out_of_range_numbers_are_422(server: str, extra: dict) -> None:
    body = json.dumps(chat(**extra)).replace("Infinity", "1e999")
    response = httpx.post(f"{server}/v1/chat/completions", headers={**AUTH, "content-type": "application/json"},
                          content=body)
    assert_error(response, 422)
    assert str(2**64) not in response.text  # the message names the field, never echoes the value


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_numbers_are_422(server: str, literal: str) -> None:
    raw = json.dumps(chat()).replace('"model"', f'"temperature": {literal}, "model"')
    response = httpx.post(f"{server}/v1/chat/completions", headers={**AUTH, "content-type": "application/json"},
                          content=raw)
    assert_error(response, 422)


def test_the_openai_client_sees_a_bad_seed_as_422(server: str) -> None:
    client = openai.OpenAI(base_url=f"{server}/v1", api_key=API_KEY, max_retries=0)
    with pytest.raises(openai.UnprocessableEntityError):
        client.chat.completions.create(model="breastgpt", messages=chat()["messages"], seed=2**64)
    assert client.chat.completions.create(model="breastgpt", messages=chat()["messages"],
                                          seed=2**63 - 1).choices[0].message.content


def truncated_svs(folder: Path) -> str:
    write_svs_like(folder / "slide.svs", SyntheticScene.random(1024, 1024, seed=0), downsamples=(1, 4))
    data = (folder / "slide.svs").read_bytes()
    return base64.b64encode(data[: len(data) // 2]).decode()


@pytest.mark.parametrize("part", ["image_url", "volume_url", "slide_features_url"])
def test_a_truncated_slide_is_a_json_4xx_in_every_part(server: str, tmp_path: Path, part: str) -> None:
    payload = truncated_svs(tmp_path)
    content = [{"type": part, part: {"url": f"data:image/tiff;base64,{payload}"}}]
    response = httpx.post(f"{server}/v1/chat/completions", headers=AUTH, json=chat(content), timeout=30)
    assert_error(response, 400)
    assert "breastgpt-req-" not in response.text and "/tmp" not in response.text  # no server paths
    assert wait_until_idle(server) == 0


class ExplodingProcessor:
    @property
    def slide_feature_dim(self) -> int:
        raise RuntimeError("SECRET-DETAIL /srv/models/patient-0042")


def test_an_unexpected_exception_is_a_json_500_without_details(tmp_path: Path,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    engine = ScriptedEngine()
    engine.processor = ExplodingProcessor()  # type: ignore[assignment]
    with caplog.at_level("DEBUG"), running_server(engine, tmp_path, max_queue=1) as url:
        for _ in range(3):  # max_queue 1: a slot left behind by the failure would make the next one 429
            body = assert_error(httpx.post(f"{url}/v1/chat/completions", headers=AUTH, json=chat()), 500)
            assert body["error"]["type"] == "server_error"
            assert "SECRET" not in json.dumps(body) and "Traceback" not in json.dumps(body)
        assert wait_until_idle(url) == 0
    assert "RuntimeError" in caplog.text  # the operator learns what failed and where ...
    assert "SECRET" not in caplog.text and "patient-0042" not in caplog.text  # ... but not its message


class FailingStreamEngine(ScriptedEngine):
    def stream(self, conversation: Any, params: Any, cancel: Any = None) -> Any:
        yield "partial "
        raise TypeError("SECRET-DETAIL")


def test_a_failure_while_streaming_ends_with_a_json_error_event(tmp_path: Path) -> None:
    with running_server(FailingStreamEngine(), tmp_path) as url:
        with httpx.stream("POST", f"{url}/v1/chat/completions", headers=AUTH, json=chat(stream=True)) as response:
            events = [line[6:] for line in response.iter_lines() if line.startswith("data: ")]
        last = json.loads(events[-1])
        assert last["error"] == {"message": "generation failed", "type": "server_error", "code": 500}
        assert "SECRET" not in "".join(events)
        assert wait_until_idle(url) == 0


def test_a_chunked_body_over_the_limit_is_413(tmp_path: Path) -> None:
    def body() -> Any:
        yield b'{"model": "breastgpt", "messages": [{"role": "user", "content": "'
        for _ in range(64):
            yield b"x" * 8192
        yield b'"}]}'

    with running_server(ScriptedEngine(), tmp_path, max_body_bytes=100_000) as url:
        response = httpx.post(f"{url}/v1/chat/completions", headers={**AUTH, "content-type": "application/json"},
                              content=body())
        assert_error(response, 413)
        small = httpx.post(f"{url}/v1/chat/completions", headers=AUTH, json=chat())
        assert small.status_code == 200


def test_a_message_of_too_many_parts_is_422(server: str) -> None:
    parts = [{"type": "text", "text": "a"}] * 20_000  # parsed and refused in a worker thread, not on the loop
    assert_error(httpx.post(f"{server}/v1/chat/completions", headers=AUTH, json=chat(parts), timeout=60), 422)


def test_a_volume_above_the_voxel_limit_is_refused_before_decoding(tmp_path: Path) -> None:
    import nibabel as nib
    import numpy as np

    nib.save(nib.Nifti1Image(np.zeros((16, 16, 16), np.int16), np.eye(4)), tmp_path / "v.nii.gz")
    url = "data:application/gzip;base64," + base64.b64encode((tmp_path / "v.nii.gz").read_bytes()).decode()
    volume = [{"type": "volume_url", "volume_url": {"url": url}}]
    with running_server(ScriptedEngine(), tmp_path, max_decoded_voxels=4096) as small, \
            running_server(ScriptedEngine(), tmp_path, max_decoded_voxels=4095) as smaller:
        assert httpx.post(f"{small}/v1/chat/completions", headers=AUTH, json=chat(volume)).status_code == 200
        body = assert_error(httpx.post(f"{smaller}/v1/chat/completions", headers=AUTH, json=chat(volume)), 400)
    assert "4095" in body["error"]["message"]


def large_png_data_url(side: int = 600) -> str:
    import io

    import numpy as np
    from PIL import Image

    buffer = io.BytesIO()  # noise does not compress: ~1 MB of PNG, well past the parser's long-string cut
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (side, side, 3), dtype=np.uint8)).save(buffer, "PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def test_a_large_body_is_parsed_in_pieces_with_the_same_answers_and_errors(server: str) -> None:
    from pydantic import ValidationError

    from breastgpt.serve.body import LONG_STRING_BYTES
    from breastgpt.serve.responses import validation_message
    from breastgpt.serve.schemas import ChatRequest

    image = {"type": "image_url", "image_url": {"url": large_png_data_url()}}
    raw = json.dumps(chat([image, image, {"type": "text", "text": "mass?"}])).encode()
    assert len(raw) > 4 * LONG_STRING_BYTES
    headers = {**AUTH, "content-type": "application/json"}
    answer = httpx.post(f"{server}/v1/chat/completions", headers=headers, content=raw, timeout=60)
    assert answer.status_code == 200 and answer.json()["choices"][0]["message"]["content"] == "2 0 0 | MASS?"
    for broken in (raw[:-1] + b",}", raw.replace(b'"text": "mass?"', b'"text": "mass?", "extra": 1')):
        with pytest.raises(ValidationError) as whole:
            ChatRequest.model_validate_json(broken)
        response = httpx.post(f"{server}/v1/chat/completions", headers=headers, content=broken, timeout=60)
        assert assert_error(response, 422)["error"]["message"] == validation_message(
            whole.value.errors(include_input=False))
    damaged = raw.replace(b"base64,", b"base64,==", 1)  # padding in the middle of a long payload
    assert "not valid base64" in assert_error(httpx.post(f"{server}/v1/chat/completions", headers=headers,
                                                         content=damaged, timeout=60), 400)["error"]["message"]
