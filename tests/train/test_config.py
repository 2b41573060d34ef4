"""TrainConfig parsing, --set overrides, recipes (published stage-2 values, stage-1 trainable set), CLI."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner


from breastgpt.train.cli import app
from breastgpt.train.config import ConfigError, TrainConfig, apply_overrides
from breastgpt.train.recipes import get_recipe, load_recipes


def test_overrides_convert_types_and_reject_unknown_keys():
    config = apply_overrides(get_recipe("stage2"), ["optim.lr=2e-5", "schedule.grad_accum=4",
                                                    "model.gradient_checkpointing=false", "optim.betas=[0.9,0.95]",
                                                    "data.train=x.jsonl"])
    assert (config.optim.lr, config.schedule.grad_accum) == (2e-5, 4)
    assert config.model.gradient_checkpointing is False and config.optim.betas == [0.9, 0.95]
    with pytest.raises(ConfigError, match="unknown key 'optim.lrr'"):
        apply_overrides(config, ["optim.lrr=1"])
    with pytest.raises(ConfigError, match=r"schedule.grad_accum: 'two' is not a valid int"):
        apply_overrides(config, ["schedule.grad_accum=two"])
    with pytest.raises(ConfigError, match="is a section"):
        apply_overrides(config, ["optim=1"])
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        apply_overrides(config, ["optim.lr"])


def test_from_dict_is_strict_and_round_trips():
    config = get_recipe("stage2-lora")
    assert TrainConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    data = config.to_dict()
    data["model"]["lora"]["rank"] = 8
    with pytest.raises(ConfigError, match=r"model.lora: unknown key\(s\) \['rank'\]"):
        TrainConfig.from_dict(data)
    data = config.to_dict()
    data["precision"] = "fp8"
    with pytest.raises(ConfigError, match="precision='fp8' is not one of"):
        TrainConfig.from_dict(data).check()


def test_recipes_registered_and_stage2_is_the_published_recipe():
    assert {"tiny-debug", "stage1", "stage2", "stage2-lora", "comparator"} <= set(load_recipes())
    c = get_recipe("stage2")
    assert (c.precision, c.optim.lr, c.schedule.scheduler, c.schedule.warmup_ratio) == ("bf16", 1e-5, "cosine", 0.03)
    assert (c.optim.weight_decay, c.optim.grad_clip, c.schedule.epochs, c.data.max_length) == (0.1, 1.0, 2, 10_000)
    assert c.model.gradient_checkpointing and c.model.trainable == "all"
    assert get_recipe("stage1").model.trainable == "stage1"
    comp = get_recipe("comparator")
    assert (comp.model.arch, comp.data.slide_mode, comp.optim.lr) == ("qwen3vl", "thumbnail", 1e-5)
    with pytest.raises(ConfigError, match="unknown recipe 'stage3'"):
        get_recipe("stage3")


def test_stage1_trains_exactly_the_visual_mergers_and_slide_branch():
    from breastgpt.train.config import ModelConfig
    from breastgpt.train.model_setup import build_model, trainable_names

    model = build_model(ModelConfig(flavour="tiny", trainable="stage1"))
    names = trainable_names(model)
    prefixes = sorted({n.split(".")[1] + "." + n.split(".")[2] for n in names})
    assert prefixes == ["slide_deepstack_projectors.0", "slide_deepstack_projectors.1", "slide_encoder.input_proj",
                        "slide_encoder.layers", "slide_projector.bias", "slide_projector.weight",
                        "visual.deepstack_merger_list", "visual.merger"]
    assert "model.visual.merger.linear_fc1.weight" in names
    assert not any(n.startswith(("model.language_model.", "lm_head.", "model.visual.blocks.",
                                 "model.visual.patch_embed.", "model.visual.pos_embed.")) for n in names)
    every = [n for n, _ in model.named_parameters()]
    assert all(n in names for n in every if n.startswith(("model.slide_", "model.visual.merger.",
                                                           "model.visual.deepstack_merger_list.")))


def test_cli_show_recipes_and_errors():
    runner = CliRunner()
    shown = runner.invoke(app, ["show", "--recipe", "stage2", "--set", "optim.lr=3e-5"])
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.output)["optim"]["lr"] == 3e-5
    listed = runner.invoke(app, ["recipes", "--json"])
    assert "stage2-lora" in json.loads(listed.output)
    bad = runner.invoke(app, ["run", "--recipe", "tiny-debug", "--set", "optim.nope=1"])
    assert bad.exit_code == 2 and "unknown key 'optim.nope'" in bad.output


def test_cli_run_tiny_json(tmp_path):
    result = CliRunner().invoke(app, ["run", "--recipe", "tiny-debug", "--set", "schedule.max_steps=2",
                                      "--set", "data.synthetic_records=8", "--output", str(tmp_path / "o"), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output[result.output.index("{"):])
    assert summary["steps"] == 2 and summary["final_dir"] == str(tmp_path / "o" / "final")
    assert summary["last_checkpoint"].endswith("step-00000002")
