"""Response cache of a bench run: one SQLite row per (item, model, decoding params, ablation).

The cache is what makes a long run resumable: every answer is committed the moment it arrives, so a run that is
killed (Ctrl-C, SIGKILL, a lost node) restarts without asking the model again for what it already answered.
Failed requests are stored too, with their error, so a report can say what failed and the next run can retry
them. WAL journaling lets a reader (e.g. `sqlite3 cache.sqlite`) look at a run in progress.

Each row also stores the sha256 of the prompt it answered; when the bench file changes an item's text or media
under the same id, the stored answer no longer matches and the runner asks again.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from breastgpt.bench.sqlite_store import SqliteStore

SCHEMA_VERSION = "1"

_DDL = (
    """CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS responses (
        item_id TEXT NOT NULL, model_id TEXT NOT NULL, params_hash TEXT NOT NULL, ablation TEXT NOT NULL,
        prompt_sha256 TEXT NOT NULL, response TEXT, error TEXT, latency_s REAL NOT NULL, usage TEXT NOT NULL,
        attempts INTEGER NOT NULL, updated TEXT NOT NULL,
        PRIMARY KEY (item_id, model_id, params_hash, ablation))""",
    """CREATE TABLE IF NOT EXISTS judgements (
        item_id TEXT NOT NULL, candidate_key TEXT NOT NULL, judge_id TEXT NOT NULL, response_sha256 TEXT NOT NULL,
        payload TEXT NOT NULL, ok INTEGER NOT NULL, updated TEXT NOT NULL,
        PRIMARY KEY (item_id, candidate_key, judge_id))""",
)


@dataclass(frozen=True)
class CacheKey:
    item_id: str
    model_id: str
    params_hash: str
    ablation: str  # variant plus its seed, e.g. "full", "shuffle_image:seed=0"


@dataclass(frozen=True)
class CachedAnswer:
    """One stored model answer; exactly one of `response` and `error` is set."""

    key: CacheKey
    prompt_sha256: str
    response: str | None
    error: str | None
    latency_s: float
    usage: dict[str, Any] = field(default_factory=dict)
    attempts: int = 1

    @property
    def ok(self) -> bool:
        return self.error is None


class ResponseCache(SqliteStore):
    """Thread-safe: worker threads store their own answers, so an answer is on disk before the next request."""

    schema_version = SCHEMA_VERSION
    ddl = _DDL
    kind = "bench response cache"
    unusable_hint = "move it away to start a fresh run, or point --out at another folder"
    schema_hint = "use a new --out folder (answers in the old one stay readable by its version)"
    synchronous_normal = True

    def __init__(self, path: Path) -> None:
        super().__init__(Path(path))

    # -------------------------------------------------------------------------------------------- responses

    def put(self, answer: CachedAnswer) -> None:
        """Store (or replace) one answer; `attempts` counts how many times the item was asked in all runs."""
        k = answer.key
        with self._lock:
            self._db.execute(
                """INSERT INTO responses VALUES (?,?,?,?,?,?,?,?,?,1,?)
                   ON CONFLICT (item_id, model_id, params_hash, ablation) DO UPDATE SET
                     prompt_sha256=excluded.prompt_sha256, response=excluded.response, error=excluded.error,
                     latency_s=excluded.latency_s, usage=excluded.usage, attempts=responses.attempts + 1,
                     updated=excluded.updated""",
                (k.item_id, k.model_id, k.params_hash, k.ablation, answer.prompt_sha256, answer.response,
                 answer.error, float(answer.latency_s), json.dumps(answer.usage, sort_keys=True), _now()))

    def get_many(self, keys: Iterable[CacheKey]) -> dict[CacheKey, CachedAnswer]:
        """The stored answers among `keys` (absent keys are left out)."""
        wanted = set(keys)
        groups = {(k.model_id, k.params_hash, k.ablation) for k in wanted}
        out: dict[CacheKey, CachedAnswer] = {}
        with self._lock:
            for model_id, params_hash, ablation in sorted(groups):
                rows = self._db.execute(
                    "SELECT item_id, prompt_sha256, response, error, latency_s, usage, attempts FROM responses "
                    "WHERE model_id=? AND params_hash=? AND ablation=?", (model_id, params_hash, ablation))
                for item_id, prompt, response, error, latency, usage, attempts in rows:
                    key = CacheKey(item_id, model_id, params_hash, ablation)
                    if key in wanted:
                        out[key] = CachedAnswer(key, prompt, response, error, latency, json.loads(usage), attempts)
        return out

    def count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM responses").fetchone()[0])

    # ------------------------------------------------------------------------------------------- judgements

    def put_judgement(self, item_id: str, candidate_key: str, judge_id: str, response_sha256: str,
                      payload: dict[str, Any], ok: bool) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO judgements VALUES (?,?,?,?,?,?,?)",
                             (item_id, candidate_key, judge_id, response_sha256,
                              json.dumps(payload, sort_keys=True), int(ok), _now()))

    def get_judgements(self, candidate_key: str, judge_id: str) -> dict[str, tuple[str, dict[str, Any], bool]]:
        """item id -> (sha256 of the judged response, stored judgement, whether it succeeded)."""
        with self._lock:
            rows = self._db.execute("SELECT item_id, response_sha256, payload, ok FROM judgements "
                                    "WHERE candidate_key=? AND judge_id=?", (candidate_key, judge_id)).fetchall()
        return {item: (sha, json.loads(payload), bool(ok)) for item, sha, payload, ok in rows}


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
