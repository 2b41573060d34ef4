"""Corpus/bench records → conversations for the model (used by `predict`, the bench runner and training).

A record's user message carries ms-swift placeholders (`<image>`, `<video>`, `<slide>`), one per media entry of
that kind, in order. Media paths are relative to the corpus root: images are PNG, volumes NPZ (`array`, windowed
uint8 (Z, Y, X), already resampled by the corpus build), slides HDF5 feature files.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from breastgpt.corpus.records import MEDIA_TOKENS, Record
from breastgpt.infer.engine import Conversation
from breastgpt.infer.inputs import load_slide_features, to_rgb8
from breastgpt.io.volume import read_corpus_volume

# Records name the stage as the corpus does; the model's system prompts use the clinical wording.
PROMPT_STAGE = {"screening": "screening", "diagnosis": "diagnosis", "treatment": "treatment planning"}
PLACEHOLDER = re.compile("|".join(re.escape(token) for token in MEDIA_TOKENS.values()))
KIND_OF_TOKEN = {token: kind for kind, token in MEDIA_TOKENS.items()}


def load_volume_frames(path: Path) -> np.ndarray:
    """A corpus volume as three-channel frames with an even frame count (temporal patch 2)."""
    volume = read_corpus_volume(path)
    if volume.shape[0] % 2:
        volume = np.concatenate([volume, volume[-1:]], axis=0)
    return np.repeat(volume[..., None], 3, axis=-1)


def media_part(kind: str, path: Path, *, slide_dim: int | None = None) -> dict[str, Any]:
    if kind == "image":
        from breastgpt.io.raster import read_raster

        return {"type": "image", "image": to_rgb8(read_raster(path))}
    if kind == "volume":
        return {"type": "volume", "volume": load_volume_frames(path)}
    if kind == "slide":
        return load_slide_features(path, expect_dim=slide_dim).part()
    raise ValueError(f"unknown media kind {kind!r}")


@dataclass
class RecordConversation:
    conversation: Conversation
    reference: str  # the assistant answer of the record ('' when absent)


def record_conversation(record: Record, root: Path, *, slide_dim: int | None = None, with_media: bool = True,
                        media_override: dict[int, Path] | None = None) -> RecordConversation:
    """The record's prompt as processor messages (system, then user parts), and its reference answer.

    `with_media=False` drops every visual input (the no-image ablation); `media_override` swaps the media entry at
    an index for another file of the same kind (the shuffled-image ablation).
    """
    queues: dict[str, list[tuple[int, Path]]] = {kind: [] for kind in MEDIA_TOKENS}
    for index, ref in enumerate(record.media):
        path = (media_override or {}).get(index, root / ref.path)
        queues[ref.kind].append((index, path))
    messages: list[dict[str, Any]] = []
    for message in record.messages:
        if message["role"] == "assistant":
            continue
        if message["role"] == "user":
            messages.append({"role": "user", "content": _user_parts(message["content"], queues, slide_dim, with_media)})
        else:
            messages.append({"role": message["role"], "content": message["content"]})
    has_system = any(m["role"] == "system" for m in messages)
    stage = None if has_system else PROMPT_STAGE.get(record.stage)
    return RecordConversation(Conversation(messages, stage=stage), record.message("assistant"))


def _user_parts(text: str, queues: dict[str, list[tuple[int, Path]]], slide_dim: int | None,
                with_media: bool) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    position = 0
    for match in PLACEHOLDER.finditer(text):
        if match.start() > position:
            parts.append({"type": "text", "text": text[position:match.start()]})
        kind = KIND_OF_TOKEN[match.group()]
        if not queues[kind]:
            raise ValueError(f"a {match.group()} placeholder has no {kind} media entry left")
        _, path = queues[kind].pop(0)
        if with_media:
            parts.append(media_part(kind, path, slide_dim=slide_dim))
        position = match.end()
    if position < len(text):
        parts.append({"type": "text", "text": text[position:]})
    return parts
