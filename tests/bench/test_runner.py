"""`bench run` against a local OpenAI stub (and a tiny local checkpoint): exact scores, resume after a crash,
concurrency 16, retries and timeouts, media encoding, the text-only shortcut flag, the CLI."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

import h5py
import numpy as np
import pytest
from fastapi import FastAPI, Request as HttpRequest
from fastapi.responses import JSONResponse
from sklearn.metrics import cohen_kappa_score
from typer.testing import CliRunner

from breastgpt.bench.aggregate import find_group, score_run
from breastgpt.bench.cache import ResponseCache
from breastgpt.bench.clients import EndpointConfig, OpenAIClient, Request
from breastgpt.bench.items import BenchDataError, load_items, load_responses
from breastgpt.bench.judges import load_judgements
from breastgpt.bench.run_cli import app
from breastgpt.bench.runner import RunConfig, judges_from_config, run_bench
from breastgpt.bench.scoring import ScoreConfig
from breastgpt.corpus.records import write_records_jsonl
from breastgpt.infer.params import GenerationParams
from tests.bench.stub_openai import StubOpenAI, _completion
from tests.bench.test_ablations import make_record, write_pngs

REPO = Path(__file__).resolve().parents[2]
LETTERS = "ABCDEF"


# ------------------------------------------------------------------------------------------------ helpers


class TrackingStub(StubOpenAI):
    """The shared stub, but each request waits `delay` s without blocking the server, so concurrent requests
    really overlap and `max_in_flight` counts them; optionally answers /v1/models like a BreastGPT server."""

    def __init__(self, answer: Callable[[dict[str, Any]], str], delay: float = 0.0, breastgpt: bool = False):
        self.fn, self.delay, self.breastgpt = answer, delay, breastgpt
        self.in_flight = self.max_in_flight = 0
        super().__init__(answer)

    def _build_app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/v1/chat/completions")
        async def chat(request: HttpRequest) -> JSONResponse:
            body = await request.json()
            with self._lock:
                self.requests.append(body)
                self.in_flight += 1
                self.max_in_flight = max(self.max_in_flight, self.in_flight)
            try:
                await asyncio.sleep(self.delay)
            finally:
                with self._lock:
                    self.in_flight -= 1
            return JSONResponse(_completion(body["model"], self.fn(body)))

        if self.breastgpt:
            @app.get("/v1/models")
            async def models() -> dict[str, Any]:
                return {"object": "list", "data": [{"id": "breastgpt"}], "breastgpt": {"server": "breastgpt"}}

        return app


def user_text(body: dict[str, Any]) -> str:
    content = [m for m in body["messages"] if m["role"] == "user"][-1]["content"]
    return content if isinstance(content, str) else "".join(p["text"] for p in content if p["type"] == "text")


def item_of(body: dict[str, Any]) -> str:
    return re.search(r"Item (\w+)", user_text(body)).group(1)


def image_parts(body: dict[str, Any]) -> list[dict[str, Any]]:
    content = [m for m in body["messages"] if m["role"] == "user"][-1]["content"]
    return [] if isinstance(content, str) else [p for p in content if p["type"] != "text"]


def letter_of(body: dict[str, Any], text: str) -> str:
    """The letter under which `text` is presented in this request's option lines."""
    return re.search(r"(?m)^([A-F])\. " + re.escape(text) + "$", user_text(body)).group(1)


def write_bench(root: Path, records: list) -> Path:
    write_pngs(root, records)
    write_records_jsonl(root / "bench.jsonl", records)
    return root / "bench.jsonl"


def config(bench: Path, stub: StubOpenAI, out: Path, **kw: Any) -> RunConfig:
    kw.setdefault("backoff_s", 0.01)
    kw.setdefault("embeddings", False)  # the one test that fills the embedding cache says so
    return RunConfig(bench=bench, model=f"openai:{stub.base_url}#stub-model", out=out, **kw)


def decode_png(url: str) -> np.ndarray:
    from PIL import Image

    assert url.startswith("data:image/png;base64,")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))))


def score(out: Path, **kw: Any):
    items = load_items(out / "bench_items.jsonl")
    kw.setdefault("embeddings", False)
    return score_run(items, out, ScoreConfig(n_resamples=200, **kw))[0]


# -------------------------------------------------------------------------------------- exact scores + judge


def _scored_bench(tmp_path: Path) -> Path:
    answers = [1, 0, 2, 3, 1, 0]
    recs = [make_record(f"c{i}", f"p{i}", answer=a) for i, a in enumerate(answers)]
    recs += [make_record("o0", "p6", family="open_vqa", answer_text="an oval circumscribed mass"),
             make_record("o1", "p7", family="open_vqa", answer_text="no suspicious finding")]
    return write_bench(tmp_path, recs)


MODEL_SAYS = {"c0": "B", "c1": "The answer is A.", "c2": "A",  # c2 wrong (answer C)
              "c3": "Cyst", "c4": "I cannot decide.", "c5": "Answer: (A)",  # c3 by text, c4 unparseable
              "o0": "An oval mass with circumscribed margins.", "o1": "A spiculated mass."}


