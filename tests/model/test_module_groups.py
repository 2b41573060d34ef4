"""Module groups declared once on the model class; stage-1, frozen-encoder and LoRA sets derive from them."""

import pytest
import torch
from torch import nn

from breastgpt.model import BreastGPTForConditionalGeneration
from breastgpt.model.encoder_memo import enable_encoder_memo
from breastgpt.model.flavours import tiny
from breastgpt.model.module_groups import (QWEN3VL_MODULE_GROUPS, ModuleGroup, ModuleGroupError, encoder_prefixes,
                                           groups_of, lora_modules_to_save, warmup_prefixes)
from breastgpt.train.config import ModelConfig
from breastgpt.train.model_setup import apply_lora, apply_trainable, trainable_names


class WithDensityProbe(BreastGPTForConditionalGeneration):
    """A model variant with a new part: it declares one more group and nothing else changes."""

    module_groups = (*BreastGPTForConditionalGeneration.module_groups,
                     ModuleGroup("density_probe", ("model.density_probe",), encoder=True, warmup=True))

    def __init__(self, config):
        super().__init__(config)
        self.model.density_probe = nn.ModuleList([nn.Linear(4, 4), nn.Linear(4, 2)])


def _tiny(cls=BreastGPTForConditionalGeneration, learnable: bool = False):
    torch.manual_seed(0)
    sel = {**tiny().selection_config, "learnable": learnable, "learnable_concepts": 4}
    return cls(tiny(selection_config=sel))


def _under(names, prefixes):
    return {n for n in names if n.startswith(prefixes)}


def test_every_declared_group_path_exists_in_the_model():
    model = _tiny(learnable=True)
    modules = dict(model.named_modules())
    for group in model.module_groups:
        for path in group.paths:
            assert path in modules and any(True for _ in modules[path].parameters()), (group.name, path)
    assert [g.name for g in model.module_groups] == ["vision_tower", "vision_mergers", "language_model",
                                                     "slide_encoder", "slide_projectors", "concept_selectors"]


def test_trainable_sets_are_the_declared_groups():
    model = _tiny(learnable=True)
    every = [n for n, _ in model.named_parameters()]
    groups = model.module_groups
    apply_trainable(model, ModelConfig(flavour="tiny", trainable="stage1"))
    assert set(trainable_names(model)) == _under(every, warmup_prefixes(groups))
    assert {g.name for g in groups if g.warmup} == {"vision_mergers", "slide_encoder", "slide_projectors",
                                                    "concept_selectors"}
    apply_trainable(model, ModelConfig(flavour="tiny", trainable="language"))
    frozen = set(every) - set(trainable_names(model))
    assert frozen == _under(every, encoder_prefixes(groups))
    assert any(n.startswith("model.visual.blocks.") for n in frozen)
    assert lora_modules_to_save(model) == [
        "model.visual.merger", "model.visual.deepstack_merger_list.0", "model.visual.deepstack_merger_list.1",
        "model.slide_encoder", "model.slide_projector",
        "model.slide_deepstack_projectors.0", "model.slide_deepstack_projectors.1",
        "model.concept_selectors.image", "model.concept_selectors.video", "model.concept_selectors.slide"]


def test_a_variant_adding_a_group_changes_every_derived_set_without_other_edits():
    model = _tiny(WithDensityProbe)
    probe = {n for n, _ in model.named_parameters() if n.startswith("model.density_probe.")}
    assert len(probe) == 4
    apply_trainable(model, ModelConfig(flavour="tiny", trainable="stage1"))
    assert probe <= set(trainable_names(model))
    apply_trainable(model, ModelConfig(flavour="tiny", trainable="language"))
    assert not probe & set(trainable_names(model))
    assert enable_encoder_memo(model, 1 << 20) is not None  # frozen probe: the memo may hold
    model.model.encoder_memo = None
    model.model.density_probe[0].weight.requires_grad_(True)
    assert enable_encoder_memo(model, 1 << 20) is None  # the memo's check reads the variant's encoder groups
    assert {"model.density_probe.0", "model.density_probe.1"} <= set(lora_modules_to_save(model))
    lora = apply_lora(model, ModelConfig(flavour="tiny", trainable="lora"))
    saved = {n for n, p in lora.named_parameters() if p.requires_grad and "density_probe" in n}
    assert saved and all("modules_to_save" in n for n in saved)
    assert groups_of(lora) == WithDensityProbe.module_groups


def test_the_plain_qwen3vl_comparator_gets_the_qwen3vl_groups_and_a_bare_module_none():
    from transformers import Qwen3VLForConditionalGeneration

    from breastgpt.train.model_setup import qwen_config_from

    qwen = Qwen3VLForConditionalGeneration(qwen_config_from(tiny()))
    assert groups_of(qwen) == QWEN3VL_MODULE_GROUPS
    assert lora_modules_to_save(qwen)[0] == "model.visual.merger"
    with pytest.raises(ModuleGroupError, match="Linear declares no module_groups"):
        groups_of(nn.Linear(2, 2))
