"""Model clients for the bench runner: a local checkpoint, or any OpenAI-compatible endpoint.

Both take the prompts of one variant and report each answer through a callback as soon as it exists, so the
runner can commit it to the cache before the next request (a killed run loses at most the requests in flight).

Decoding is deterministic: temperature 0, top-p 1 and a fixed seed, recorded in every saved answer.

How media travel to an endpoint (`openai:URL#MODEL`):
* images: PNG data URLs (`image_url` parts), decoded first through `breastgpt.io` (never passed on unread);
* volumes (corpus NPZ, windowed uint8 (Z, Y, X)): for a generic endpoint, `volume_frames` slices (default 4) at
  the centres of equal depth intervals, as PNG images after a short text part saying so — generic chat models
  take images, not volumes, and a few evenly spaced slices show the whole extent at a bounded request size; for a
  BreastGPT server, the whole volume as a NIfTI (`volume_url` part, our extension);
* slides: for a BreastGPT server, the tile-feature HDF5 (`slide_features_url` part); a generic endpoint gets the
  slide thumbnail stored in the feature file as an image, and the item fails (recorded, scored wrong) if there is
  none.
A BreastGPT server is recognised by the `breastgpt` key of its `/v1/models` answer, or forced either way.

`--model KIND:...` picks a client from `CLIENTS`; another kind of client is one `bench_client`-decorated factory.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import os
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol

import numpy as np

from breastgpt.io.volume import read_corpus_volume
from breastgpt.bench.items import BenchDataError
from breastgpt.config import ConfigError, StrictConfig
from breastgpt.corpus.records import MEDIA_TOKENS, Record
from breastgpt.infer.params import GenerationParams
from breastgpt.io.errors import MedicalFileError
from breastgpt.registry import Registry

_PLACEHOLDER = re.compile("|".join(re.escape(t) for t in MEDIA_TOKENS.values()))
_KIND_OF_TOKEN = {token: kind for kind, token in MEDIA_TOKENS.items()}
PROMPT_STAGE = {"screening": "screening", "diagnosis": "diagnosis", "treatment": "treatment planning"}
RETRY_STATUSES = (408, 409, 429)  # and every 5xx
LETTERS = "ABCDEF"


@dataclass(frozen=True)
class Request:
    tag: Any  # the runner's handle for this prompt (its cache key)
    record: Record


@dataclass(frozen=True)
class Answer:
    """A model's answer (`text`) or the reason there is none (`error`), with timing and token usage."""

    text: str | None
    error: str | None
    latency_s: float
    usage: dict[str, Any]
    option_probs: tuple[float, ...] | None = None  # closed questions under option scoring, in presented order


OnAnswer = Callable[[Request, Answer], None]


class BenchClient(Protocol):
    model_name: str  # written into the saved answers (and seen by the judge's family check)
    model_id: str  # identity in the cache: a different checkpoint or endpoint never reuses answers

    def describe(self) -> dict[str, Any]: ...

    def media_policy(self) -> dict[str, Any]: ...

    def answer_all(self, requests: list[Request], on_answer: OnAnswer) -> None: ...


@dataclass(frozen=True)
class ClientKind:
    """How `--model KIND:REST` is read and turned into a client."""

    usage: str  # the spec's form, for error messages
    parse: Callable[[str], "tuple[str, str] | None"]  # REST -> (where, model name), None when malformed
    build: Callable[[str, str, Any], BenchClient]  # (where, model name, the run's config) -> client


# `--model` prefix -> client kind; a new kind of client is one `bench_client`-decorated factory
CLIENTS: Registry[ClientKind] = Registry("bench client")


def bench_client(kind: str, usage: str, parse: Callable[[str], "tuple[str, str] | None"]):
    """Decorator: register `build(where, model, run_config) -> BenchClient` for model specs `kind:...`."""
    def add(build: Callable[[str, str, Any], BenchClient]) -> Callable[[str, str, Any], BenchClient]:
        CLIENTS.add(kind, ClientKind(usage, parse, build))
        return build
    return add


