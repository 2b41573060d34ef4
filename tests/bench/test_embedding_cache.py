"""Embedding cache: hits and misses, one embedding per distinct text, invalidation, bit-identical re-scoring."""

from __future__ import annotations

import numpy as np
import pytest

from breastgpt.bench import embedding_cache, text_metrics
from breastgpt.bench.embedding_cache import EmbeddingCache, embed_with_cache, model_key, text_sha256
from breastgpt.bench.items import BenchDataError, item_from_record, write_jsonl_atomic
from breastgpt.bench.scoring import ScoreConfig, load_run, score_responses
from tests.bench.helpers import open_record


class CountingEmbedder:
    """Deterministic stand-in for the sentence model: records every list of texts it is asked to embed."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def __call__(self, texts: list[str]) -> np.ndarray:
        self.calls.append(list(texts))
        rng = [np.random.default_rng(int(text_sha256(t)[:8], 16)) for t in texts]
        return np.stack([r.standard_normal(8).astype(np.float32) for r in rng])


def test_distinct_texts_embedded_once_then_served_from_cache(tmp_path):
    embed = CountingEmbedder()
    with EmbeddingCache(tmp_path / "e.sqlite", "model-a") as cache:
        first, stats = embed_with_cache(["a", "b", "a", "a"], cache, embed)
        assert embed.calls == [["a", "b"]]
        assert (stats.texts, stats.distinct, stats.from_cache, stats.embedded) == (4, 2, 0, 2)
        assert np.array_equal(first[0], first[2]) and first.dtype == np.float32 and first.shape == (4, 8)
        second, stats = embed_with_cache(["b", "c", "a"], cache, embed)
        assert embed.calls[1:] == [["c"]]
        assert (stats.from_cache, stats.embedded) == (2, 1)
        assert np.array_equal(second[0], first[1]) and np.array_equal(second[2], first[0])
        assert cache.count() == 3
    with EmbeddingCache(tmp_path / "e.sqlite", "model-a") as reopened:  # persisted, bit for bit
        third, stats = embed_with_cache(["a", "b", "c"], reopened, embed)
        assert len(embed.calls) == 2 and stats.embedded == 0
        assert np.array_equal(third, np.stack([first[0], first[1], second[1]]))


def test_other_model_key_misses(tmp_path):
    embed = CountingEmbedder()
    with EmbeddingCache(tmp_path / "e.sqlite", "model-a") as cache:
        embed_with_cache(["a", "b"], cache, embed)
    with EmbeddingCache(tmp_path / "e.sqlite", "model-b") as cache:
        _, stats = embed_with_cache(["a", "b"], cache, embed)
        assert stats.embedded == 2 and embed.calls[-1] == ["a", "b"]


def _fake_model_dir(path):
    path.mkdir()
    (path / "model.safetensors").write_bytes(b"weights-1")
    (path / "config.json").write_text('{"hidden_size": 8}')
    (path / "README.md").write_text("notes")
    return path


def test_model_key_follows_weights_config_and_settings(tmp_path):
    folder = _fake_model_dir(tmp_path / "m")
    key = model_key(folder)
    assert model_key(folder) == key and len(key) == 64
    (folder / "README.md").write_text("other notes")  # not an output-deciding file
    assert model_key(folder) == key
    (folder / "model.safetensors").write_bytes(b"weights-2")
    changed_weights = model_key(folder)
    assert changed_weights != key
    (folder / "config.json").write_text('{"hidden_size": 16}')
    assert model_key(folder) not in (key, changed_weights)
    other_settings = {**embedding_cache.EMBEDDING_SETTINGS, "normalize_embeddings": False}
    assert model_key(folder, other_settings) != model_key(folder)
    with pytest.raises(FileNotFoundError):
        model_key(tmp_path)


def test_unusable_cache_file_is_a_clear_error(tmp_path):
    (tmp_path / "e.sqlite").write_bytes(b"not a database" * 100)
    with pytest.raises(BenchDataError, match="delete it"):
        EmbeddingCache(tmp_path / "e.sqlite", "k")


def test_vector_does_not_depend_on_batch_companions():
    sizes = [f"An oval mass of {k} mm in the {side} breast." for k in range(5, 40, 3) for side in ("left", "right")]
    texts = sizes + ["No suspicious abnormality is seen.", "Calcifications in the upper outer quadrant, BI-RADS 4."]
    model = text_metrics.load_embedding_model()
    padded = text_metrics.padded_lengths(text_metrics.token_counts(model, texts))
    assert np.bincount(padded).max() >= 8  # several texts share a batch, next to texts of other lengths
    together = text_metrics.embed_texts(texts)
    alone = np.stack([text_metrics.embed_texts([t])[0] for t in texts])
    assert np.array_equal(together, alone)  # bit for bit: a text's padding depends on its own length only
    assert np.array_equal(text_metrics.embed_texts(texts[::-1]), together[::-1])
    assert np.allclose(np.linalg.norm(together, axis=1), 1.0, atol=1e-6)
    reference = model.encode(texts, normalize_embeddings=True)
    assert np.abs(together - reference).max() < 1e-6  # the same model as `encode`, up to float rounding
    assert text_metrics.embed_texts([]).shape == (0, 384)


def test_padded_lengths_depend_on_own_length_only():
    counts = np.array([1, 7, 8, 9, 15, 16, 256])
    assert text_metrics.padded_lengths(counts).tolist() == [8, 8, 16, 16, 16, 24, 264]
    batches = text_metrics.batches_of_equal(np.array([8, 16, 8, 8, 16]), batch_size=2)
    assert [b.tolist() for b in batches] == [[0, 2], [3], [1, 4]]


def _open_run(tmp_path):
    refs = ["An oval mass with circumscribed margins.", "Spiculated mass with calcifications.",
            "No axillary lymphadenopathy."]
    records = [open_record(f"o{k}", f"p{k % 4}", refs[k % 3], ["mass"]) for k in range(9)]
    answers = ["An oval circumscribed mass.", "A spiculated mass.", "", "Normal study.", "An oval mass.",
               "Calcified mass.", "An oval circumscribed mass.", "Mass.", "No lymph nodes."]
    write_jsonl_atomic(tmp_path / "run" / "responses.jsonl",
                       [{"item_id": f"o{k}", "response": a, "model": "m"} for k, a in enumerate(answers)])
    items = [item_from_record(r) for r in records]
    return items, load_run(tmp_path / "run", items)


def test_rescoring_from_cache_is_bit_identical_and_never_loads_the_model(tmp_path, monkeypatch):
    items, run = _open_run(tmp_path)
    cold = score_responses(items, run, ScoreConfig(embeddings=True))
    assert (tmp_path / "run" / embedding_cache.FILE_NAME).is_file()
    assert cold.attrs["embedding_cache"]["embedded"] == cold.attrs["embedding_cache"]["distinct"] == 10
    assert cold.attrs["embedding_cache"]["texts"] == 16  # 8 non-empty answers + their references

    def no_model(*args, **kwargs):
        raise AssertionError("a warm re-score must not need the embedding model")

    monkeypatch.setattr(text_metrics, "load_embedding_model", no_model)
    warm = score_responses(items, run, ScoreConfig(embeddings=True))
    assert warm.attrs["embedding_cache"]["embedded"] == 0
    assert np.array_equal(cold["embedding"].to_numpy(), warm["embedding"].to_numpy())
    assert cold["embedding"].iloc[2] == 0.0 and cold["embedding"].iloc[0] > 0.8
