"""A small corpus folder with real media: every template rendered for a mammogram (PNG, 2-D boxes), an MRI
(windowed uint8 `.npz` volume, 3-D boxes) and a slide (tile-feature file reference); every sixth record is in the bench split."""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path

import numpy as np
from PIL import Image

from breastgpt.artifacts import atomic_write_bytes
from breastgpt.corpus.records import Record, write_records_jsonl
from breastgpt.corpus.templates import load_templates, render_sample
from tests.corpus.fixtures import FULL_LABELS
from tests.corpus.test_templates import view

MEDIA = {"mammography": "media/ab/mammo.png", "mri": "media/cd/mri.npz", "pathology": "features/slide.h5"}


def _media_bytes(modality: str) -> bytes:
    rng = np.random.default_rng(0)
    buffer = io.BytesIO()
    if modality == "mammography":
        Image.fromarray(rng.integers(0, 255, (56, 44, 3), dtype=np.uint8)).save(buffer, format="PNG")
    elif modality == "mri":
        np.savez_compressed(buffer, array=rng.integers(0, 255, (6, 40, 48), dtype=np.uint8))
    else:
        return b""  # slide rows refer to a feature file the swift export never opens
    return buffer.getvalue()


def write_swift_corpus(root: Path) -> list[Record]:
    templates, records = load_templates(), []
    for modality, path in MEDIA.items():
        data = _media_bytes(modality)
        if data:
            atomic_write_bytes(root / path, data)
        sample = view(modality, FULL_LABELS[modality], sample_id=modality)
        sample = dataclasses.replace(sample, media=[dataclasses.replace(sample.media[0], path=path)])
        records += render_sample(sample, templates)
    records = [dataclasses.replace(r, split="bench") if i % 6 == 0 else r for i, r in enumerate(records)]
    write_records_jsonl(root / "records.jsonl", records)
    return records