def parse_model_spec(spec: str) -> tuple[str, str, str]:
    """'local:DIR' -> ('local', DIR, ''); 'openai:URL#MODEL' -> ('openai', URL, MODEL); likewise per `CLIENTS`."""
    kind, _, rest = spec.partition(":")
    parsed = CLIENTS.get(kind).parse(rest) if kind in CLIENTS else None
    if parsed is None:
        raise BenchDataError(f"model {spec!r}: expected " + " or ".join(k.usage for _, k in CLIENTS.items()))
    return kind, *parsed


def make_bench_client(spec: str, run_config: Any) -> BenchClient:
    """The client a model spec names, built from the run's settings (`runner.RunConfig`)."""
    kind, where, model = parse_model_spec(spec)
    return CLIENTS.get(kind).build(where, model, run_config)


class MediaUnsupported(ValueError):
    """The endpoint cannot be shown this kind of input (a slide without thumbnail on a generic endpoint)."""


def _data_url(mime: str, payload: bytes) -> str:
    return f"data:{mime};base64,{base64.b64encode(payload).decode('ascii')}"


def png_bytes(rgb: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb)).save(buf, format="PNG")
    return buf.getvalue()


def frame_indices(depth: int, count: int) -> list[int]:
    """`count` slice indices at the centres of equal depth intervals (all slices when there are fewer)."""
    count = min(count, depth)
    return [int((i + 0.5) * depth / count) for i in range(count)]


def nifti_gz_bytes(volume: np.ndarray) -> bytes:
    import nibabel as nib

    image = nib.Nifti1Image(np.ascontiguousarray(volume.transpose(2, 1, 0)), affine=np.eye(4))
    return gzip.compress(image.to_bytes(), mtime=0)


@dataclass(frozen=True)
class MediaEncoder:
    root: Path
    breastgpt_server: bool
    volume_frames: int = 4

    def parts(self, kind: str, relative: str) -> list[dict[str, Any]]:
        path = self.root / relative
        if kind == "image":
            from breastgpt.infer.inputs import load_image

            return [_image_part(load_image(path))]
        if kind == "volume":
            return self._volume(read_corpus_volume(path))
        if kind == "slide":
            return self._slide(path)
        raise MediaUnsupported(f"unknown media kind {kind!r}")

    def _volume(self, volume: np.ndarray) -> list[dict[str, Any]]:
        if self.breastgpt_server:
            # corpus volumes are already windowed: the server must pass them through unchanged
            return [{"type": "volume_url", "volume_url": {"url": _data_url("application/gzip",
                                                                            nifti_gz_bytes(volume))},
                     "window": "identity"}]
        picks = frame_indices(volume.shape[0], self.volume_frames)
        note = {"type": "text", "text": f"[volume shown as {len(picks)} of its {volume.shape[0]} slices, "
                                        f"evenly spaced in depth]"}
        return [note] + [_image_part(np.repeat(volume[z][..., None], 3, axis=-1)) for z in picks]

    def _slide(self, path: Path) -> list[dict[str, Any]]:
        if self.breastgpt_server:
            from breastgpt.pathology.features import load_features

            load_features(path)  # refuse an unreadable feature file here rather than at the server
            return [{"type": "slide_features_url",
                     "slide_features_url": {"url": _data_url("application/x-hdf5", path.read_bytes())}}]
        from breastgpt.infer.inputs import load_slide_features, to_rgb8

        thumbnail = load_slide_features(path).thumbnail
        if thumbnail is None:
            raise MediaUnsupported(f"{path}: a generic endpoint cannot take slide features and the feature file "
                                   f"has no thumbnail; serve the model with `breastgpt serve` instead")
        return [_image_part(to_rgb8(np.asarray(thumbnail)))]


def _image_part(rgb: np.ndarray) -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": _data_url("image/png", png_bytes(rgb))}}


def chat_messages(record: Record, encoder: MediaEncoder) -> list[dict[str, Any]]:
    """The record's prompt as OpenAI chat messages: everything up to its last user turn, media inline."""
    last_user = max(i for i, m in enumerate(record.messages) if m["role"] == "user")
    queues: dict[str, list[str]] = {kind: [] for kind in MEDIA_TOKENS}
    for ref in record.media:
        queues[ref.kind].append(ref.path)
    out = []
    for message in record.messages[:last_user + 1]:
        if message["role"] != "user":
            out.append({"role": message["role"], "content": message["content"]})
            continue
        out.append({"role": "user", "content": _user_content(message["content"], queues, encoder)})
    return out


