"""A small SQLite file shared by threads: the bench's response cache and embedding cache.

One connection (autocommit, WAL for a file, a 30 s busy timeout) guarded by a lock, the store's tables created if
absent, and a `meta` table whose `schema` row must match the code's version, so a file written by another version
is refused with the store's own advice instead of being misread.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any

from breastgpt.bench.items import BenchDataError


class SqliteStore:
    schema_version = "1"
    ddl: tuple[str, ...] = ()  # must create `meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)`
    unusable_hint = "move it away and start again"  # after "not a usable <kind> (<error>); "
    schema_hint = "use a new file"  # after "schema X, this code writes Y; "
    kind = "store"
    synchronous_normal = False  # PRAGMA synchronous=NORMAL (WAL stays consistent; the last commits may be lost)

    def __init__(self, path: Path | None) -> None:
        self.path = None if path is None else Path(path)
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(":memory:" if self.path is None else self.path, check_same_thread=False,
                                       isolation_level=None, timeout=30)
            if self.path is not None:
                self._db.execute("PRAGMA journal_mode=WAL")
                if self.synchronous_normal:
                    self._db.execute("PRAGMA synchronous=NORMAL")
            for statement in self.ddl:
                self._db.execute(statement)
            self._check_schema()
        except sqlite3.DatabaseError as exc:
            raise BenchDataError(f"{self.path}: not a usable {self.kind} ({exc}); {self.unusable_hint}") from None

    def _check_schema(self) -> None:
        row = self._db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
        if row is None:
            self._db.execute("INSERT INTO meta VALUES ('schema', ?)", (self.schema_version,))
        elif row[0] != self.schema_version:
            raise BenchDataError(f"{self.path}: {self.kind} schema {row[0]!r}, this code writes "
                                 f"{self.schema_version!r}; {self.schema_hint}")

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            self._db.close()


__all__ = ["SqliteStore"]