def test_scores_against_scripted_answers_are_exact(tmp_path: Path) -> None:
    bench = _scored_bench(tmp_path)
    judge_says = lambda body: ("Matches.\nSCORE: 8" if "circumscribed margins" in body["messages"][0]["content"]
                               else "Wrong lesion.\nSCORE: 3")
    with StubOpenAI(lambda body: MODEL_SAYS[item_of(body)]) as stub, StubOpenAI(judge_says) as judge:
        manifest = run_bench(config(bench, stub, tmp_path / "run", judges=(f"openai:{judge.base_url}#judge-x",)))
        assert len(stub.requests) == 8 and len(judge.requests) == 2
    body = stub.requests[0]
    assert (body["temperature"], body["top_p"], body["seed"], body["max_tokens"]) == (0.0, 1.0, 0, 256)
    assert [m["role"] for m in body["messages"]] == ["system", "user"]  # the reference answer is never sent
    sc = score(tmp_path / "run")
    closed = find_group(sc.groups, "overall", {}, "accuracy")
    assert closed["point"] == pytest.approx(4 / 6) and closed["n_items"] == 6
    assert find_group(sc.groups, "overall", {}, "unparseable_rate")["point"] == pytest.approx(1 / 6)
    assert sc.paper_row["Dx Mam"]["point"] == pytest.approx(4 / 6)
    assert sc.open_metric == "judge" and sc.paper_row["open"]["point"] == pytest.approx((0.8 + 0.3) / 2)
    assert manifest["judges"][0]["ok"] == 2 and manifest["variants"]["full"]["answered"] == 8
    assert manifest["bench"]["format"] == "corpus-jsonl" and manifest["decoding"]["temperature"] == 0.0


def test_two_judges_write_two_files_and_their_agreement_is_reported(tmp_path: Path) -> None:
    bench = _scored_bench(tmp_path)
    good = lambda body: "circumscribed margins" in body["messages"][0]["content"]  # noqa: E731
    out = tmp_path / "run"
    with StubOpenAI(lambda body: MODEL_SAYS[item_of(body)]) as stub, \
            StubOpenAI(lambda body: "SCORE: 8" if good(body) else "SCORE: 3") as jx, \
            StubOpenAI(lambda body: "SCORE: 9" if good(body) else "SCORE: 1") as jy:
        m = run_bench(config(bench, stub, out, judges=(f"openai:{jx.base_url}#judge-x",
                                                       f"openai:{jy.base_url}#gpt-judge-y")))
        assert len(jx.requests) == len(jy.requests) == 2
        assert "derived by rule from a human annotation" in jx.requests[0]["messages"][0]["content"]
        _check_two_judges(m, out)
        again = run_bench(config(bench, stub, out, judges=(f"openai:{jx.base_url}#judge-x",)))
    assert again["judges"][0]["asked"] == 0  # from the cache; the other judge's file is gone
    assert [f.name for f in out.glob("judgements*")] == ["judgements_judge-x.jsonl"]
    with pytest.raises(ValueError, match="would both write judgements_j.jsonl"):
        RunConfig(bench=bench, model="openai:http://x/v1#m", out=out, judges=("openai:http://a/v1#j",
                                                                              "openai:http://b/v1#j"))