def _user_content(text: str, queues: dict[str, list[str]], encoder: MediaEncoder) -> str | list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    position = 0
    for match in _PLACEHOLDER.finditer(text):
        if text[position:match.start()]:
            parts.append({"type": "text", "text": text[position:match.start()]})
        kind = _KIND_OF_TOKEN[match.group()]
        if not queues[kind]:
            raise MediaUnsupported(f"a {match.group()} placeholder has no {kind} media entry")
        parts.extend(encoder.parts(kind, queues[kind].pop(0)))
        position = match.end()
    if not parts:
        return text  # text-only prompt (e.g. the no-image ablation): plain string content
    if text[position:]:
        parts.append({"type": "text", "text": text[position:]})
    return parts


# ------------------------------------------------------------------------------------------- option scoring

TOP_LOGPROBS = 20  # the most alternatives the OpenAI API returns per token


def closed_options(record: Record) -> list[str] | None:
    """The options of a closed question as presented (the label follows any re-ordering), else None."""
    options = record.label.get("options") if record.task_family == "closed_vqa" else None
    return [str(o) for o in options] if isinstance(options, list) and 1 < len(options) <= len(LETTERS) else None


def option_answers(record: Record, options: list[str]) -> list[str]:
    """Each option written the way the record's reference answer is written: "B. <option>" (letter style, the
    published one) or the option text alone."""
    reference = next((m["content"] for m in record.messages if m["role"] == "assistant"), "")
    letter_style = re.match(r"^\s*[A-F]\.\s", reference) is not None or not reference
    return [f"{LETTERS[i]}. {o}" if letter_style else o for i, o in enumerate(options)]


def softmax(logliks: list[float]) -> tuple[float, ...]:
    values = np.asarray(logliks, dtype=float)
    weights = np.exp(values - values.max())
    return tuple(float(w) for w in weights / weights.sum())


def letter_probabilities(top_logprobs: list[Any], n_options: int) -> tuple[float, ...] | None:
    """Option probabilities from the first answer token's `top_logprobs` (OpenAI chat completions): the mass of
    each option letter ("B", " B", "(B"), renormalised over the options. None when no option letter is among the
    returned alternatives (an answer that does not start with a letter)."""
    mass = np.zeros(n_options)
    for alt in top_logprobs:
        token = str(_field(alt, "token")).strip().lstrip("(").rstrip(".):")
        if len(token) == 1 and token in LETTERS[:n_options]:
            mass[LETTERS.index(token)] += float(np.exp(_field(alt, "logprob")))
    return tuple(float(m) for m in mass / mass.sum()) if mass.sum() > 0 else None


def _field(obj: Any, name: str) -> Any:
    return obj[name] if isinstance(obj, dict) else getattr(obj, name)


# ------------------------------------------------------------------------------------------- OpenAI endpoint


@dataclass(frozen=True)
class EndpointConfig(StrictConfig):
    section = "endpoint config"

    base_url: str
    model: str
    api_key_env: str | None = None  # None: no key is sent (local servers); never a silent OPENAI_API_KEY
    concurrency: int = 4
    timeout_s: float = 120.0
    max_retries: int = 4
    backoff_s: float = 1.0
    backoff_max_s: float = 30.0
    breastgpt_server: bool | None = None  # None: ask /v1/models
    volume_frames: int = 4

    def validate(self) -> None:
        if self.concurrency < 1 or self.max_retries < 0 or self.timeout_s <= 0 or self.volume_frames < 1:
            raise ConfigError("endpoint config: concurrency ≥ 1, max_retries ≥ 0, timeout_s > 0 and volume_frames ≥ 1 "
                              "are required")


def api_key(env: str | None) -> str:
    if env is None:
        return "EMPTY"
    key = os.environ.get(env, "")
    if not key:
        raise BenchDataError(f"API key: environment variable {env} is not set; export it, or leave out "
                             f"--api-key-env for a local endpoint that needs no key")
    return key


def bench_params(params: GenerationParams) -> GenerationParams:
    """`params` if a bench may use them: greedy decoding (temperature 0, top-p 1), so answers are reproducible and
    cached answers stay valid, and no option a bench client does not apply (stop sequences, penalties)."""
    usable = GenerationParams(max_new_tokens=params.max_new_tokens, seed=params.seed,
                              option_scores=params.option_scores)
    if params != usable:
        raise ValueError(f"bench runs decode greedily: temperature 0 and top_p 1, and set only max_new_tokens, seed "
                         f"and option_scores; got {params.as_record()}")
    return params


