"""Corpus/bench records → conversations for the model (`predict`, the bench runner's local client).

The conversion is the training data path's own (`breastgpt.train.data`: media loading, placeholder expansion,
stage prompts), minus the assistant turn, so what is evaluated is exactly what was trained on.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from breastgpt.corpus.records import Record
from breastgpt.infer.engine import Conversation
from breastgpt.preprocessing import Preprocessing, read_preprocessing
from breastgpt.train.data import MediaLoader, conversation_stage, sample_from_record, to_messages

log = logging.getLogger("breastgpt.infer")


@dataclass
class RecordConversation:
    conversation: Conversation
    reference: str  # the assistant answer of the record ('' when absent)


def record_conversation(record: Record, root: Path, *, slide_dim: int | None = None, slide_encoder: str | None = None,
                        slide_mode: str = "features", prepare: Preprocessing | None = None) -> RecordConversation:
    """The record's prompt as processor messages (system, then user parts), and its reference answer. With
    `prepare`, images are normalised with those settings as they are read (for records from a folder that is not
    a corpus build: see `preparation`)."""
    sample = sample_from_record(record)
    sample.messages = [m for m in sample.messages if m["role"] != "assistant"]
    loader = MediaLoader(root, root, slide_mode, slide_dim, slide_encoder=slide_encoder,
                         prepare=(prepare, record.modality) if prepare is not None else None)
    messages = to_messages(sample, loader)
    return RecordConversation(Conversation(messages, stage=conversation_stage(sample, messages)),
                              record.message("assistant"))


def preprocessing_agreement(engine: Any, root: Path) -> dict[str, Any]:
    """Whether the records' media (normalised by the corpus at `root`) were prepared as the model's training
    corpus was: {"model": "checkpoint" | "defaults", "corpus": "recorded" | "none", "differences": [...],
    "images": "as stored" | "prepared at load"}. Records from a folder without `preprocessing.json` (a published
    bench) have their images prepared with the model's settings as they are read. Differences are logged as a
    warning: the model would be evaluated on inputs unlike its training inputs."""
    corpus = read_preprocessing(root)
    model = engine.preprocessing
    differences = model.differences(corpus) if corpus is not None else []
    agreement = {"model": "checkpoint" if engine.preprocessing_recorded else "defaults",
                 "corpus": "recorded" if corpus is not None else "none", "differences": differences,
                 "images": "as stored" if corpus is not None else "prepared at load"}
    if differences:
        log.warning("the records' media were normalised unlike the model's training corpus (model != records): %s",
                    "; ".join(differences))
    elif corpus is None:
        log.warning("the records' folder holds no preprocessing.json (not a `corpus build` folder): its images are "
                    "prepared with the model's preprocessing as they are read; volumes and slides are used as stored")
    return agreement


def preparation(engine: Any, agreement: dict[str, Any]) -> Preprocessing | None:
    """The settings to prepare images with at load (`record_conversation(prepare=...)`), or None for corpus media."""
    return engine.preprocessing if agreement["images"] == "prepared at load" else None
