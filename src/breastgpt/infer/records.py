"""Corpus/bench records → conversations for the model (`predict`, the bench runner's local client).

The conversion is the training data path's own (`breastgpt.train.data`: media loading, placeholder expansion,
stage prompts), minus the assistant turn, so what is evaluated is exactly what was trained on.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from breastgpt.corpus.records import Record
from breastgpt.infer.engine import Conversation
from breastgpt.train.data import MediaLoader, conversation_stage, sample_from_record, to_messages


@dataclass
class RecordConversation:
    conversation: Conversation
    reference: str  # the assistant answer of the record ('' when absent)


def record_conversation(record: Record, root: Path, *, slide_dim: int | None = None,
                        slide_mode: str = "features") -> RecordConversation:
    """The record's prompt as processor messages (system, then user parts), and its reference answer."""
    sample = sample_from_record(record)
    sample.messages = [m for m in sample.messages if m["role"] != "assistant"]
    messages = to_messages(sample, MediaLoader(root, root, slide_mode, slide_dim))
    return RecordConversation(Conversation(messages, stage=conversation_stage(sample, messages)),
                              record.message("assistant"))