class OpenAIClient:
    """Bounded-concurrency chat completions with retries (429/5xx/timeouts, exponential backoff)."""

    def __init__(self, config: EndpointConfig, params: GenerationParams, corpus_root: Path, client: Any = None):
        import openai

        self.config, self.params = config, bench_params(params)
        self._client = client or openai.OpenAI(base_url=config.base_url, api_key=api_key(config.api_key_env),
                                               timeout=config.timeout_s, max_retries=0)
        self.model_name = config.model
        self.model_id = f"openai:{config.base_url}#{config.model}"
        server = config.breastgpt_server
        self.breastgpt_server = detect_breastgpt_server(self._client) if server is None else server
        self.encoder = MediaEncoder(Path(corpus_root), self.breastgpt_server, config.volume_frames)
        self.in_flight = 0
        self.max_in_flight = 0
        self._count_lock = threading.Lock()

    def describe(self) -> dict[str, Any]:
        cfg = self.config.to_dict()
        return {"kind": "openai", **cfg, "breastgpt_server": self.breastgpt_server}

    def media_policy(self) -> dict[str, Any]:
        if self.breastgpt_server:
            return {"endpoint": "breastgpt", "image": "png", "volume": "nifti", "slide": "features"}
        return {"endpoint": "generic", "image": "png", "volume": f"{self.config.volume_frames} frames png",
                "slide": "thumbnail png"}

    def answer_all(self, requests: list[Request], on_answer: OnAnswer) -> None:
        def work(request: Request) -> None:
            on_answer(request, self.answer(request))

        pool = ThreadPoolExecutor(max_workers=self.config.concurrency, thread_name_prefix="bench-req")
        try:
            for future in [pool.submit(work, r) for r in requests]:
                future.result()  # re-raise a failure of on_answer (the cache), which must stop the run
        finally:
            # on a failure or Ctrl-C, queued requests are dropped; only those in flight finish (and are cached)
            pool.shutdown(wait=True, cancel_futures=True)

    def answer(self, request: Request) -> Answer:
        started = time.perf_counter()
        try:
            messages = chat_messages(request.record, self.encoder)
        except (MedicalFileError, ValueError, OSError) as exc:  # unreadable media fail this item only
            return Answer(None, f"media: {exc}", time.perf_counter() - started, {})
        extra = {}
        if self.breastgpt_server and not any(m["role"] == "system" for m in messages):
            extra["stage"] = PROMPT_STAGE.get(request.record.stage)
        options = closed_options(request.record) if self.params.option_scores else None
        return self._complete(messages, extra, started, options)

    def _complete(self, messages: list[dict[str, Any]], extra: dict[str, Any], started: float,
                  options: list[str] | None = None) -> Answer:
        import openai

        p = self.params
        logprobs = {"logprobs": True, "top_logprobs": TOP_LOGPROBS} if options else {}
        for attempt in range(self.config.max_retries + 1):
            try:
                with self._counting():
                    reply = self._client.chat.completions.create(
                        model=self.config.model, messages=messages, temperature=p.temperature, top_p=p.top_p,
                        max_tokens=p.max_new_tokens, seed=p.seed, extra_body=extra or None, **logprobs)
            except (openai.APIConnectionError, openai.APIStatusError) as exc:
                status = getattr(exc, "status_code", None)
                retryable = status is None or status in RETRY_STATUSES or status >= 500
                if not retryable or attempt == self.config.max_retries:
                    return Answer(None, _describe_error(exc, attempt + 1), time.perf_counter() - started,
                                  {"attempts": attempt + 1})
                time.sleep(self._delay(attempt, exc))
                continue
            usage = reply.usage.model_dump() if getattr(reply, "usage", None) is not None else {}
            usage.update(finish_reason=reply.choices[0].finish_reason, attempts=attempt + 1)
            probs = _reply_option_probs(reply, len(options)) if options else None
            if options:
                usage["option_scores"] = "logprobs" if probs is not None else "unavailable"
            return Answer(reply.choices[0].message.content or "", None, time.perf_counter() - started, usage, probs)
        raise AssertionError("unreachable: the loop returns on its last attempt")

    def _delay(self, attempt: int, exc: Exception) -> float:
        response = getattr(exc, "response", None)
        header = response.headers.get("retry-after") if response is not None else None
        if header is not None:
            try:
                return min(float(header), self.config.backoff_max_s)
            except ValueError:
                pass  # an HTTP date: fall back to our own backoff
        return min(self.config.backoff_s * 2 ** attempt, self.config.backoff_max_s)

    def _counting(self) -> _InFlight:
        return _InFlight(self)


