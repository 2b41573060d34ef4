"""Model and processor for a training run: build or load, choose trainable parameters, LoRA, checkpointing.

Trainable sets derive from the module groups the model class declares (``module_groups``,
`breastgpt.model.module_groups`), so a recipe's claim can be tested and a model variant's new part joins them:

- ``all``: every parameter (stage 2; the tile encoder is not part of the model — features come from files).
- ``stage1``: the ``warmup`` groups (for BreastGPT: the ViT patch merger and the DeepStack mergers, the LongNet
  slide encoder, the slide projectors and, in the learnable ablation, the concept-query selectors); the ViT
  blocks, patch embedding and the whole LLM stay frozen.
- ``lora``: peft LoRA adapters on the LLM projections; the ``warmup`` groups train in full (``modules_to_save``).
- ``language``: everything but the ``encoder`` groups (the whole vision tower with its mergers, the slide branch,
  the learnable selectors): the language model learns to read encoders that were trained before, e.g. by the
  ``encoders`` objective (`breastgpt.train.encoder_objective`).
- ``encoders``: the ``encoder`` groups only, the complement of ``language`` (the ``encoders`` objective).
"""

from __future__ import annotations

import re
import zlib
from typing import Any

import torch
from torch import nn

from breastgpt.model.module_groups import encoder_prefixes, groups_of, lora_modules_to_save, warmup_prefixes
from breastgpt.model.variants import get_variant, qwen_config_from
from breastgpt.train.config import ConfigError, ModelConfig

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def build_model(config: ModelConfig) -> nn.Module:
    """The model named by the config, in ``config.dtype``, with its trainable set applied."""
    model = _load(config)
    apply_trainable(model, config)
    if config.trainable == "lora":
        model = apply_lora(model, config)
    if config.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if config.trainable != "all":
            # inputs of checkpointed blocks must require grad when the embeddings are frozen
            model.enable_input_require_grads()
    return model


def _load(config: ModelConfig) -> nn.Module:
    """The registered variant `config.arch` (`breastgpt.model.variants`): from a local folder, or a flavour's
    config with seeded random weights."""
    variant = get_variant(config.arch)
    dtype = _DTYPES[config.dtype]
    if config.path:
        return variant.model_class.from_pretrained(config.path, dtype=dtype,
                                                   attn_implementation=config.attn_implementation,
                                                   local_files_only=True)
    from breastgpt.model.flavours import build_config

    model_config = variant.config_from_flavour(build_config(config.flavour))
    model_config._attn_implementation = config.attn_implementation
    model = variant.model_class(model_config)
    seeded_init(model, config.init_seed)
    return model.to(dtype)


@torch.no_grad()
def seeded_init(model: nn.Module, seed: int, std: float = 0.02) -> None:
    """Re-draw every matrix from a generator seeded by (seed, parameter name).

    A parameter's initial value then depends only on its own name and shape, not on how many parameters
    other modules created before it, so golden loss curves survive changes elsewhere in the model (e.g. the
    slide encoder's internals for a text/image-only debug corpus). Vectors (norms, biases) keep the
    model's own deterministic init.
    """
    for name, param in model.named_parameters():
        if param.dim() < 2:
            continue
        gen = torch.Generator().manual_seed(seed * 1_000_003 + zlib.crc32(name.encode()))
        param.copy_(torch.randn(param.shape, generator=gen, dtype=torch.float32).mul_(std).to(param.dtype))


def apply_trainable(model: nn.Module, config: ModelConfig) -> None:
    if config.trainable in ("all",):
        model.requires_grad_(True)
        return
    if config.trainable in ("language", "encoders"):
        encoders = encoder_prefixes(groups_of(model))
        for name, param in model.named_parameters():
            param.requires_grad_(name.startswith(encoders) == (config.trainable == "encoders"))
        if not any(p.requires_grad for p in model.parameters()):
            raise ConfigError(f"model.trainable={config.trainable} matched no parameter (encoder groups: "
                              + ", ".join(encoders) + ")")
        return
    model.requires_grad_(False)
    if config.trainable == "stage1":
        warmup = warmup_prefixes(groups_of(model))
        names = [n for n, _ in model.named_parameters() if n.startswith(warmup)]
        if not names:
            raise ConfigError("model.trainable=stage1 matched no parameter; the model has none under its warm-up "
                              "groups' paths " + ", ".join(warmup))
        params = dict(model.named_parameters())
        for n in names:
            params[n].requires_grad_(True)


