"""A small synthetic corpus of valid records (images + text) for the tiny-debug recipe and tests.

Each record asks about a random-noise image whose mean brightness decides the answer, so a model can learn
something in a few steps; answers are short so the loss falls visibly. Written with the corpus writer, so
the training reader is exercised exactly as on a real corpus.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np
from PIL import Image

from breastgpt.corpus.records import MediaRef, Provenance, Record, atomic_write_bytes, write_records_jsonl

_ANSWERS = ("The image is dark.", "The image is bright.")


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def synthetic_records(out_dir: str | Path, n: int, seed: int = 0, image_size: int = 64,
                      text_only_every: int = 4) -> Path:
    """Write ``out_dir/records.jsonl`` and ``out_dir/media/*.png``; every ``text_only_every``-th record has
    no image (0 disables). Returns the JSONL path. Deterministic in (n, seed, image_size)."""
    out = Path(out_dir)
    rng = np.random.default_rng(seed)
    records = []
    for i in range(n):
        bright = int(rng.integers(0, 2))
        text_only = text_only_every > 0 and i % text_only_every == text_only_every - 1
        media, question = [], "Is the image dark or bright?"
        if not text_only:
            level = 170 if bright else 60
            pixels = np.clip(rng.normal(level, 25, (image_size, image_size, 3)), 0, 255).astype(np.uint8)
            data = _png(pixels)
            digest = hashlib.sha256(data).hexdigest()
            rel = f"media/{digest}.png"
            atomic_write_bytes(out / rel, data)
            media = [MediaRef(path=rel, sha256=digest, kind="image")]
            question = "<image>\n" + question
        else:
            question = f"Say whether case {i} was {'bright' if bright else 'dark'}."
        records.append(Record(
            id=f"syn-{i:05d}", source="synthetic", patient_key=f"p{i % 7}", study_key=f"s{i}", stage="screening",
            modality="mammography", kind="unknown" if text_only else "image", task_family="open_vqa",
            template_id="synthetic-brightness", answer_provenance=Provenance("label"), split="train",
            messages=[{"role": "user", "content": question}, {"role": "assistant", "content": _ANSWERS[bright]}],
            label={"answer": _ANSWERS[bright], "key_findings": []}, media=media,
        ))
    path = out / "records.jsonl"
    write_records_jsonl(path, records)
    return path


__all__ = ["synthetic_records"]
