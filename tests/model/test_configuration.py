"""BreastGPTConfig: round-trips, typed nested configs, registration, flavours."""

from __future__ import annotations

import json

import pytest
import torch

from breastgpt.model import BreastGPTConfig, SelectionConfig, register_breastgpt
from breastgpt.model.flavours import build_config, tiny


def test_config_round_trips_through_config_json(tmp_path):
    cfg = tiny(selection_config={**tiny().selection_config, "text_conditioning": True})
    cfg.save_pretrained(tmp_path)
    raw = json.loads((tmp_path / "config.json").read_text())
    assert raw["model_type"] == "breastgpt"
    assert raw["selection_config"]["text_conditioning"] is True
    assert raw["slide_config"]["longnet"]["depth"] == 2
    loaded = BreastGPTConfig.from_pretrained(tmp_path)
    assert loaded.to_dict() == cfg.to_dict()
    assert loaded.selection == cfg.selection and loaded.slide == cfg.slide


def test_defaults_follow_the_spec():
    sel = SelectionConfig()
    assert (sel.image_budget, sel.volume_budget, sel.slide_budget) == (64, 128, 128)
    assert sel.temperature == 0.2 and sel.text_conditioning is False and sel.deepstack_reuse_main_indices is True
    slide = build_config("8b").slide
    assert (slide.feature_dim, slide.positional, slide.longnet.width, slide.longnet.depth) == (768, True, 768, 3)


@pytest.mark.parametrize("field", ["selection_config", "slide_config"])
def test_unknown_nested_keys_are_errors(field):
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['budjet'\]"):
        tiny(**{field: {"budjet": 3}})


def test_deepstack_count_must_match_longnet_depth():
    slide = {**tiny().slide_config, "longnet": {**tiny().slide_config["longnet"], "depth": 3}}
    with pytest.raises(ValueError, match="3 layers but the ViT has 2 DeepStack taps"):
        tiny(slide_config=slide)


def test_positional_flag_must_agree_with_longnet():
    slide = {**tiny().slide_config, "positional": False}
    with pytest.raises(ValueError, match="positional=False disagrees"):
        tiny(slide_config=slide)


def test_learnable_variant_is_refused_honestly():
    with pytest.raises(ValueError, match="not implemented"):
        SelectionConfig(learnable=True)


def test_registration_is_idempotent_and_auto_classes_resolve():
    from transformers import AutoConfig, AutoModel, AutoModelForImageTextToText

    register_breastgpt()
    register_breastgpt()
    d = tiny().to_dict()
    d.pop("model_type")
    cfg = AutoConfig.for_model("breastgpt", **d)
    assert isinstance(cfg, BreastGPTConfig) and cfg.selection == tiny().selection
    assert type(AutoModel.from_config(tiny())).__name__ == "BreastGPTModel"
    assert type(AutoModelForImageTextToText.from_config(tiny())).__name__ == "BreastGPTForConditionalGeneration"


def test_tiny_flavour_is_small():
    from breastgpt.model import BreastGPTForConditionalGeneration

    n = sum(p.numel() for p in BreastGPTForConditionalGeneration(tiny()).parameters())
    assert n < 2_000_000


# Totals "calculated from the tensors stored in the upstream checkpoint", as published on the model cards
# https://huggingface.co/OpenExplorer/Qwen3-VL-8B-Instruct (8.767 B; ViT 576.4 M) and
# https://huggingface.co/OpenExplorer/Qwen3-VL-4B-Instruct (4.438 B; ViT 415.3 M).
@pytest.mark.parametrize("size,published_total", [("8b", 8.767e9), ("4b", 4.438e9)])
def test_published_backbones_match_parameter_counts_on_meta(size, published_total):
    """Backbone (everything but the slide branch) within 1 % of the published checkpoint's tensor count."""
    from breastgpt.model import BreastGPTForConditionalGeneration

    with torch.device("meta"):
        model = BreastGPTForConditionalGeneration(build_config(size))
    counts = {}
    for name, p in model.named_parameters():
        key = "slide" if name.startswith("model.slide_") else "backbone"
        counts[key] = counts.get(key, 0) + p.numel()
    assert abs(counts["backbone"] - published_total) / published_total < 0.01
    assert 20_000_000 < counts["slide"] < 40_000_000