class _InFlight:
    def __init__(self, owner: OpenAIClient) -> None:
        self.owner = owner

    def __enter__(self) -> None:
        with self.owner._count_lock:
            self.owner.in_flight += 1
            self.owner.max_in_flight = max(self.owner.max_in_flight, self.owner.in_flight)

    def __exit__(self, *exc: object) -> None:
        with self.owner._count_lock:
            self.owner.in_flight -= 1


def _reply_option_probs(reply: Any, n_options: int) -> tuple[float, ...] | None:
    """Option probabilities from a chat completion's `logprobs` (absent when the endpoint does not return them)."""
    logprobs = getattr(reply.choices[0], "logprobs", None)
    content = getattr(logprobs, "content", None) if logprobs is not None else None
    if not content:
        return None
    first = next((t for t in content if str(_field(t, "token")).strip()), None)  # skip leading whitespace tokens
    alternatives = _field(first, "top_logprobs") if first is not None else None
    return letter_probabilities(alternatives or [], n_options)


def _describe_error(exc: Exception, attempts: int) -> str:
    status = getattr(exc, "status_code", None)
    where = f"HTTP {status}" if status is not None else type(exc).__name__
    return f"{where} after {attempts} attempt(s): {str(exc)[:300]}"


def detect_breastgpt_server(client: Any) -> bool:
    """True when the endpoint's /v1/models answer carries our `breastgpt` metadata key."""
    try:
        raw = client.models.with_raw_response.list()
        return isinstance(raw.http_response.json(), dict) and "breastgpt" in raw.http_response.json()
    except Exception:  # no /v1/models, auth, non-JSON: a generic endpoint as far as we can tell
        return False


# --------------------------------------------------------------------------------------------- local model


def checkpoint_fingerprint(folder: Path) -> str:
    """sha256 over every top-level file of the checkpoint (weights, config, tokenizer), names included."""
    h = hashlib.sha256()
    for path in sorted(p for p in Path(folder).iterdir() if p.is_file()):
        h.update(path.name.encode() + b"\x00")
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 22), b""):
                h.update(block)
    return h.hexdigest()


