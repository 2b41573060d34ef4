"""Named module groups of a model, declared once on its class; training's parameter sets derive from them.

A model class lists its groups in the class attribute ``module_groups`` (as transformers classes declare
``_no_split_modules``). Each group names module paths under the ``...ForConditionalGeneration`` and says what
training does with it:

- ``encoder``: the group decides a medium's visual tokens. ``model.trainable=language`` freezes it, the demo's
  encoder pre-training trains exactly it, and the encoder memo (`breastgpt.model.encoder_memo`) requires it frozen.
- ``warmup``: the group trains in stage 1 (``model.trainable=stage1``) with everything else frozen, and in full
  next to the adapters under LoRA (peft's ``modules_to_save``).

A parameter belongs to every group whose path prefixes its name, so a broad group (the whole vision tower) and a
narrower one inside it (its mergers) can say different things. A model variant with a new part adds a group in its
own class; every trainable set below follows without another edit.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn


@dataclass(frozen=True)
class ModuleGroup:
    name: str
    paths: tuple[str, ...]  # module paths under the ForConditionalGeneration, e.g. "model.visual.merger"
    encoder: bool = False
    warmup: bool = False

    def prefixes(self) -> tuple[str, ...]:
        return tuple(p + "." for p in self.paths)


# The parts of transformers' Qwen3-VL, shared by BreastGPT (which adds its slide branch) and the plain comparator.
QWEN3VL_MODULE_GROUPS: tuple[ModuleGroup, ...] = (
    ModuleGroup("vision_tower", ("model.visual",), encoder=True),
    ModuleGroup("vision_mergers", ("model.visual.merger", "model.visual.deepstack_merger_list"), encoder=True,
                warmup=True),
    ModuleGroup("language_model", ("model.language_model", "lm_head")),
)


class ModuleGroupError(ValueError):
    """A model declares no module groups, or a derived set matches none of its parameters."""


def base_model(model: nn.Module) -> nn.Module:
    """The transformers model inside a peft wrapper (or the model itself)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def groups_of(model: nn.Module) -> tuple[ModuleGroup, ...]:
    from transformers import Qwen3VLForConditionalGeneration

    model = base_model(model)
    declared = getattr(type(model), "module_groups", None)
    if declared is not None:
        return tuple(declared)
    if isinstance(model, Qwen3VLForConditionalGeneration):
        return QWEN3VL_MODULE_GROUPS
    raise ModuleGroupError(f"{type(model).__name__} declares no module_groups")


def encoder_prefixes(groups: tuple[ModuleGroup, ...]) -> tuple[str, ...]:
    """Parameter-name prefixes of the encoder groups (frozen for ``trainable=language``)."""
    return tuple(p for g in groups if g.encoder for p in g.prefixes())


def warmup_prefixes(groups: tuple[ModuleGroup, ...]) -> tuple[str, ...]:
    """Parameter-name prefixes of the stage-1 groups."""
    return tuple(p for g in groups if g.warmup for p in g.prefixes())


def lora_modules_to_save(model: nn.Module) -> list[str]:
    """Module paths for peft's ``modules_to_save``: the warm-up groups the model has, lists expanded to their
    items (peft cannot wrap a ModuleList or ModuleDict)."""
    model = base_model(model)
    modules = dict(model.named_modules())
    out: list[str] = []
    for group in groups_of(model):
        for path in group.paths if group.warmup else ():
            module = modules.get(path)
            if isinstance(module, (nn.ModuleList, nn.ModuleDict)):
                out += [f"{path}.{child}" for child, _ in module.named_children()]
            elif module is not None:
                out.append(path)
    return out


__all__ = ["ModuleGroup", "ModuleGroupError", "QWEN3VL_MODULE_GROUPS", "base_model", "encoder_prefixes",
           "groups_of", "lora_modules_to_save", "warmup_prefixes"]
