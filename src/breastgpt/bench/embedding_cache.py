"""Content-addressed store of sentence embeddings, kept in a run directory as `embeddings.sqlite`.

Embedding the open-ended answers is the slow part of scoring on a CPU (a small BERT over thousands of texts),
and it is the same work every time a run is re-scored. The store keeps one vector per (model key, text sha256):

- the model key is the sha256 of the model's weights, tokenizer and sentence-transformers config files plus the
  embedding settings (`EMBEDDING_SETTINGS`: normalisation, dtype, how batches are formed); a different model, a
  changed file or a changed setting gives another key, so its vectors are never mixed with these;
- vectors are stored as the exact float32 bytes the model produced, so scores computed from the store are
  bit-identical to the scores of the run that filled it (`tests/bench/test_embedding_cache.py`);
- each distinct text is embedded once per model, however many answers or references repeat it.

Writes are SQLite transactions (a crash leaves the old or the new rows, never half a vector); WAL journaling and
a lock let `bench run` worker threads add vectors while answers arrive. The store is derived data: deleting it
only costs the time to embed again.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from breastgpt.artifacts import sha256_file
from breastgpt.bench.sqlite_store import SqliteStore

SCHEMA_VERSION = "1"
FILE_NAME = "embeddings.sqlite"
# What, besides the model files, decides the vector of a text (`text_metrics.embed_texts`). Bump `padding` if the
# way texts are padded changes: padding changes the last bits of a vector, so old vectors must not be reused.
EMBEDDING_SETTINGS = {"normalize_embeddings": True, "dtype": "float32", "padding": "own-length-next-multiple-of-8/1"}
# Files of a sentence-transformers folder that decide its output (README, licences and training notes do not).
MODEL_FILES = ("model.safetensors", "config.json", "tokenizer.json", "tokenizer_config.json", "vocab.txt",
               "special_tokens_map.json", "modules.json", "sentence_bert_config.json",
               "config_sentence_transformers.json", "1_Pooling/config.json")

log = logging.getLogger(__name__)

_DDL = ("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        """CREATE TABLE IF NOT EXISTS embeddings (
             model_key TEXT NOT NULL, text_sha256 TEXT NOT NULL, dim INTEGER NOT NULL, vector BLOB NOT NULL,
             PRIMARY KEY (model_key, text_sha256))""")


def text_sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def model_key(model_dir: Path, settings: dict[str, object] | None = None) -> str:
    """sha256 over the model folder's output-deciding files and the embedding settings."""
    model_dir = Path(model_dir)
    if not (model_dir / "model.safetensors").is_file():
        raise FileNotFoundError(f"{model_dir} holds no model.safetensors")
    stamps = tuple((name, (model_dir / name).stat().st_size, (model_dir / name).stat().st_mtime_ns)
                   for name in MODEL_FILES if (model_dir / name).is_file())
    return _model_key(str(model_dir.resolve()), stamps, json.dumps(settings or EMBEDDING_SETTINGS, sort_keys=True))


@functools.lru_cache(maxsize=8)
def _model_key(model_dir: str, stamps: tuple[tuple[str, int, int], ...], settings: str) -> str:
    # Hashing ~90 MB of weights takes a fraction of a second; memoised per process on (size, mtime) of each file.
    files = {name: sha256_file(Path(model_dir) / name) for name, _, _ in stamps}
    return hashlib.sha256(json.dumps({"files": files, "settings": settings}, sort_keys=True).encode()).hexdigest()


@dataclass
class CacheStats:
    """What one `embed_with_cache` call did: texts asked for, distinct texts, vectors found, vectors embedded."""

    texts: int = 0
    distinct: int = 0
    from_cache: int = 0
    embedded: int = 0
    embed_s: float = 0.0


class EmbeddingCache(SqliteStore):
    """Vectors by (model key, text sha256); `path=None` keeps them in memory for this process only."""

    schema_version = SCHEMA_VERSION
    ddl = _DDL
    kind = "embedding cache"
    unusable_hint = "it holds derived data only, so delete it and score again"
    schema_hint = "delete the file (derived data) and score again"

    def __init__(self, path: Path | None, model_key: str) -> None:
        self.model_key = model_key
        super().__init__(path)

    def get_many(self, shas: Sequence[str]) -> dict[str, np.ndarray]:
        """Stored float32 vectors for those of `shas` this model has (absent ones are left out)."""
        wanted = set(shas)
        with self._lock:
            rows = self._db.execute("SELECT text_sha256, dim, vector FROM embeddings WHERE model_key = ?",
                                    (self.model_key,)).fetchall()
        return {sha: np.frombuffer(blob, dtype="<f4", count=dim) for sha, dim, blob in rows if sha in wanted}

    def put_many(self, shas: Sequence[str], vectors: np.ndarray) -> None:
        """Store vectors (one row each) in one transaction; an existing (model, text) row is left as it is."""
        vectors = np.ascontiguousarray(vectors, dtype="<f4")
        if vectors.ndim != 2 or len(shas) != len(vectors):
            raise ValueError(f"{len(shas)} texts for vectors of shape {vectors.shape}")
        rows = [(self.model_key, sha, vectors.shape[1], vectors[i].tobytes()) for i, sha in enumerate(shas)]
        with self._lock:
            self._db.execute("BEGIN")
            self._db.executemany("INSERT OR IGNORE INTO embeddings VALUES (?,?,?,?)", rows)
            self._db.execute("COMMIT")

    def count(self) -> int:
        """Vectors stored for this model key."""
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM embeddings WHERE model_key = ?",
                                        (self.model_key,)).fetchone()[0])


def embed_with_cache(texts: Sequence[str], cache: EmbeddingCache,
                     embed: Callable[[list[str]], np.ndarray]) -> tuple[np.ndarray, CacheStats]:
    """One float32 row per text: stored vectors where the cache has them, `embed` (called once, with the
    distinct missing texts only) for the rest, which are stored before returning."""
    distinct = list(dict.fromkeys(texts))
    shas = [text_sha256(t) for t in distinct]
    found = cache.get_many(shas)
    missing = [k for k, sha in enumerate(shas) if sha not in found]
    stats = CacheStats(texts=len(texts), distinct=len(distinct), from_cache=len(found), embedded=len(missing))
    if missing:
        start = time.perf_counter()
        vectors = np.asarray(embed([distinct[k] for k in missing]), dtype="<f4")
        stats.embed_s = time.perf_counter() - start
        cache.put_many([shas[k] for k in missing], vectors)
        found.update(cache.get_many([shas[k] for k in missing]))  # read back: every score comes from stored bytes
    if not distinct:
        return np.zeros((0, 0), np.float32), stats
    row_of = {text: k for k, text in enumerate(distinct)}
    matrix = np.stack([found[sha] for sha in shas])
    return matrix[[row_of[t] for t in texts]], stats


def open_run_cache(run_dir: Path, model_dir: Path) -> EmbeddingCache:
    """The run directory's store for this model; in memory (with a warning) when the folder is read-only."""
    key = model_key(model_dir)
    run_dir = Path(run_dir)
    if not os.access(run_dir, os.W_OK):
        log.warning("%s is not writable: embeddings are kept in memory and computed again next time", run_dir)
        return EmbeddingCache(None, key)
    return EmbeddingCache(run_dir / FILE_NAME, key)
