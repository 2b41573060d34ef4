"""The bench response cache: round-trips, attempts, failures, WAL, concurrent writers, bad files."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from breastgpt.bench.cache import CacheKey, CachedAnswer, ResponseCache
from breastgpt.bench.items import BenchDataError


def _key(item: str, ablation: str = "full") -> CacheKey:
    return CacheKey(item, "openai:http://x/v1#m", "ph", ablation)


def test_round_trip_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    with ResponseCache(path) as cache:
        cache.put(CachedAnswer(_key("a"), "sha-a", "B", None, 0.25, {"completion_tokens": 3}))
        cache.put(CachedAnswer(_key("b"), "sha-b", None, "HTTP 503 after 5 attempt(s)", 1.5, {"attempts": 5}))
        cache.put(CachedAnswer(_key("a", "no_image"), "sha-a2", "C", None, 0.1, {}))
    with ResponseCache(path) as cache:
        got = cache.get_many([_key("a"), _key("b"), _key("c"), _key("a", "no_image")])
        assert set(got) == {_key("a"), _key("b"), _key("a", "no_image")} and cache.count() == 3
        a, b = got[_key("a")], got[_key("b")]
        assert (a.response, a.error, a.ok, a.latency_s, a.usage, a.prompt_sha256) == (
            "B", None, True, 0.25, {"completion_tokens": 3}, "sha-a")
        assert (b.response, b.ok, b.error) == (None, False, "HTTP 503 after 5 attempt(s)")
        assert got[_key("a", "no_image")].response == "C"


def test_replacing_a_row_counts_attempts(tmp_path: Path) -> None:
    with ResponseCache(tmp_path / "c.sqlite") as cache:
        cache.put(CachedAnswer(_key("a"), "s", None, "timeout", 1.0, {}))
        cache.put(CachedAnswer(_key("a"), "s", "A", None, 0.5, {}))
        row = cache.get_many([_key("a")])[_key("a")]
        assert (row.attempts, row.response, row.error, cache.count()) == (2, "A", None, 1)


def test_wal_journal_is_used(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    with ResponseCache(path) as cache:
        cache.put(CachedAnswer(_key("a"), "s", "A", None, 0.0, {}))
        # a second connection reads committed rows while the writer is still open
        other = sqlite3.connect(path)
        assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert other.execute("SELECT response FROM responses").fetchall() == [("A",)]
        other.close()


def test_many_threads_write_every_row(tmp_path: Path) -> None:
    with ResponseCache(tmp_path / "c.sqlite") as cache:
        def write(t: int) -> None:
            for i in range(25):
                cache.put(CachedAnswer(_key(f"{t}-{i}"), "s", f"answer {t}-{i}", None, 0.0, {}))

        threads = [threading.Thread(target=write, args=(t,)) for t in range(16)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        rows = cache.get_many([_key(f"{t}-{i}") for t in range(16) for i in range(25)])
        assert len(rows) == 400 and all(r.response == f"answer {k.item_id}" for k, r in rows.items())


def test_judgements_round_trip(tmp_path: Path) -> None:
    with ResponseCache(tmp_path / "c.sqlite") as cache:
        cache.put_judgement("o1", "cand", "judge", "sha", {"score": 7, "status": "ok"}, ok=True)
        cache.put_judgement("o2", "cand", "judge", "sha2", {"score": None, "status": "error"}, ok=False)
        cache.put_judgement("o1", "cand", "other-judge", "sha", {"score": 1}, ok=True)
        assert cache.get_judgements("cand", "judge") == {"o1": ("sha", {"score": 7, "status": "ok"}, True),
                                                         "o2": ("sha2", {"score": None, "status": "error"}, False)}


def test_a_file_that_is_not_sqlite_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    path.write_bytes(b"this is not a database, just some text " * 100)
    with pytest.raises(BenchDataError, match=r"c\.sqlite: not a usable bench response cache"):
        ResponseCache(path)


def test_schema_mismatch_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    ResponseCache(path).close()
    db = sqlite3.connect(path)
    db.execute("UPDATE meta SET value = '0' WHERE key = 'schema'")
    db.commit()
    db.close()
    with pytest.raises(BenchDataError, match="cache schema '0'"):
        ResponseCache(path)
