"""Training objectives: what one step's loss is, and what it is computed on.

The loop (`breastgpt.train.loop`) owns everything an objective shares: the optimizer and schedule, the batch plan,
token-normalised accumulation, checkpoints, exact resume and export. An objective supplies the rest:

- `datasets`: the training (and validation) items, each with a cheap `lengths` entry for the batch plan;
- `wrap`: the module that is trained, the model itself or the model with parts of its own (heads);
- `collate`, `count`, `loss_sum`: a micro-batch, its number of loss terms, and the sum of its terms' losses (the
  loop divides by the terms of the whole global step);
- `export_model`: the model written to ``OUT/final`` in Hugging Face format, and `export_extra` for anything the
  objective keeps beside it.

Objectives are registered by name (``TrainConfig.objective``); a recipe module may register its own.

- ``language`` (default): next-token loss on the assistant turns of each conversation.
- ``encoders``: the encoder groups of the model learn the training split's closed answers through one linear head
  per template (`breastgpt.train.encoder_objective`); the exported model is the model without its heads.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from breastgpt.registry import Registry

MODEL_KEYS = ("input_ids", "attention_mask", "labels", "position_ids", "pixel_values", "image_grid_thw",
              "pixel_values_videos", "video_grid_thw", "slide_features", "slide_grid", "slide_mask", "mm_token_type_ids")


class Objective:
    """Base of the objectives; see the module docstring. One instance per run, built from the run's config."""

    name = ""

    def __init__(self, config: Any):
        self.config = config

    @staticmethod
    def check(config: Any) -> None:
        """Refuse settings this objective cannot honour (`TrainConfig.check` calls it); raise `ConfigError`."""

    def datasets(self, processor: Any, model: nn.Module) -> tuple[Any, Any | None]:
        raise NotImplementedError

    def wrap(self, model: nn.Module, train_set: Any) -> nn.Module:
        return model

    def collate(self, items: list[dict[str, Any]], processor: Any) -> dict[str, Any]:
        raise NotImplementedError

    def count(self, batch: dict[str, Any]) -> int:
        raise NotImplementedError

    def loss_sum(self, module: nn.Module, batch: dict[str, Any], device: Any) -> torch.Tensor:
        raise NotImplementedError

    def export_model(self, module: nn.Module) -> tuple[nn.Module, str]:
        """The model to save, and the prefix its parameter names carry inside `module` ("" when it is `module`)."""
        return module, ""

    def export_extra(self, module: nn.Module, folder: Path) -> None:
        """Files written beside the exported model (inside the same atomic folder)."""


OBJECTIVES: Registry[type[Objective]] = Registry("training objective")


def get_objective(name: str) -> type[Objective]:
    import breastgpt.train.encoder_objective  # noqa: F401  (registers "encoders")

    return OBJECTIVES.get(name)


# ---- the language objective -----------------------------------------------------------------------------------


def to_device(batch: dict[str, Any], device: Any) -> dict[str, Any]:
    return {k: v.to(device) for k, v in batch.items() if k in MODEL_KEYS and v is not None}


def without_right_padding_mask(batch: dict[str, Any]) -> dict[str, Any]:
    """The batch without its attention mask when every row is right-padded (real tokens, then padding).

    Under causal attention a real token only sees tokens before it, which are all real, so a right-padded
    batch needs no mask for its real tokens; padding positions then see real tokens, but they carry no label
    and nothing attends to them, so the loss and every gradient are unchanged. Without a mask, transformers'
    SDPA path runs as ``is_causal`` instead of reading a (batch, 1, L, L) mask: the fused CPU kernel skips the
    masked-out half, and the attention backward of a small model's CPU step took 11 % of it with the mask.
    (BreastGPT's and Qwen3-VL's 3-D positions of real tokens do not depend on padding that follows them.)
    """
    mask = batch.get("attention_mask")
    if mask is None or mask.ndim != 2:
        return batch
    if mask.shape[1] > 1 and bool((mask[:, 1:] > mask[:, :-1]).any()):  # padding before a real token somewhere
        return batch
    return {k: v for k, v in batch.items() if k != "attention_mask"}


def forward_loss_sum(model: nn.Module, batch: dict[str, Any]) -> torch.Tensor:
    """Summed token loss of one micro-batch (the model's mean × its supervised token count)."""
    from breastgpt.train.data import supervised_tokens

    batch = without_right_padding_mask(batch)
    n = supervised_tokens(batch["labels"])
    extra = {}
    if getattr(getattr(model, "module", model), "loss_on_kept_logits", False):  # BreastGPT (also DDP-wrapped)
        from breastgpt.model.modeling import supervised_positions

        extra["logits_to_keep"] = supervised_positions(batch["labels"])
    out = model(**batch, use_cache=False, **extra)
    if n == 0:  # keeps the graph (DDP needs every rank to run backward), with every trained module in it
        extra_loss = getattr(out, "selection_loss", None)
        return out.logits.float().sum() * 0.0 + (0.0 if extra_loss is None else extra_loss.float() * 0.0)
    return out.loss.float() * n


@OBJECTIVES.register("language")
class LanguageObjective(Objective):
    """Next-token loss on the supervised (assistant) tokens; the loop normalises by the global step's tokens."""

    name = "language"

    @staticmethod
    def check(config: Any) -> None:
        from breastgpt.config import ConfigError

        if config.data.mirror:
            raise ConfigError("data.mirror is implemented for objective=encoders only")

    def datasets(self, processor: Any, model: nn.Module) -> tuple[Any, Any | None]:
        from breastgpt.train.data import TrainDataset, read_samples

        data = self.config.data
        loader = media_loader(self.config, model)
        train = TrainDataset(read_samples(data.train, data.format, data.train_split), processor, loader, data)
        val = None
        if data.val:
            val = TrainDataset(read_samples(data.val, data.format, data.val_split), processor, loader, data)
        return train, val

    def collate(self, items: list[dict[str, Any]], processor: Any) -> dict[str, Any]:
        from breastgpt.train.data import collate

        return collate(items, processor, self.config.data.packing, self.config.data.max_length)

    def count(self, batch: dict[str, Any]) -> int:
        from breastgpt.train.data import supervised_tokens

        return supervised_tokens(batch["labels"])

    def loss_sum(self, module: nn.Module, batch: dict[str, Any], device: Any) -> torch.Tensor:
        return forward_loss_sum(module, to_device(batch, device))


def media_loader(config: Any, model: nn.Module) -> Any:
    """The run's `MediaLoader`: its roots, slide mode, memo, and the model's slide feature size and encoder."""
    from breastgpt.model.configuration import slide_encoder_id
    from breastgpt.model.module_groups import base_model
    from breastgpt.train.data import MediaLoader, resolve_roots

    media_root, slide_root = resolve_roots(config.data)
    base = base_model(model)
    slide = getattr(base.config, "slide", None)
    return MediaLoader(media_root, slide_root, config.data.slide_mode, None if slide is None else slide.feature_dim,
                       memo_bytes=config.data.media_memo_mib * (1 << 20), slide_encoder=slide_encoder_id(base.config))


__all__ = ["LanguageObjective", "MODEL_KEYS", "OBJECTIVES", "Objective", "forward_loss_sum", "get_objective",
           "media_loader", "to_device", "without_right_padding_mask"]
