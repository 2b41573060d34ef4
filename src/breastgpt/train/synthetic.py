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


def _image_ref(out: Path, rng: np.random.Generator, bright: int, image_size: int) -> MediaRef:
    level = 170 if bright else 60
    data = _png(np.clip(rng.normal(level, 25, (image_size, image_size, 3)), 0, 255).astype(np.uint8))
    digest = hashlib.sha256(data).hexdigest()
    atomic_write_bytes(out / f"media/{digest}.png", data)
    return MediaRef(path=f"media/{digest}.png", sha256=digest, kind="image")


def synthetic_multiturn_records(out_dir: str | Path, n: int, seed: int = 0, image_size: int = 64) -> Path:
    """Write ``out_dir/records.jsonl``: three-turn conversations, an image in turns 1 and 3 and text only in turn
    2 (the layout of the pathway records), every assistant turn supervised. Turn 3 asks whether its image matches
    turn 1's, so its answer needs both images. Deterministic in (n, seed, image_size)."""
    out = Path(out_dir)
    rng = np.random.default_rng([seed, 34])
    records = []
    for i in range(n):
        first, second = (int(b) for b in rng.integers(0, 2, size=2))
        media = [_image_ref(out, rng, first, image_size), _image_ref(out, rng, second, image_size)]
        same = "Yes, both are" if first == second else "No, they differ:"
        messages = [
            {"role": "user", "content": "<image>\nIs the image dark or bright?"},
            {"role": "assistant", "content": _ANSWERS[first]},
            {"role": "user", "content": "Should a second image be taken?"},
            {"role": "assistant", "content": "Yes."},
            {"role": "user", "content": "<image>\nIs this image as bright as the first one?"},
            {"role": "assistant", "content": f"{same} {'bright' if second else 'dark'} now."}]
        records.append(Record(
            id=f"syn-mt-{i:05d}", source="synthetic", patient_key=f"p{i % 7}", study_key=f"s{i}",
            stage="treatment", modality="pathology", kind="image", task_family="open_vqa",
            template_id="synthetic-multiturn", answer_provenance=Provenance("label"), split="train",
            messages=messages, label={"answer": messages[-1]["content"], "key_findings": []}, media=media))
    path = out / "records.jsonl"
    write_records_jsonl(path, records)
    return path


__all__ = ["synthetic_multiturn_records", "synthetic_records"]