def trained_slide_mode(folder: Path) -> str:
    """How the checkpoint saw slides in training (`data.slide_mode` in its export manifest): a model trained on
    slide thumbnails (the comparator without a slide branch) is shown thumbnails; otherwise tile features."""
    try:
        manifest = json.loads((Path(folder) / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return "features"
    mode = manifest.get("config", {}).get("data", {}).get("slide_mode", "features")
    return mode if mode in ("features", "thumbnail") else "features"


class LocalClient:
    """A checkpoint loaded with `Engine.from_pretrained`, answering in left-padded batches."""

    def __init__(self, folder: Path, params: GenerationParams, corpus_root: Path, *, batch_size: int = 8,
                 device: str | None = None, engine: Any = None) -> None:
        from breastgpt.infer.engine import Engine

        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.folder, self.root, self.batch_size = Path(folder), Path(corpus_root), batch_size
        self.params = bench_params(params)
        self.engine = engine or Engine.from_pretrained(self.folder, device=device)
        from breastgpt.infer.records import preprocessing_agreement

        self.preprocessing = preprocessing_agreement(self.engine, self.root)
        self.fingerprint = checkpoint_fingerprint(self.folder)
        self.slide_mode = trained_slide_mode(self.folder)
        self.model_name = self.engine.name
        self.model_id = f"local:{self.folder.resolve()}@{self.fingerprint[:16]}"
        self.generate_calls = 0

    def describe(self) -> dict[str, Any]:
        return {"kind": "local", "folder": str(self.folder.resolve()), "fingerprint_sha256": self.fingerprint,
                "batch_size": self.batch_size, "device": str(self.engine.device), "preprocessing": self.preprocessing}

    def media_policy(self) -> dict[str, Any]:
        policy = {"endpoint": "local", "slide": self.slide_mode}
        if self.preprocessing["images"] == "prepared at load":  # the settings then shape what the model sees
            policy["images_prepared_with"] = self.engine.preprocessing.to_dict()
        return policy

    def _slide_dim(self) -> int | None:
        cfg = getattr(self.engine.model.config, "slide_config", None)
        return cfg.get("feature_dim") if isinstance(cfg, dict) else getattr(cfg, "feature_dim", None)

    def answer_all(self, requests: list[Request], on_answer: OnAnswer) -> None:
        for start in range(0, len(requests), self.batch_size):
            self._batch(requests[start:start + self.batch_size], on_answer)

    def _batch(self, batch: list[Request], on_answer: OnAnswer) -> None:
        from breastgpt.infer.records import preparation, record_conversation
        from breastgpt.model.configuration import slide_encoder_id

        ready, conversations = [], []
        for request in batch:
            try:
                conv = record_conversation(request.record, self.root, slide_dim=self._slide_dim(),
                                           slide_encoder=slide_encoder_id(self.engine.model.config),
                                           slide_mode=self.slide_mode,
                                           prepare=preparation(self.engine, self.preprocessing)).conversation
            except (MedicalFileError, ValueError, OSError) as exc:  # unreadable media: this item fails, not the batch
                on_answer(request, Answer(None, f"media: {exc}", 0.0, {}))
                continue
            ready.append(request)
            conversations.append(conv)
        if not ready:
            return
        p = self.params
        started = time.perf_counter()
        self.generate_calls += 1
        try:
            results = self.engine.generate(conversations, p)
        except RuntimeError as exc:  # e.g. out of memory on one long batch: recorded, retried by the next run
            for request in ready:
                on_answer(request, Answer(None, f"generate: {str(exc)[:300]}", 0.0, {"batch_size": len(ready)}))
            return
        probs = [self._option_probs(r, c) for r, c in zip(ready, conversations)] if p.option_scores else \
            [None] * len(ready)
        share = (time.perf_counter() - started) / len(ready)  # a batch's time, split evenly over its items
        for request, gen, option_probs in zip(ready, results, probs):
            usage = {"prompt_tokens": gen.prompt_tokens, "completion_tokens": gen.completion_tokens,
                     "finish_reason": gen.finish_reason, "batch_size": len(ready)}
            if option_probs is not None:
                usage["option_scores"] = "loglikelihood"
            on_answer(request, Answer(gen.text, None, share, usage, option_probs))

    def _option_probs(self, request: Request, conversation: Any) -> tuple[float, ...] | None:
        """Softmax over the options' log-likelihoods as the whole answer (`Engine.answer_loglikelihoods`)."""
        options = closed_options(request.record)
        if options is None:
            return None
        return softmax(self.engine.answer_loglikelihoods(conversation, option_answers(request.record, options)))


def _local_spec(rest: str) -> tuple[str, str] | None:
    return (rest, "") if rest else None


def _endpoint_spec(rest: str) -> tuple[str, str] | None:
    url, _, model = rest.rpartition("#")
    return (url.rstrip("/"), model) if url.startswith(("http://", "https://")) and model else None


@bench_client("local", "local:DIR (a checkpoint folder)", _local_spec)
def _local_client(where: str, model: str, run: Any) -> BenchClient:
    return LocalClient(Path(where), run.decoding(), run.root, batch_size=run.batch_size, device=run.device)


@bench_client("openai", "openai:URL#MODEL (e.g. openai:http://localhost:8000/v1#Qwen3-VL-8B-Instruct)",
              _endpoint_spec)
def _endpoint_client(where: str, model: str, run: Any) -> BenchClient:
    endpoint = EndpointConfig(base_url=where, model=model, api_key_env=run.api_key_env,
                              concurrency=run.concurrency, timeout_s=run.timeout_s, max_retries=run.max_retries,
                              backoff_s=run.backoff_s, breastgpt_server=run.breastgpt_server,
                              volume_frames=run.volume_frames)
    return OpenAIClient(endpoint, run.decoding(), run.root)
