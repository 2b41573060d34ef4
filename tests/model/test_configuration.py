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


@pytest.mark.parametrize("flavour", ["tiny", "demo", "4b", "8b"])
def test_every_deepstack_set_reaches_a_language_model_layer(flavour):
    cfg = build_config(flavour)
    assert len(cfg.vision_config.deepstack_visual_indexes) < cfg.text_config.num_hidden_layers
    text = {**tiny().text_config.to_dict(), "num_hidden_layers": 2}
    with pytest.raises(ValueError, match="would never reach the output"):
        tiny(text_config=text)  # 2 sets on 2 layers: set 1 is added after the last layer


def test_the_trained_deepstack_sets_all_get_gradients():
    from breastgpt.model import BreastGPTForConditionalGeneration

    torch.manual_seed(0)
    cfg = build_config("demo")
    model = BreastGPTForConditionalGeneration(cfg)
    grid = torch.tensor([[1, 4, 4]])
    pixels = torch.randn(16, 3 * 2 * 16 * 16)
    ids = torch.tensor([[cfg.vision_start_token_id] + [cfg.image_token_id] * 4 + [cfg.vision_end_token_id, 20, 21]])
    out = model(input_ids=ids, pixel_values=pixels, image_grid_thw=grid, labels=ids)
    out.loss.backward()
    for name, param in model.named_parameters():
        if "deepstack" in name and param.dim() == 2 and "slide" not in name:
            assert param.grad is not None and float(param.grad.abs().sum()) > 0, name


def test_positional_flag_must_agree_with_longnet():
    slide = {**tiny().slide_config, "positional": False}
    with pytest.raises(ValueError, match="positional=False disagrees"):
        tiny(slide_config=slide)


def test_learnable_variant_config_and_the_combinations_it_refuses():
    sel = SelectionConfig(learnable=True, learnable_concepts=4)
    assert SelectionConfig.from_dict(sel.to_dict()) == sel
    # config.json written before the learnable fields existed still loads, with the published defaults
    old = {k: v for k, v in SelectionConfig().to_dict().items() if not k.startswith(("learnable_", "gumbel"))}
    assert SelectionConfig.from_dict(old).learnable_concepts == 32
    with pytest.raises(ValueError, match="text_conditioning"):
        SelectionConfig(learnable=True, text_conditioning=True)
    with pytest.raises(ValueError, match="deepstack_reuse_main_indices"):
        SelectionConfig(learnable=True, deepstack_reuse_main_indices=False)
    with pytest.raises(ValueError, match="learnable_concepts"):
        SelectionConfig(learnable=True, learnable_concepts=0)
    with pytest.raises(ValueError, match="gumbel_temperature"):
        SelectionConfig(learnable=True, gumbel_temperature=0.0)


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
