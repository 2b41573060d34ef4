"""`bench run`: ask a model every bench question (and its shortcut ablations), resumable, scorable offline.

A run directory holds:
  responses.jsonl              full-variant answers (one `SavedResponse` per item), what `bench score` reads;
  responses_<variant>.jsonl    one file per ablation (no_image, shuffle_image, permute_options);
  judgements_<judge>.jsonl     LLM-judge scores of the open-ended answers, one file per `--judge`;
  bench_items.jsonl            the exact records that were run (after the split filter and --limit): pass it
                               to `bench score` (a published-format bench is stored here in our record layout);
  cache.sqlite                 every answer and failure as it arrived (see `cache.py`); the run resumes from it;
  run.json                     the manifest: bench sha256, model, decoding params, code version, counts, files.

Answers that failed are left out of the responses files (the scorer counts a missing full answer as wrong and
warns) and are asked again by the next run unless `retry_failed` is off. The responses files always describe
this invocation: an ablation not asked for now has no file (its answers stay in the cache).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import platform
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

from breastgpt.artifacts import code_version, sha256_file
from breastgpt.bench.ablations import ABLATIONS, AblationSet, Prompt, build_ablation_sets, full_set
from breastgpt.bench.cache import CacheKey, CachedAnswer, ResponseCache
from breastgpt.bench.clients import (Answer, BenchClient, LocalClient,
                                     Request, make_bench_client, parse_model_spec)
from breastgpt.bench.items import (BenchDataError, BenchItem, SavedResponse, item_from_record, response_to_dict,
                                   write_jsonl_atomic)
from breastgpt.bench.judge_controls import FamilyEvidence, checkpoint_family, family_from_name, model_family
from breastgpt.bench.published import import_published
from breastgpt.config import ConfigError, StrictConfig
from breastgpt.corpus.records import Record, RecordError, atomic_write_json, iter_jsonl
from breastgpt.corpus.splits import BENCH_SPLITS
from breastgpt.infer.params import GenerationParams

RUN_SCHEMA = "breastgpt.bench.run/1"
PROMPT_FORMAT = 1  # bump when the way a record becomes a request changes: cached answers then no longer match
MAX_LISTED_FAILURES = 50
Progress = Callable[[str, int, int], None]  # (phase, done, total)


@dataclass(frozen=True)
class RunConfig(StrictConfig):
    section = "run config"

    bench: Path
    model: str  # local:DIR | openai:URL#MODEL
    out: Path
    judges: tuple[str, ...] = ()  # openai:URL#MODEL each; every judge writes its own judgements file
    concurrency: int = 4
    ablations: tuple[str, ...] = ()
    corpus_root: Path | None = None  # default: the bench file's folder
    max_new_tokens: int = 256
    seed: int = 0  # decoding seed and the seed of the shuffle/permute ablations
    api_key_env: str | None = None
    # env vars of the judges' keys: none (local servers), one for every judge, or one per judge in --judge order
    judge_api_key_env: tuple[str, ...] = ()
    limit: int | None = None
    retry_failed: bool = True
    timeout_s: float = 120.0
    max_retries: int = 4
    backoff_s: float = 1.0
    breastgpt_server: bool | None = None
    batch_size: int = 8
    volume_frames: int = 4
    device: str | None = None
    # Embed open-ended answers and references into RUN_DIR/embeddings.sqlite once answered, so that `bench score`
    # finds every vector in the cache (docs/evaluation.md). Closed-only benches never load the embedding model.
    embeddings: bool = True
    # Probability of every option of closed questions: log-likelihoods of a local model, `logprobs` of an endpoint
    option_scores: bool = False

    def validate(self) -> None:
        bad = [a for a in self.ablations if a not in ABLATIONS]
        if bad:
            raise ConfigError(f"unknown ablations {bad}; choose from {', '.join(ABLATIONS.names())}")
        if len(set(self.ablations)) != len(self.ablations):
            raise ConfigError(f"ablations listed twice: {list(self.ablations)}")
        if self.limit is not None and self.limit < 1:
            raise ConfigError("limit must be at least 1")
        if self.concurrency < 1:
            raise ConfigError("concurrency must be at least 1")
        if isinstance(self.judge_api_key_env, str):  # one name, as from a config file
            object.__setattr__(self, "judge_api_key_env", (self.judge_api_key_env,))
        _check_judge_specs(self.judges)
        if len(self.judge_api_key_env) not in (0, 1, len(self.judges)):
            raise ConfigError(f"{len(self.judge_api_key_env)} judge key variables for {len(self.judges)} judges; give "
                              f"one for all judges or one per judge, in --judge order")

    @classmethod
    def prepare(cls, data: dict[str, Any], where: str) -> dict[str, Any]:
        data = dict(data)
        if isinstance(data.get("judge_api_key_env"), str):  # one name for every judge
            data["judge_api_key_env"] = [data["judge_api_key_env"]]
        return data

    @property
    def root(self) -> Path:
        return Path(self.corpus_root) if self.corpus_root is not None else Path(self.bench).parent

    def decoding(self) -> GenerationParams:
        return GenerationParams(max_new_tokens=self.max_new_tokens, seed=self.seed, option_scores=self.option_scores)


def _check_judge_specs(specs: tuple[str, ...]) -> None:
    from breastgpt.bench.judges import judgement_file

    files: dict[str, str] = {}
    for spec in specs:
        kind, _, model = parse_model_spec(spec)
        if kind != "openai":
            raise ValueError(f"judge {spec!r}: a judge is an endpoint, openai:URL#MODEL")
        name = judgement_file(model)
        if name in files:
            raise ValueError(f"judges {files[name]!r} and {spec!r} would both write {name}; give each judge once")
        files[name] = spec


# ------------------------------------------------------------------------------------------------ bench input


@dataclass
class BenchInput:
    records: list[Record]
    items: dict[str, BenchItem]
    format: str  # corpus-jsonl | published
    total: int  # records in the file
    skipped_non_bench: int
    import_summary: dict[str, Any] | None = None  # how a published file's fields were decided (published.py)


def load_bench(path: Path, corpus_root: Path, limit: int | None = None) -> BenchInput:
    """Our corpus records (split 'bench' kept) or a published BreastStage-Bench file (ms-swift layout)."""
    path = Path(path)
    if not path.is_file():
        raise BenchDataError(f"{path}: bench file not found; pass a bench JSONL or the published bench JSON")
    fmt = _bench_format(path)
    summary = None
    try:
        if fmt == "published":
            imported = import_published(path, split="bench", media_root=corpus_root)
            records, summary = imported.records, imported.summary
        else:
            records = [Record.from_dict(row) for row in iter_jsonl(path)]
    except (RecordError, KeyError, TypeError) as exc:
        raise BenchDataError(f"{path}: cannot read the bench ({exc})") from None
    bench = [r for r in records if r.split in BENCH_SPLITS]
    if not bench:
        raise BenchDataError(f"{path}: none of its {len(records)} records has split 'bench' or 'external'; export "
                             f"the bench split of the corpus")
    _check_unique(path, bench)
    chosen = bench[:limit] if limit else bench
    items = {r.id: _scorable(r, path) for r in chosen}
    return BenchInput(chosen, items, fmt, len(records), len(records) - len(bench), summary)


def _bench_format(path: Path) -> str:
    with open(path, encoding="utf-8") as fh:
        head = fh.read(4096).lstrip()
    if head.startswith("["):
        return "published"
    first = next(iter_jsonl(path), {})
    return "corpus-jsonl" if "patient_key" in first and "label" in first else "published"


def _check_unique(path: Path, records: list[Record]) -> None:
    seen: set[str] = set()
    for r in records:
        if r.id in seen:
            raise BenchDataError(f"{path}: duplicate record id {r.id!r}; bench ids must be unique")
        seen.add(r.id)


def _scorable(record: Record, path: Path) -> BenchItem:
    try:
        return item_from_record(record.to_dict(), str(path))
    except BenchDataError as exc:
        raise BenchDataError(f"{exc} (checked before asking the model: `bench score` could not score this "
                             f"run)") from None


# ----------------------------------------------------------------------------------------------------- hashes


def _canonical_sha(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def prompt_sha256(prompt: Prompt) -> str:
    """What the model is shown for this prompt: the messages up to the last user turn and the media files."""
    rec = prompt.record
    last_user = max(i for i, m in enumerate(rec.messages) if m["role"] == "user")
    return _canonical_sha({"messages": rec.messages[:last_user + 1], "stage": rec.stage,
                           "media": [[m.kind, m.path, m.sha256] for m in rec.media]})


def params_hash(params: GenerationParams, media_policy: dict[str, Any]) -> str:
    return _canonical_sha({"decoding": params.as_record(), "media": media_policy, "prompt_format": PROMPT_FORMAT})


# ----------------------------------------------------------------------------------------------------- clients


def make_client(config: RunConfig) -> BenchClient:
    return make_bench_client(config.model, config)


# -------------------------------------------------------------------------------------------------------- run


@dataclass
class VariantOutcome:
    ablation: AblationSet
    responses: list[SavedResponse]
    failures: dict[str, str]
    asked: int
    from_cache: int


def run_bench(config: RunConfig, client: BenchClient | None = None, progress: Progress | None = None,
              judges: list[Any] | None = None) -> dict[str, Any]:
    """Run the bench (and ablations, and the judges) into `config.out`; returns the run.json manifest.

    `judges` (objects with `config` and `score`, e.g. `judges.Judge`) replace the ones `config.judges` names."""
    out = Path(config.out)
    bench = load_bench(config.bench, config.root, config.limit)
    client = client or make_client(config)
    _check_out_dir(out, client.model_id)
    params = config.decoding()
    phash = params_hash(params, client.media_policy())
    sets = [full_set(bench.records)] + [s for a in config.ablations for s in build_ablation_sets(a, bench.records,
                                                                                                     config.seed)]
    outcomes = []
    with ResponseCache(out / "cache.sqlite") as cache:
        for ablation in sets:
            outcomes.append(_run_variant(ablation, client, cache, phash, params, config, progress))
        _write_outputs(out, bench, outcomes)
        embedding_info = fill_embedding_cache(out, bench, outcomes, progress) if config.embeddings else None
        judge_info = _run_judges(config, bench, outcomes[0], cache, client, phash, progress, judges)
    manifest = _manifest(config, bench, client, params, phash, outcomes, judge_info)
    if embedding_info is not None:
        manifest["embedding_cache"] = embedding_info
    atomic_write_json(out / "run.json", manifest)
    return manifest


def _check_out_dir(out: Path, model_id: str) -> None:
    previous = out / "run.json"
    if not previous.is_file():
        return
    try:
        old = json.loads(previous.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise BenchDataError(f"{previous}: unreadable run manifest ({exc}); remove it or use another --out") from None
    if old.get("model", {}).get("id") != model_id:
        raise BenchDataError(f"{out}: holds a run of {old.get('model', {}).get('id')!r}, not {model_id!r}; a run "
                             f"directory is scored as one model, so use another --out")


def _run_variant(ablation: AblationSet, client: BenchClient, cache: ResponseCache, phash: str,
                 params: GenerationParams, config: RunConfig, progress: Progress | None) -> VariantOutcome:
    keys = {p.item_id: CacheKey(p.item_id, client.model_id, phash, ablation.cache_key) for p in ablation.prompts}
    shas = {keys[p.item_id]: prompt_sha256(p) for p in ablation.prompts}
    cached = cache.get_many(keys.values())
    pending = [p for p in ablation.prompts if _needs_asking(cached.get(keys[p.item_id]), shas[keys[p.item_id]],
                                                           config.retry_failed)]
    done, total, lock = [len(ablation.prompts) - len(pending)], len(ablation.prompts), threading.Lock()
    if progress:
        progress(ablation.variant, done[0], total)

    def store(request: Request, answer: Answer) -> None:
        usage = answer.usage if answer.option_probs is None else {**answer.usage,
                                                                   "option_probs": list(answer.option_probs)}
        cache.put(CachedAnswer(request.tag, shas[request.tag], answer.text if answer.error is None else None,
                               answer.error, answer.latency_s, usage))
        with lock:
            done[0] += 1
            if progress:
                progress(ablation.variant, done[0], total)

    if pending:
        client.answer_all([Request(keys[p.item_id], p.record) for p in pending], store)
    return _collect(ablation, cache.get_many(keys.values()), keys, shas, client.model_name, params, len(pending))


def fill_embedding_cache(out: Path, bench: BenchInput, outcomes: list[VariantOutcome],
                         progress: Progress | None = None) -> dict[str, Any]:
    """Embed every reference answer and every non-empty answer to an item with one into RUN_DIR/embeddings.sqlite.

    The texts and the vectors are exactly those `scoring._add_embeddings` looks up (same model key, one vector per
    distinct text, padding by each text's own length), so scoring afterwards embeds nothing. Texts already stored
    are not embedded again: a resumed run pays only for new answers.
    """
    from breastgpt.bench.embedding_cache import embed_with_cache, open_run_cache
    from breastgpt.bench.text_metrics import embed_texts, packaged_embedding_model_path

    refs = {iid: item.answer for iid, item in bench.items.items() if item.answer is not None}
    texts = [refs[i] for i in sorted(refs)]
    texts += [r.response for o in outcomes for r in o.responses if r.item_id in refs and r.response.strip()]
    if not texts:
        return {"texts": 0, "embedded": 0}
    if progress:
        progress("embeddings", 0, len(texts))
    with open_run_cache(out, packaged_embedding_model_path()) as cache:
        _, stats = embed_with_cache(texts, cache, embed_texts)
    if progress:
        progress("embeddings", len(texts), len(texts))
    return {"texts": stats.texts, "distinct": stats.distinct, "from_cache": stats.from_cache,
            "embedded": stats.embedded, "seconds": round(stats.embed_s, 2)}


def _needs_asking(row: CachedAnswer | None, sha: str, retry_failed: bool) -> bool:
    if row is None or row.prompt_sha256 != sha:
        return True
    return not row.ok and retry_failed


def _collect(ablation: AblationSet, rows: dict[CacheKey, CachedAnswer], keys: dict[str, CacheKey],
             shas: dict[CacheKey, str], model_name: str, params: GenerationParams, asked: int) -> VariantOutcome:
    responses, failures = [], {}
    for p in ablation.prompts:
        row = rows.get(keys[p.item_id])
        if row is None or row.prompt_sha256 != shas[keys[p.item_id]]:
            failures[p.item_id] = "not answered"  # only when retry is off and the prompt changed
        elif not row.ok:
            failures[p.item_id] = str(row.error)
        else:
            probs = row.usage.get("option_probs")
            responses.append(SavedResponse(item_id=p.item_id, response=row.response or "", model=model_name,
                                           variant=p.variant, params=params.as_record(), option_order=p.option_order,
                                           option_probs=None if probs is None else tuple(probs)))
    return VariantOutcome(ablation, responses, failures, asked, len(ablation.prompts) - asked)


def responses_file(variant: str) -> str:
    return "responses.jsonl" if variant == "full" else f"responses_{variant}.jsonl"


def _write_outputs(out: Path, bench: BenchInput, outcomes: list[VariantOutcome]) -> None:
    write_jsonl_atomic(out / "bench_items.jsonl", (r.to_dict() for r in bench.records))
    written = set()
    for o in outcomes:
        name = responses_file(o.ablation.variant)
        write_jsonl_atomic(out / name, (response_to_dict(r) for r in o.responses))
        written.add(name)
    for stale in out.glob("responses*.jsonl"):
        if stale.name not in written:
            stale.unlink()  # an ablation not asked for now: its answers stay in the cache


# ------------------------------------------------------------------------------------------------------ judge


def _run_judges(config: RunConfig, bench: BenchInput, full: VariantOutcome, cache: ResponseCache,
                client: BenchClient, phash: str, progress: Progress | None,
                judges: list[Any] | None) -> list[dict[str, Any]]:
    """Every judge scores the open-ended full answers into its own file; files of judges not asked now go."""
    from breastgpt.bench.judges import JUDGEMENT_GLOB, judgement_file

    judges = judges_from_config(config) if judges is None else judges
    out = Path(config.out)
    written = {judgement_file(j.config.model) for j in judges}
    if len(written) != len(judges):
        raise BenchDataError(f"two judges share a model name; their judgement files would collide: "
                             f"{[j.config.model for j in judges]}")
    summaries = [_run_judge(config, bench, full, cache, client, phash, progress, j) for j in judges]
    for stale in out.glob(JUDGEMENT_GLOB):
        if stale.name not in written:
            stale.unlink()  # a judge not asked for now: its scores stay in the cache
    return summaries


def judges_from_config(config: RunConfig) -> list[Any]:
    """One `Judge` per `--judge`, each with its key variable (one for all, or one per judge in order)."""
    from breastgpt.bench.judges import Judge, JudgeConfig

    keys, out = config.judge_api_key_env, []
    for n, spec in enumerate(config.judges):
        _, url, model = parse_model_spec(spec)
        key = keys[n] if len(keys) > 1 else keys[0] if keys else None
        out.append(Judge(JudgeConfig(base_url=url, model=model, api_key_env=key)))
    return out


def _run_judge(config: RunConfig, bench: BenchInput, full: VariantOutcome, cache: ResponseCache,
               client: BenchClient, phash: str, progress: Progress | None, judge: Any) -> dict[str, Any]:
    from breastgpt.bench.judges import JudgeScore, judgement_file, save_judgements

    jc = judge.config
    judge_id = f"{jc.base_url}#{jc.model}|{jc.prompt_version}|{jc.rubric}"
    candidate = f"{client.model_id}|{phash}"
    todo = [r for r in full.responses if bench.items[r.item_id].answer is not None]
    stored = cache.get_judgements(candidate, judge_id)
    sha = {r.item_id: hashlib.sha256(r.response.encode()).hexdigest() for r in todo}
    pending = [r for r in todo if not _judgement_reusable(stored.get(r.item_id), sha[r.item_id], config.retry_failed)]
    done = [len(todo) - len(pending)]
    lock = threading.Lock()
    phase = f"judge {jc.model}"

    def work(response: SavedResponse) -> None:
        score = judge.score(bench.items[response.item_id], response)
        cache.put_judgement(response.item_id, candidate, judge_id, sha[response.item_id], asdict(score),
                            ok=score.status != "error")
        with lock:
            done[0] += 1
            if progress:
                progress(phase, done[0], len(todo))

    pool = ThreadPoolExecutor(max_workers=config.concurrency, thread_name_prefix="bench-judge")
    try:
        for future in [pool.submit(work, r) for r in pending]:
            future.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    stored = cache.get_judgements(candidate, judge_id)
    scores = [JudgeScore(**stored[r.item_id][1]) for r in todo if r.item_id in stored]
    name = judgement_file(jc.model)
    save_judgements(Path(config.out) / name, scores)
    statuses = [s.status for s in scores]
    return {"model": jc.model, "base_url": jc.base_url, "prompt_version": jc.prompt_version, "rubric": jc.rubric,
            "file": name, "judged": len(scores), "asked": len(pending), "ok": statuses.count("ok"),
            "unparseable": statuses.count("unparseable"), "error": statuses.count("error")}


def _judgement_reusable(row: tuple[str, dict[str, Any], bool] | None, sha: str, retry_failed: bool) -> bool:
    if row is None or row[0] != sha:
        return False
    return row[2] or not retry_failed


# --------------------------------------------------------------------------------------------------- manifest


def candidate_family_of(client: BenchClient) -> FamilyEvidence:
    """The candidate's model family for the judge check: a local checkpoint's base-model config, a BreastGPT
    server's own family, otherwise the endpoint's model name."""
    folder = getattr(client, "folder", None)
    if isinstance(client, LocalClient) and folder is not None:
        return checkpoint_family(Path(folder))
    if client.describe().get("breastgpt_server"):
        return FamilyEvidence(model_family("breastgpt"), "BreastGPT server (built on Qwen3-VL)")
    return family_from_name(client.model_name)


def circular_cost(bench: BenchInput, outcomes: list[VariantOutcome]) -> dict[str, Any] | None:
    """What circular evaluation added: the rotation prompts, against the closed items' one prompt each."""
    rotations = [o for o in outcomes if o.ablation.variant.startswith("circular_")]
    if not rotations:
        return None
    closed = sum(1 for r in bench.records if r.task_family == "closed_vqa")
    extra = sum(len(o.ablation.prompts) for o in rotations)
    return {"rotations": len(rotations), "closed_items": closed, "extra_prompts": extra,
            "closed_cost_factor": round((closed + extra) / closed, 3) if closed else None,
            "text": f"circular evaluation asked {extra} extra prompts ({len(rotations)} rotations): closed items "
                    f"cost {(closed + extra) / max(closed, 1):.1f}x a single pass"}


def _manifest(config: RunConfig, bench: BenchInput, client: BenchClient, params: GenerationParams, phash: str,
              outcomes: list[VariantOutcome], judges: list[dict[str, Any]]) -> dict[str, Any]:
    out = Path(config.out)
    variants = {}
    for o in outcomes:
        name = responses_file(o.ablation.variant)
        failures = sorted(o.failures.items())
        variants[o.ablation.variant] = {
            "file": name, "sha256": sha256_file(out / name), "ablation_key": o.ablation.cache_key,
            **o.ablation.counts(), "answered": len(o.responses), "failed": len(o.failures),
            "asked_this_run": o.asked, "from_cache": o.from_cache,
            "failures": [{"item_id": i, "error": e} for i, e in failures[:MAX_LISTED_FAILURES]]}
    return {
        "schema": RUN_SCHEMA, "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "code_version": code_version(), "python": platform.python_version(), "platform": platform.platform(),
        "bench": {"path": str(Path(config.bench).resolve()), "sha256": sha256_file(Path(config.bench)),
                  "format": bench.format, "records_in_file": bench.total,
                  "skipped_non_bench": bench.skipped_non_bench, "limit": config.limit,
                  "import": bench.import_summary,
                  "items_run": len(bench.records), "items_file": "bench_items.jsonl",
                  "items_sha256": sha256_file(out / "bench_items.jsonl"), "corpus_root": str(config.root.resolve())},
        "model": {"spec": config.model, "name": client.model_name, "id": client.model_id, **client.describe(),
                  "family": candidate_family_of(client).as_dict()},
        "decoding": params.as_record(), "media_policy": client.media_policy(), "params_hash": phash,
        "prompt_format": PROMPT_FORMAT, "ablations": list(config.ablations), "ablation_seed": config.seed,
        "variants": variants, "judges": judges, "circular_cost": circular_cost(bench, outcomes),
        "option_scores": params.option_scores,
        "counts": {"asked_this_run": sum(o.asked for o in outcomes),
                   "failed": sum(len(o.failures) for o in outcomes),
                   "answered": sum(len(o.responses) for o in outcomes)},
        "cache": "cache.sqlite",
    }
