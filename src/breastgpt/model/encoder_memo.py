"""Visual tokens of frozen encoders, computed once per medium.

When the vision tower and the slide branch are frozen (``model.trainable=language``: the language model learns
to read encoders trained before) and selection is not conditioned on the prompt, what a medium contributes to the
sequence — its selected main tokens, their DeepStack rows and their grid places — depends on the medium alone.
A training run sees every medium once per epoch, and with re-worded conversations many times per epoch, so the
memo computes those tokens on a medium's first appearance and reuses them after: on the CPU demo the frozen
vision tower and the selection were about a sixth of a language-training step.

A medium is identified by its content: the SHA-1 of its model inputs (pixel patches with their grid, or a
slide's real tile features with their grid), never by a file name, so a re-encoded or edited medium can never
hit a stale entry. Entries are detached tensors; the memo is cleared when it would hold more than
``max_bytes``. It is only valid while the encoder weights do not change: `enable_encoder_memo` refuses a model
whose encoders train, and `BreastGPTModel` checks again at every use (a memo left on a model whose encoders were
unfrozen afterwards raises instead of returning stale tokens).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from breastgpt.model.module_groups import ModuleGroupError, encoder_prefixes, groups_of

class EncoderMemoError(RuntimeError):
    """The memo cannot be used on this model as it is (encoders train, or selection reads the prompt)."""


@dataclass
class MemoStats:
    hits: int = 0
    misses: int = 0
    clears: int = 0


@dataclass
class EncoderMemo:
    """Selected visual tokens per medium (``list`` of `Kept` blocks: one per image or slide, one per volume frame)."""

    max_bytes: int
    # the encoder parameters whose values the entries depend on (`inner_encoder_prefixes`); None: the default model's
    encoder_prefixes: tuple[str, ...] | None = None
    stats: MemoStats = field(default_factory=MemoStats)
    _entries: dict[tuple, list[Any]] = field(default_factory=dict, repr=False)
    _held: int = field(default=0, repr=False)

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: tuple) -> list[Any] | None:
        found = self._entries.get(key)
        if found is None:
            self.stats.misses += 1
        else:
            self.stats.hits += 1
        return found

    def put(self, key: tuple, blocks: list[Any]) -> None:
        size = sum(_kept_bytes(k) for k in blocks)
        if self._held + size > self.max_bytes:
            self.clear()
            self.stats.clears += 1
        if size <= self.max_bytes:
            self._entries[key] = blocks
            self._held += size

    def clear(self) -> None:
        self._entries.clear()
        self._held = 0


def _kept_bytes(kept: Any) -> int:
    tensors = [kept.main, *kept.deepstack, kept.block.rows, kept.block.cols]
    return sum(t.numel() * t.element_size() for t in tensors)


def content_key(kind: str, *tensors: torch.Tensor) -> tuple:
    """(kind, shapes, dtypes, SHA-1 of the bytes) of a medium's model inputs."""
    digest = hashlib.sha1()
    meta = []
    for t in tensors:
        t = t.detach()
        if t.device.type != "cpu":
            t = t.cpu()
        t = t.contiguous()
        meta.append((tuple(t.shape), str(t.dtype)))
        digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return (kind, tuple(meta), digest.hexdigest())


def inner_encoder_prefixes(model: nn.Module) -> tuple[str, ...]:
    """Prefixes, relative to the `BreastGPTModel` at path ``model``, of the encoder groups `model`'s class declares
    (the parameters that decide a medium's visual tokens, with selection unconditioned on the prompt);
    `BreastGPTForConditionalGeneration`'s when `model` is a bare `BreastGPTModel`."""
    from breastgpt.model.modeling import BreastGPTForConditionalGeneration

    try:
        groups = groups_of(model)
    except ModuleGroupError:
        groups = BreastGPTForConditionalGeneration.module_groups
    return tuple(p.removeprefix("model.") for p in encoder_prefixes(groups) if p.startswith("model."))


def trainable_encoder_params(inner: nn.Module, prefixes: tuple[str, ...] | None = None) -> list[str]:
    """Names of the encoder parameters of a `BreastGPTModel` that require gradients (`prefixes`: its encoder
    groups, see `inner_encoder_prefixes`)."""
    prefixes = inner_encoder_prefixes(inner) if prefixes is None else prefixes
    return [n for n, p in inner.named_parameters() if p.requires_grad and n.startswith(prefixes)]


def enable_encoder_memo(model: nn.Module, max_bytes: int) -> EncoderMemo | None:
    """Attach a memo to the `BreastGPTModel` inside `model` when its visual tokens cannot change; else None.

    Conditions: a BreastGPT model, every encoder parameter frozen, selection neither conditioned on the prompt
    nor learnable (its Gumbel noise makes each pass pick anew) and ``max_bytes`` > 0. Returns the memo (its ``stats`` count hits and misses) or None with nothing changed.
    """
    inner = _breastgpt_model(model)
    selection = None if inner is None else inner.config.selection
    if inner is None or max_bytes <= 0 or selection.text_conditioning or selection.learnable:
        return None
    prefixes = inner_encoder_prefixes(model)
    if trainable_encoder_params(inner, prefixes):
        return None
    inner.encoder_memo = EncoderMemo(max_bytes, prefixes)
    return inner.encoder_memo


def disable_encoder_memo(model: nn.Module) -> None:
    inner = _breastgpt_model(model)
    if inner is not None:
        inner.encoder_memo = None


def _breastgpt_model(model: nn.Module) -> Any:
    from breastgpt.model.modeling import BreastGPTModel

    for module in model.modules():
        if isinstance(module, BreastGPTModel):
            return module
    return None


__all__ = ["EncoderMemo", "EncoderMemoError", "MemoStats", "content_key", "disable_encoder_memo",
           "enable_encoder_memo", "inner_encoder_prefixes", "trainable_encoder_params"]