def test_judge_keys_one_for_all_or_one_per_judge(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BENCH_KEY_A", "key-a")
    monkeypatch.setenv("BENCH_KEY_B", "key-b")
    specs = ("openai:http://127.0.0.1:9/v1#judge-a", "openai:http://127.0.0.1:9/v1#judge-b")
    make = lambda keys: RunConfig(bench=tmp_path / "b.jsonl", model="openai:http://x/v1#m", out=tmp_path,  # noqa
                                  judges=specs, judge_api_key_env=keys)
    assert [j.client.api_key for j in judges_from_config(make(("BENCH_KEY_A", "BENCH_KEY_B")))] == ["key-a", "key-b"]
    assert [j.client.api_key for j in judges_from_config(make(("BENCH_KEY_B",)))] == ["key-b", "key-b"]
    assert [j.client.api_key for j in judges_from_config(make(()))] == ["EMPTY", "EMPTY"]  # local servers: no key
    with pytest.raises(ValueError, match="3 judge key variables for 2 judges"):
        make(("BENCH_KEY_A", "BENCH_KEY_B", "BENCH_KEY_A"))


def _check_two_judges(m: dict[str, Any], out: Path) -> None:
    assert [j["file"] for j in m["judges"]] == ["judgements_judge-x.jsonl", "judgements_gpt-judge-y.jsonl"]
    assert sorted(f.name for f in out.glob("judgements*")) == ["judgements_gpt-judge-y.jsonl",
                                                               "judgements_judge-x.jsonl"]
    assert sorted(j.score for j in load_judgements(out / "judgements_judge-x.jsonl")) == [3, 8]
    assert sorted(j.score for j in load_judgements(out / "judgements_gpt-judge-y.jsonl")) == [1, 9]
    assert m["model"]["family"] == {"family": None, "basis": "model name 'stub-model'"}
    sc = score(out)  # the primary judge is the first file by name
    assert [(j["judge_model"], j["primary"]) for j in sc.judge["judges"]] == [("gpt-judge-y", True),
                                                                             ("judge-x", False)]
    assert sc.paper_row["open"]["point"] == pytest.approx((0.9 + 0.1) / 2)
    (pair,) = sc.judge["judge_agreement"]
    assert (pair["a"], pair["b"], pair["n"]) == ("gpt-judge-y", "judge-x", 2)
    assert pair["spearman"]["point"] == pytest.approx(1.0) and pair["spearman"]["zero_width"]
    assert pair["kappa_quadratic"]["point"] == pytest.approx(cohen_kappa_score(
        [9, 1], [8, 3], weights="quadratic", labels=list(range(11))))
    assert all(j["family_check"]["status"] == "unknown" for j in sc.judge["judges"])
    assert "judge gpt-judge-y: unknown family: no family recognised for the candidate (model name 'stub-model')" \
        in " ".join(sc.warnings)
    assert score(out, primary_judge="judge-x").paper_row["open"]["point"] == pytest.approx((0.8 + 0.3) / 2)


def test_the_run_fills_the_embedding_cache_so_scoring_needs_no_model(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    from breastgpt.bench import embedding_cache, text_metrics

    bench = _scored_bench(tmp_path)
    with StubOpenAI(lambda body: MODEL_SAYS[item_of(body)]) as stub:
        manifest = run_bench(config(bench, stub, tmp_path / "run", embeddings=True))
    # 2 references + 2 answers to open items, all distinct; closed items need no vector.
    assert manifest["embedding_cache"]["texts"] == 4 and manifest["embedding_cache"]["embedded"] == 4
    shutil.copytree(tmp_path / "run", tmp_path / "cold")
    (tmp_path / "cold" / embedding_cache.FILE_NAME).unlink()
    cold = score(tmp_path / "cold", embeddings=True)

    def no_model(*_: Any, **__: Any) -> None:
        raise AssertionError("scoring after a run must find every vector in the cache")

    monkeypatch.setattr(text_metrics, "load_embedding_model", no_model)
    warm = score(tmp_path / "run", embeddings=True)
    got, want = warm.per_item["embedding"].to_numpy(), cold.per_item["embedding"].to_numpy()
    assert np.isfinite(got).sum() == 2 and np.array_equal(got, want, equal_nan=True)


def test_manifest_and_files(tmp_path: Path) -> None:
    bench = _scored_bench(tmp_path)
    with StubOpenAI(lambda body: MODEL_SAYS[item_of(body)]) as stub:
        m = run_bench(config(bench, stub, tmp_path / "run", ablations=("no-image",)))
    import hashlib

    run = tmp_path / "run"
    assert m["bench"]["sha256"] == hashlib.sha256(bench.read_bytes()).hexdigest()
    assert m["model"]["id"] == f"openai:{stub.base_url}#stub-model" and m["model"]["name"] == "stub-model"
    assert m["variants"]["full"]["sha256"] == hashlib.sha256((run / "responses.jsonl").read_bytes()).hexdigest()
    assert sorted(p.name for p in run.glob("responses*.jsonl")) == ["responses.jsonl", "responses_no_image.jsonl"]
    assert json.loads((run / "run.json").read_text()) == m
    saved = load_responses(run / "responses_no_image.jsonl")
    assert len(saved) == 8 and {r.variant for r in saved} == {"no_image"} and saved[0].params["seed"] == 0


# ------------------------------------------------------------------------------------------- crash + resume


class CrashingClient(OpenAIClient):
    """Dies (like a killed process) when asked for its (K+1)-th answer; nothing after that reaches the server."""

    def __init__(self, *args: Any, crash_after: int, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.crash_after, self.calls, self._calls_lock = crash_after, 0, threading.Lock()

    def answer(self, request: Request):
        with self._calls_lock:
            self.calls += 1
            crashed = self.calls > self.crash_after
        if crashed:
            raise RuntimeError("injected crash")
        return super().answer(request)


def test_a_crashed_run_resumes_without_re_asking(tmp_path: Path) -> None:
    recs = [make_record(f"c{i}", f"p{i}", answer=i % 4) for i in range(10)]
    bench = write_bench(tmp_path, recs)
    answer = lambda body: LETTERS[int(item_of(body)[1:]) % 4]
    with StubOpenAI(answer) as stub:
        cfg = config(bench, stub, tmp_path / "run", concurrency=1)
        crashing = CrashingClient(EndpointConfig(stub.base_url, "stub-model", concurrency=1),
                                  GenerationParams(), tmp_path, crash_after=4)
        with pytest.raises(RuntimeError, match="injected crash"):
            run_bench(cfg, client=crashing)
        first = [item_of(b) for b in stub.requests]
        assert len(first) == 4
        with ResponseCache(tmp_path / "run" / "cache.sqlite") as cache:
            assert cache.count() == 4
        manifest = run_bench(cfg)
        second = [item_of(b) for b in stub.requests[4:]]
    assert len(second) == 6 and not set(first) & set(second) and set(first) | set(second) == {r.id for r in recs}
    assert manifest["variants"]["full"]["from_cache"] == 4 and manifest["variants"]["full"]["asked_this_run"] == 6
    saved = {r.item_id: r.response for r in load_responses(tmp_path / "run" / "responses.jsonl")}
    assert saved == {f"c{i}": LETTERS[i % 4] for i in range(10)}
    assert find_group(score(tmp_path / "run").groups, "overall", {}, "accuracy")["point"] == 1.0


def test_a_sigkilled_run_resumes_from_the_cache(tmp_path: Path) -> None:
    recs = [make_record(f"c{i}", f"p{i}", answer=i % 4) for i in range(8)]
    bench = write_bench(tmp_path, recs)
    release = threading.Event()
    served = [0]

    def answer(body: dict[str, Any]) -> str:
        served[0] += 1
        if served[0] > 3:
            release.wait(60)  # hold the 4th request until the client is dead
        return LETTERS[int(item_of(body)[1:]) % 4]

    with StubOpenAI(answer) as stub:
        cmd = [sys.executable, "-c", "import sys; from breastgpt.bench.run_cli import app; app(sys.argv[1:])",
               "run", "--bench", str(bench), "--model", f"openai:{stub.base_url}#stub-model", "--out",
               str(tmp_path / "run"), "--concurrency", "1"]
        proc = subprocess.Popen(cmd, env={**os.environ, "PYTHONPATH": str(REPO / "src")}, cwd=REPO)
        deadline = time.monotonic() + 120
        while len(stub.requests) < 4:
            assert proc.poll() is None and time.monotonic() < deadline, "runner ended before the 4th request"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        release.set()
        with ResponseCache(tmp_path / "run" / "cache.sqlite") as cache:
            assert cache.count() == 3
        run_bench(config(bench, stub, tmp_path / "run", concurrency=1))
        asked = [item_of(b) for b in stub.requests]
    # 3 answered before the kill are not asked again; the one in flight at the kill is asked again
    assert len(asked) == 8 + 1 and asked[4:].count(asked[3]) == 1 and not set(asked[:3]) & set(asked[4:])
    assert len(load_responses(tmp_path / "run" / "responses.jsonl")) == 8


# -------------------------------------------------------------------------------------------- concurrency


def test_sixteen_requests_in_flight_and_answers_land_on_their_items(tmp_path: Path) -> None:
    recs = [make_record(f"c{i:02d}", f"p{i}", answer=i % 4) for i in range(48)]
    bench = write_bench(tmp_path, recs)
    with TrackingStub(lambda body: f"Answer: {LETTERS[int(item_of(body)[1:]) % 4]} [{item_of(body)}]",
                      delay=0.5) as stub:
        run_bench(config(bench, stub, tmp_path / "run", concurrency=16))
    assert stub.max_in_flight == 16 and len(stub.requests) == 48
    saved = {r.item_id: r.response for r in load_responses(tmp_path / "run" / "responses.jsonl")}
    assert saved == {f"c{i:02d}": f"Answer: {LETTERS[i % 4]} [c{i:02d}]" for i in range(48)}
    assert find_group(score(tmp_path / "run").groups, "overall", {}, "accuracy")["point"] == 1.0


# ---------------------------------------------------------------------------------- retries, errors, timeouts


def test_retries_on_429_and_5xx_then_succeeds(tmp_path: Path) -> None:
    bench = write_bench(tmp_path, [make_record("c0", "p0")])
    with StubOpenAI([503, 429, 502, "B"]) as stub:
        m = run_bench(config(bench, stub, tmp_path / "run"))
        assert len(stub.requests) == 4
    with ResponseCache(tmp_path / "run" / "cache.sqlite") as cache:
        (row,) = cache.get_many([k for k in _keys(cache)]).values()
    assert row.response == "B" and row.usage["attempts"] == 4 and m["counts"]["failed"] == 0


def _keys(cache: ResponseCache):
    from breastgpt.bench.cache import CacheKey

    rows = cache._db.execute("SELECT item_id, model_id, params_hash, ablation FROM responses").fetchall()
    return [CacheKey(*r) for r in rows]


def test_failures_are_recorded_and_retried_only_when_asked(tmp_path: Path) -> None:
    bench = write_bench(tmp_path, [make_record("c0", "p0"), make_record("c1", "p1")])
    answers = ["B", 500, 500, 400]  # c0 ok; c1: 500, 500 (gives up after 1 retry); then a 400 is not retried
    with StubOpenAI(answers) as stub:
        m = run_bench(config(bench, stub, tmp_path / "run", concurrency=1, max_retries=1))
        assert len(stub.requests) == 3 and m["counts"]["failed"] == 1
        (failure,) = m["variants"]["full"]["failures"]
        assert failure["item_id"] == "c1" and failure["error"].startswith("HTTP 500 after 2 attempt(s)")
        assert [r.item_id for r in load_responses(tmp_path / "run" / "responses.jsonl")] == ["c0"]
        m = run_bench(config(bench, stub, tmp_path / "run", max_retries=1, retry_failed=False))
        assert len(stub.requests) == 3 and m["variants"]["full"]["asked_this_run"] == 0
        m = run_bench(config(bench, stub, tmp_path / "run", max_retries=1))
        assert len(stub.requests) == 4 and m["variants"]["full"]["failures"][0]["error"].startswith("HTTP 400 after 1")
    missing = score(tmp_path / "run")
    assert any("1 items have no response" in w for w in missing.warnings)


def test_per_request_timeout_is_an_error_not_a_hang(tmp_path: Path) -> None:
    bench = write_bench(tmp_path, [make_record("c0", "p0")])
    with TrackingStub(lambda body: "B", delay=3.0) as stub:
        started = time.monotonic()
        m = run_bench(config(bench, stub, tmp_path / "run", timeout_s=0.3, max_retries=0))
        elapsed = time.monotonic() - started
    assert m["variants"]["full"]["failures"][0]["error"].startswith("APITimeoutError")
    assert elapsed < 3.0, "the client waited for the slow answer instead of timing out"


# ------------------------------------------------------------------------------------------------- media


def _volume_record(tmp_path: Path) -> Any:
    volume = np.repeat(np.arange(10, dtype=np.uint8)[:, None, None] * 20, 8, axis=1).repeat(6, axis=2)
    (tmp_path / "vol").mkdir()
    np.savez(tmp_path / "vol" / "v0.npz", array=volume)
    return make_record("v0", "p0", media=[("volume", "vol/v0.npz")], modality="mri"), volume


def test_images_are_sent_as_png_data_urls(tmp_path: Path) -> None:
    rec = make_record("c0", "p0")
    bench = write_bench(tmp_path, [rec])
    with StubOpenAI(["B"]) as stub:
        run_bench(config(bench, stub, tmp_path / "run", breastgpt_server=False))
    (part,) = image_parts(stub.requests[0])
    pixels = decode_png(part["image_url"]["url"])
    assert pixels.shape == (12, 10, 3) and (pixels == 0).all()  # write_pngs: item 0 is filled with 0


def test_volumes_on_generic_endpoints_are_evenly_spaced_frames(tmp_path: Path) -> None:
    rec, volume = _volume_record(tmp_path)
    bench = write_bench(tmp_path, [rec])
    with StubOpenAI(["B"]) as stub:
        m = run_bench(config(bench, stub, tmp_path / "run"))
    parts = image_parts(stub.requests[0])
    assert [decode_png(p["image_url"]["url"])[0, 0, 0] for p in parts] == [20, 60, 120, 160]  # slices 1,3,6,8
    assert "[volume shown as 4 of its 10 slices" in user_text(stub.requests[0])
    assert m["media_policy"]["endpoint"] == "generic"


def test_volumes_and_slides_on_a_breastgpt_server(tmp_path: Path) -> None:
    from breastgpt.io.volume import read_volume

    rec, volume = _volume_record(tmp_path)
    slide = make_record("s0", "p1", media=[("slide", "slides/s0.h5")], modality="pathology", stage="treatment")
    (tmp_path / "slides").mkdir()
    with h5py.File(tmp_path / "slides" / "s0.h5", "w") as h5:
        h5["coords"], h5["features"] = np.zeros((2, 2), np.int64), np.ones((2, 4), np.float32)
        h5.attrs["n_tiles"] = 2
    bench = write_bench(tmp_path, [rec, slide])
    with TrackingStub(lambda body: "B", breastgpt=True) as stub:
        m = run_bench(config(bench, stub, tmp_path / "run", concurrency=1))
    assert m["media_policy"]["endpoint"] == "breastgpt" and m["model"]["breastgpt_server"] is True
    by_item = {item_of(b): image_parts(b) for b in stub.requests}
    (vol_part,) = by_item["v0"]
    payload = base64.b64decode(vol_part["volume_url"]["url"].split(",", 1)[1])
    (tmp_path / "sent.nii.gz").write_bytes(payload)
    assert np.array_equal(read_volume(tmp_path / "sent.nii.gz").array, volume)
    (slide_part,) = by_item["s0"]
    sent = base64.b64decode(slide_part["slide_features_url"]["url"].split(",", 1)[1])
    assert sent == (tmp_path / "slides" / "s0.h5").read_bytes()


def test_a_slide_without_thumbnail_fails_on_a_generic_endpoint(tmp_path: Path) -> None:
    slide = make_record("s0", "p1", media=[("slide", "s0.h5")], modality="pathology", stage="treatment")
    with h5py.File(tmp_path / "s0.h5", "w") as h5:
        h5["coords"], h5["features"] = np.zeros((2, 2), np.int64), np.ones((2, 4), np.float32)
        h5.attrs["n_tiles"] = 2
    bench = write_bench(tmp_path, [slide])
    with StubOpenAI(["B"]) as stub:
        m = run_bench(config(bench, stub, tmp_path / "run"))
        assert stub.requests == []
    assert "has no thumbnail" in m["variants"]["full"]["failures"][0]["error"]


def test_missing_media_fails_that_item_only(tmp_path: Path) -> None:
    recs = [make_record("c0", "p0"), make_record("c1", "p1")]
    bench = write_bench(tmp_path, recs)
    (tmp_path / "img" / "c1.png").unlink()
    with StubOpenAI(lambda body: "B") as stub:
        m = run_bench(config(bench, stub, tmp_path / "run"))
    assert len(stub.requests) == 1 and m["variants"]["full"]["failures"][0]["item_id"] == "c1"
    assert m["variants"]["full"]["failures"][0]["error"].startswith("media:")


# ---------------------------------------------------------------------------------------------- shortcuts


def _shortcut_bench(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    recs, truth = [], {}
    for i in range(10):
        options = ["Benign", "Malignant", "Normal", "Cyst"] if i % 2 else ["Malignant", "Normal", "Benign", "Cyst"]
        answer = options.index("Malignant") if i < 8 else options.index("Benign")
        recs.append(make_record(f"c{i}", f"p{i}", answer=answer, options=options))
        truth[f"c{i}"] = options[answer]
    return write_bench(tmp_path, recs), truth


def test_text_only_model_is_flagged_by_the_no_image_run(tmp_path: Path) -> None:
    bench, truth = _shortcut_bench(tmp_path)
    text_only = lambda body: letter_of(body, "Malignant")  # never looks at the image
    with StubOpenAI(text_only) as stub:
        run_bench(config(bench, stub, tmp_path / "text", ablations=("no-image",)))
    sc = score(tmp_path / "text")
    gap = next(s for s in sc.shortcuts if s["variant"] == "no_image" and s["where"] == "overall")
    assert find_group(sc.groups, "overall", {}, "accuracy")["point"] == pytest.approx(0.8)
    assert gap["gap"]["point"] == 0.0 and gap["flag"] is not None
    assert any(w.startswith("shortcut (no_image, closed_vqa, overall)") for w in sc.warnings)


def test_a_model_that_needs_the_image_is_not_flagged(tmp_path: Path) -> None:
    bench, truth = _shortcut_bench(tmp_path)
    looks = lambda body: letter_of(body, truth[item_of(body)]) if image_parts(body) else "I need the image."
    with StubOpenAI(looks) as stub:
        run_bench(config(bench, stub, tmp_path / "visual", ablations=("no-image", "shuffle-image")))
        no_image_bodies = [b for b in stub.requests if not image_parts(b)]
    assert len(no_image_bodies) == 10 and all("<image>" not in user_text(b) for b in no_image_bodies)
    sc = score(tmp_path / "visual")
    gap = next(s for s in sc.shortcuts if s["variant"] == "no_image" and s["where"] == "overall")
    assert gap["gap"]["point"] == 1.0 and gap["flag"] is None


def test_permuted_options_score_through_the_saved_order(tmp_path: Path) -> None:
    bench, truth = _shortcut_bench(tmp_path)
    reads = lambda body: letter_of(body, truth[item_of(body)])  # finds the right text wherever it is listed
    with StubOpenAI(reads) as stub:
        m = run_bench(config(bench, stub, tmp_path / "reader", ablations=("permute-options",)))
    with StubOpenAI(lambda body: "A") as stub:  # always the first letter: position bias
        run_bench(config(bench, stub, tmp_path / "biased", ablations=("permute-options",)))
    assert m["variants"]["permute_options"]["prompts"] == 10 and m["variants"]["permute_options"]["refused"] == 0
    reader = score(tmp_path / "reader").per_item
    assert (reader[reader["variant"] == "permute_options"]["correct"] == 1.0).all()
    biased = score(tmp_path / "biased")
    gap = next(s for s in biased.shortcuts if s["variant"] == "permute_options" and s["where"] == "overall")
    # "A" is right for c0, c2, c4, c6 (Malignant listed first) and c9 (Benign first): 5/10 unpermuted; permuted,
    # it is right where the option now presented first is the correct one
    items = {it.id: it for it in load_items(tmp_path / "biased" / "bench_items.jsonl")}
    permuted = load_responses(tmp_path / "biased" / "responses_permute_options.jsonl")
    hits = sum(r.option_order[0] == items[r.item_id].answer_index for r in permuted)
    assert find_group(biased.groups, "overall", {}, "accuracy")["point"] == 0.5
    assert gap["gap"]["point"] == pytest.approx(0.5 - hits / 10) and hits != 5
    # one random permutation of 10 items: the paired interval includes 0, so it cannot tell position bias
    assert gap["gap"]["low"] <= 0 <= gap["gap"]["high"] and gap["flag"] is None


def test_circular_evaluation_catches_position_bias_and_states_its_cost(tmp_path: Path) -> None:
    bench, truth = _shortcut_bench(tmp_path)
    reads = lambda body: letter_of(body, truth[item_of(body)])
    with StubOpenAI(reads) as stub:
        m = run_bench(config(bench, stub, tmp_path / "reader", ablations=("circular",)))
        assert len(stub.requests) == 10 * 4  # the full pass and three rotations of four options
    with StubOpenAI(lambda body: "A") as stub:
        run_bench(config(bench, stub, tmp_path / "biased", ablations=("circular",)))
    assert [m["variants"][f"circular_{k}"]["prompts"] for k in (1, 2, 3)] == [10, 10, 10]
    assert m["circular_cost"]["extra_prompts"] == 30 and m["circular_cost"]["closed_cost_factor"] == 4.0
    reader, biased = score(tmp_path / "reader"), score(tmp_path / "biased")
    assert find_group(reader.groups, "overall", {}, "circular_accuracy")["point"] == 1.0
    # "A" is right under exactly one of the four rotations of every item: never right under all of them
    assert find_group(biased.groups, "overall", {}, "accuracy")["point"] == 0.5
    assert find_group(biased.groups, "overall", {}, "circular_accuracy")["point"] == 0.0
    assert biased.circular["items_with_every_rotation"] == 10 and "4.0x" in biased.circular["cost"]


# ------------------------------------------------------------------------------------------ inputs, out dir


def test_published_bench_json_is_imported_and_scorable(tmp_path: Path) -> None:
    write_pngs(tmp_path, [make_record("a", "x"), make_record("b", "x")])
    published = [{"messages": [{"role": "system", "content": "Clinical stage: diagnosis. Mammography."},
                               {"role": "user", "content": f"<image>Item {k}: finding?\nA. Benign\nB. Malignant"},
                               {"role": "assistant", "content": "B. Malignant"}], "images": [f"img/{k}.png"]}
                 for k in ("a", "b")]
    (tmp_path / "bench.json").write_text(json.dumps(published))
    with StubOpenAI(lambda body: "B" if item_of(body) == "a" else "A") as stub:
        m = run_bench(RunConfig(bench=tmp_path / "bench.json", model=f"openai:{stub.base_url}#m",
                                out=tmp_path / "run"))
    assert m["bench"]["format"] == "published" and m["bench"]["items_run"] == 2
    sc = score(tmp_path / "run")
    assert find_group(sc.groups, "overall", {}, "accuracy")["point"] == 0.5


def test_only_bench_split_records_and_limit(tmp_path: Path) -> None:
    recs = [make_record("t0", "p0", split="train")] + [make_record(f"c{i}", f"p{i}") for i in range(5)]
    bench = write_bench(tmp_path, recs)
    with StubOpenAI(lambda body: "B") as stub:
        m = run_bench(config(bench, stub, tmp_path / "run", limit=3))
        assert sorted(item_of(b) for b in stub.requests) == ["c0", "c1", "c2"]
    assert (m["bench"]["skipped_non_bench"], m["bench"]["records_in_file"], m["bench"]["items_run"]) == (1, 6, 3)
    assert [it.id for it in load_items(tmp_path / "run" / "bench_items.jsonl")] == ["c0", "c1", "c2"]


def test_out_dir_of_another_model_is_refused(tmp_path: Path) -> None:
    bench = write_bench(tmp_path, [make_record("c0", "p0")])
    with StubOpenAI(lambda body: "B") as stub:
        run_bench(config(bench, stub, tmp_path / "run"))
        other = RunConfig(bench=bench, model=f"openai:{stub.base_url}#other-model", out=tmp_path / "run")
        with pytest.raises(BenchDataError, match="holds a run of"):
            run_bench(other)


def test_changed_prompt_is_asked_again(tmp_path: Path) -> None:
    bench = write_bench(tmp_path, [make_record("c0", "p0"), make_record("c1", "p1")])
    with StubOpenAI(lambda body: "B") as stub:
        run_bench(config(bench, stub, tmp_path / "run"))
        write_records_jsonl(bench, [make_record("c0", "p0", question="Item c0: reworded?"), make_record("c1", "p1")])
        run_bench(config(bench, stub, tmp_path / "run"))
        assert [item_of(b) for b in stub.requests[2:]] == ["c0"]


def test_bad_model_spec_and_unscorable_items_fail_before_asking(tmp_path: Path) -> None:
    bench = write_bench(tmp_path, [make_record("c0", "p0")])
    with pytest.raises(BenchDataError, match="expected local:DIR"):
        run_bench(RunConfig(bench=bench, model="http://x/v1", out=tmp_path / "run"))
    rec = make_record("c1", "p1")
    rec.label["clinical_target"] = {"name": "malignancy", "field": "pathology", "value": "malignant"}
    write_records_jsonl(bench, [rec])
    with StubOpenAI(lambda body: "B") as stub:
        with pytest.raises(BenchDataError, match="checked before asking the model"):
            run_bench(config(bench, stub, tmp_path / "run"))
        assert stub.requests == []


# -------------------------------------------------------------------------------------------------- CLI


def test_cli_run_json_and_exit_codes(tmp_path: Path) -> None:
    bench = write_bench(tmp_path, [make_record("c0", "p0"), make_record("c1", "p1")])
    runner = CliRunner()
    with StubOpenAI(lambda body: "B") as stub:
        args = ["run", "--bench", str(bench), "--model", f"openai:{stub.base_url}#stub-model", "--out",
                str(tmp_path / "run"), "--ablate", "no-image", "--concurrency", "2", "--json"]
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
        manifest = json.loads(result.stdout)
        assert manifest["variants"]["no_image"]["answered"] == 2 and manifest["ablations"] == ["no-image"]
    with StubOpenAI([500] * 10) as stub:
        args = ["run", "--bench", str(bench), "--model", f"openai:{stub.base_url}#m2", "--out",
                str(tmp_path / "run2"), "--max-retries", "0"]
        result = runner.invoke(app, args)
        assert result.exit_code == 1 and "2 requests failed" in result.output
    result = runner.invoke(app, ["run", "--bench", str(bench), "--model", "nope", "--out", str(tmp_path / "r3")])
    assert result.exit_code == 2 and "expected local:DIR" in result.output
    result = runner.invoke(app, ["run", "--bench", str(bench), "--model", "local:x", "--out", str(tmp_path / "r4"),
                                 "--ablate", "no-text"])
    assert result.exit_code == 2 and "unknown ablations" in result.output


# ------------------------------------------------------------------------------------------- local model


def tiny_checkpoint(folder: Path) -> Path:
    """A tiny random checkpoint, as tests/infer/conftest.py builds it (slide_config is a dict in the config)."""
    import torch

    from breastgpt.model import BreastGPTForConditionalGeneration
    from breastgpt.model.flavours import tiny, tiny_processor

    torch.manual_seed(0)
    model = BreastGPTForConditionalGeneration(tiny()).eval()
    slide = getattr(model.config, "slide_config", None)
    dim = slide.get("feature_dim") if isinstance(slide, dict) else getattr(slide, "feature_dim", None)
    model.save_pretrained(folder)
    tiny_processor(slide_feature_dim=dim).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("breastgpt.model.longnet", reason="the model's LongNet module is not committed yet")
    return tiny_checkpoint(tmp_path_factory.mktemp("bench-ckpt"))


@pytest.mark.slow  # ~30 s of it is importing the model stack and building the checkpoint on a small CPU
def test_local_checkpoint_run_and_resume(tmp_path: Path, checkpoint: Path) -> None:
    from breastgpt.bench.clients import LocalClient

    recs = [make_record(f"c{i}", f"p{i}") for i in range(3)] + [make_record("o0", "p9", family="open_vqa")]
    bench = write_bench(tmp_path, recs)
    cfg = RunConfig(bench=bench, model=f"local:{checkpoint}", out=tmp_path / "run", max_new_tokens=4,
                    ablations=("no-image",), batch_size=2, device="cpu")
    client = LocalClient(checkpoint, cfg.decoding(), tmp_path, batch_size=2, device="cpu")
    m = run_bench(cfg, client=client)
    assert client.generate_calls == 4  # 4 full prompts in batches of 2, then 4 no-image prompts
    assert m["variants"]["full"]["answered"] == 4 and m["variants"]["no_image"]["answered"] == 4
    assert m["model"]["fingerprint_sha256"] and m["model"]["id"].startswith("local:")
    # the folder name says nothing; the family for the judge check comes from the checkpoint's config.json
    assert m["model"]["family"]["family"] == "qwen" and "config.json" in m["model"]["family"]["basis"]
    first = load_responses(tmp_path / "run" / "responses.jsonl")
    m = run_bench(cfg, client=client)
    assert client.generate_calls == 4 and m["counts"]["asked_this_run"] == 0  # resumed entirely from the cache
    assert load_responses(tmp_path / "run" / "responses.jsonl") == first
    fresh = RunConfig(bench=bench, model=f"local:{checkpoint}", out=tmp_path / "again", max_new_tokens=4,
                      batch_size=2, device="cpu")
    assert load_responses(Path(run_bench(fresh)["bench"]["corpus_root"]) / "again" / "responses.jsonl") == first


@pytest.mark.slow
def test_against_a_real_breastgpt_server(tmp_path: Path, checkpoint: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The runner against `breastgpt serve`'s app on the tiny checkpoint: detection, key from an env var, a volume
    as NIfTI, and the same answers for image items as the local path (both unbatched, fp32, greedy)."""
    from breastgpt.infer.engine import Engine
    from tests.serve.fakes import API_KEY, running_server

    rec, _ = _volume_record(tmp_path)
    recs = [make_record("c0", "p1"), make_record("o0", "p2", family="open_vqa"), rec]
    bench = write_bench(tmp_path, recs)
    engine = Engine.from_pretrained(checkpoint, device="cpu")
    monkeypatch.setenv("BENCH_TEST_KEY", API_KEY)
    with running_server(engine, tmp_path) as url:
        served = run_bench(RunConfig(bench=bench, model=f"openai:{url}/v1#breastgpt", out=tmp_path / "served",
                                     api_key_env="BENCH_TEST_KEY", concurrency=1, max_new_tokens=5))
    assert served["model"]["breastgpt_server"] is True and served["counts"]["failed"] == 0
    local = run_bench(RunConfig(bench=bench, model=f"local:{checkpoint}", out=tmp_path / "local", batch_size=1,
                                max_new_tokens=5, device="cpu"))
    by_id = lambda run: {r.item_id: r.response for r in load_responses(tmp_path / run / "responses.jsonl")}
    assert local["counts"]["failed"] == 0 and len(by_id("served")) == 3 and all(by_id("served").values())
    assert {k: by_id("served")[k] for k in ("c0", "o0")} == {k: by_id("local")[k] for k in ("c0", "o0")}


def test_bench_clients_are_registered_by_spec_prefix_and_a_new_one_is_one_decorated_factory():
    from breastgpt.bench.clients import CLIENTS, bench_client, parse_model_spec
    from breastgpt.bench.runner import RunConfig, make_client

    assert CLIENTS.names() == ("local", "openai")

    @bench_client("fake", "fake:NAME", lambda rest: (rest, rest) if rest else None)
    def _fake(where, model, run):
        return ("fake client", where, run.seed)

    try:
        assert parse_model_spec("fake:m1") == ("fake", "m1", "m1")
        assert make_client(RunConfig(bench="b.jsonl", model="fake:m1", out="o", seed=7)) == ("fake client", "m1", 7)
        with pytest.raises(BenchDataError, match="expected local:DIR .* or openai:URL#MODEL .* or fake:NAME"):
            parse_model_spec("fake:")
    finally:
        CLIENTS.remove("fake")
    with pytest.raises(BenchDataError, match="expected local:DIR"):
        parse_model_spec("fake:m1")