def apply_lora(model: nn.Module, config: ModelConfig) -> nn.Module:
    from peft import LoraConfig, get_peft_model

    save = lora_modules_to_save(model)
    lora = LoraConfig(r=config.lora.r, lora_alpha=config.lora.alpha, lora_dropout=config.lora.dropout,
                      target_modules=config.lora.target_modules, modules_to_save=save or None, bias="none")
    if not any(re.fullmatch(config.lora.target_modules, n) for n, _ in model.named_modules()):
        raise ConfigError(f"model.lora.target_modules={config.lora.target_modules!r} matches no module")
    return get_peft_model(model, lora)


def trainable_names(model: nn.Module) -> list[str]:
    return [n for n, p in model.named_parameters() if p.requires_grad]


def build_processor(config: ModelConfig, model: nn.Module) -> Any:
    """A processor whose placeholder counts match the model: its selection budgets, or none (comparator)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    mconf = base.config
    if get_variant(config.arch).is_breastgpt:
        sel = mconf.selection
        budgets = dict(image_budget=sel.image_budget, volume_budget=sel.volume_budget,
                       slide_budget=sel.slide_budget, slide_feature_dim=mconf.slide.feature_dim)
    else:  # plain Qwen3-VL keeps every merged token: no budget
        budgets = dict(image_budget=1 << 30, volume_budget=1 << 30, slide_budget=1 << 30)
    if config.path:
        return _processor_from_folder(config, budgets)
    from breastgpt.model.flavours import tiny_processor

    if config.flavour != "tiny":
        raise ConfigError(f"no offline tokenizer for flavour {config.flavour!r}; give model.path (a local folder)")
    return tiny_processor(**budgets)


def training_processor(processor: Any, data: Any) -> Any:
    """`processor` with the training image bounds of `data` (``data.image_min_pixels`` / ``image_max_pixels``), as
    a copy: the processor that is exported with the model keeps its own bounds. `processor` itself when neither
    is set."""
    import copy

    from breastgpt.model.processing import MAX_IMAGE_PIXELS

    if not (data.image_min_pixels or data.image_max_pixels):
        return processor
    if not hasattr(processor, "image_max_pixels"):
        raise ConfigError(f"data.image_min_pixels / image_max_pixels need a BreastGPT processor; this model's is "
                          f"{type(processor).__name__}")
    low = data.image_min_pixels or processor.image_min_pixels
    high = data.image_max_pixels or processor.image_max_pixels
    if high > MAX_IMAGE_PIXELS or low > high:
        raise ConfigError(f"training image bounds {low}..{high} pixels: the area must lie between "
                          f"data.image_min_pixels and data.image_max_pixels and be at most {MAX_IMAGE_PIXELS}")
    out = copy.copy(processor)
    out.image_min_pixels, out.image_max_pixels = low, high
    return out


def _processor_from_folder(config: ModelConfig, budgets: dict[str, int]) -> Any:
    """The folder's own BreastGPT processor when it has one (its image sizes are what the checkpoint was made and
    trained with), with the model's budgets; otherwise one built around the folder's tokenizer (a Qwen3-VL
    download, whose processor is Qwen's)."""
    import json
    from pathlib import Path

    from transformers import AutoTokenizer

    from breastgpt.model.configuration import HISTO_TOKEN
    from breastgpt.model.processing import BreastGPTProcessor, qwen_image_processor, qwen_video_processor

    saved = Path(config.path) / "processor_config.json"
    if saved.is_file() and json.loads(saved.read_text()).get("processor_class") == BreastGPTProcessor.__name__:
        processor = BreastGPTProcessor.from_pretrained(config.path, local_files_only=True)
        for key, value in budgets.items():
            setattr(processor, key, value)
        return processor
    tokenizer = AutoTokenizer.from_pretrained(config.path, local_files_only=True)
    if not get_variant(config.arch).is_breastgpt and HISTO_TOKEN not in tokenizer.get_vocab():
        # The comparator never writes slide placeholders (slides become thumbnails), but the processor
        # requires the token to exist; it lands on a spare embedding row that is never read.
        tokenizer.add_special_tokens({"additional_special_tokens": [HISTO_TOKEN]})
    return BreastGPTProcessor(image_processor=qwen_image_processor(), tokenizer=tokenizer,
                              video_processor=qwen_video_processor(), **budgets)


__all__ = ["apply_lora", "apply_trainable", "build_model", "build_processor",
           "qwen_config_from", "seeded_init", "trainable_names"]
