"""Model variants by name: what ``model.arch`` names in a training config, and what loads a checkpoint folder.

A variant is a transformers model class and how a named random-weight flavour (`breastgpt.model.flavours`) becomes
its config. Two are built in:

- ``breastgpt``: `BreastGPTForConditionalGeneration` (slide branch, token selection);
- ``qwen3vl``: transformers' plain Qwen3-VL with the same LLM and ViT (the comparator; no slide branch, no
  selection).

A variant with a new part is one module: a subclass of the model that declares its extra module group
(`breastgpt.model.module_groups`) and registers itself::

    @register_variant("breastgpt-density-probe")
    class WithDensityProbe(BreastGPTForConditionalGeneration):
        module_groups = (*BreastGPTForConditionalGeneration.module_groups,
                         ModuleGroup("density_probe", ("model.density_probe",), encoder=True, warmup=True))
        ...

Training then takes ``--set model.arch=breastgpt-density-probe`` (the module is imported by being in, or imported
from, the recipes folder), every trainable set follows its groups, and a checkpoint it wrote loads back as that
class: `variant_of_checkpoint` reads the class name transformers writes into ``config.json`` (``architectures``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from breastgpt.registry import Registry, RegistryError


@dataclass(frozen=True)
class ModelVariant:
    name: str
    model_class: type
    # a flavour's BreastGPTConfig -> this class's config
    config_from_flavour: Callable[[Any], Any] = lambda config: config

    @property
    def is_breastgpt(self) -> bool:
        """Whether the class is BreastGPT or derives from it (slide branch, selection budgets, packing)."""
        from breastgpt.model import BreastGPTForConditionalGeneration

        return issubclass(self.model_class, BreastGPTForConditionalGeneration)


MODEL_VARIANTS: Registry[ModelVariant] = Registry("model variant")


def register_variant(name: str, config_from_flavour: Callable[[Any], Any] | None = None) -> Callable[[type], type]:
    """Class decorator: register a model class as the variant `name`."""

    def add(cls: type) -> type:
        variant = ModelVariant(name, cls) if config_from_flavour is None else ModelVariant(name, cls, config_from_flavour)
        MODEL_VARIANTS.add(name, variant)
        return cls

    return add


def _builtins() -> None:
    if "breastgpt" in MODEL_VARIANTS:
        return
    from transformers import Qwen3VLForConditionalGeneration

    from breastgpt.model import BreastGPTForConditionalGeneration

    MODEL_VARIANTS.add("breastgpt", ModelVariant("breastgpt", BreastGPTForConditionalGeneration))
    MODEL_VARIANTS.add("qwen3vl", ModelVariant("qwen3vl", Qwen3VLForConditionalGeneration, qwen_config_from))


def qwen_config_from(breastgpt_config: Any) -> Any:
    """The plain Qwen3-VL config with the same LLM and ViT (drops the slide branch and selection)."""
    from transformers import Qwen3VLConfig

    data = breastgpt_config.to_dict()
    for key in ("slide_config", "selection_config", "histo_token_id", "model_type", "architectures",
                "transformers_version"):
        data.pop(key, None)
    return Qwen3VLConfig(**data)


def get_variant(name: str) -> ModelVariant:
    _builtins()
    return MODEL_VARIANTS.get(name)


def variant_names() -> tuple[str, ...]:
    _builtins()
    return MODEL_VARIANTS.names()


def variant_of_checkpoint(folder: str | Path) -> ModelVariant:
    """The variant whose class wrote the checkpoint `folder` (``architectures`` in its config.json, else its
    ``model_type``). A class not registered yet is looked for in the recipes folder (where user variants live)."""
    folder = Path(folder)
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError) as exc:
        raise RegistryError(f"{folder}: no readable config.json ({exc})") from exc
    found = _match(config)
    if found is None:
        _load_user_variants()
        found = _match(config)
    if found is None:
        names = config.get("architectures") or [config.get("model_type")]
        raise RegistryError(f"{folder}: written by {names[0]!r}, which no registered model variant provides (known: "
                            f"{', '.join(variant_names())}); put the module that registers it in the recipes folder")
    return found


def _match(config: dict[str, Any]) -> ModelVariant | None:
    _builtins()
    variants = [MODEL_VARIANTS.get(n) for n in MODEL_VARIANTS.names()]
    for arch in config.get("architectures") or []:
        for variant in variants:
            if variant.model_class.__name__ == arch:
                return variant
    if config.get("architectures"):
        return None
    for variant in variants:
        if getattr(variant.model_class.config_class, "model_type", None) == config.get("model_type"):
            return variant
    return None


def _load_user_variants() -> None:
    from breastgpt.config import ConfigError
    from breastgpt.train.recipes import load_recipes

    try:
        load_recipes()
    except ConfigError:  # no recipes folder here: nothing more to find
        pass


__all__ = ["MODEL_VARIANTS", "ModelVariant", "get_variant", "qwen_config_from", "register_variant", "variant_names",
           "variant_of_checkpoint"]
