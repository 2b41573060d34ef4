"""Model variants by name (`breastgpt.model.variants`), and the worked example of adding one.

A user's variant is one module in the recipes folder: `MERGER_ADAPTER` below, written next to a copy of the
repository's recipes. `breastgpt train` trains it by name, its declared module group joins the stage-1 set, and the
checkpoint it writes loads back as that class in a process that has never seen it (through the recipes folder).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file
from typer.testing import CliRunner

from breastgpt.config import ConfigError
from breastgpt.model.variants import get_variant, variant_names, variant_of_checkpoint
from breastgpt.registry import RegistryError
from breastgpt.train.recipes import default_recipes_dir, get_recipe

MERGER_ADAPTER = '''"""breastgpt-merger-adapter: BreastGPT with a residual linear adapter after the ViT merger."""

import torch
from torch import nn

from breastgpt.model import BreastGPTForConditionalGeneration
from breastgpt.model.module_groups import ModuleGroup
from breastgpt.model.variants import register_variant


@register_variant("breastgpt-merger-adapter")
class WithMergerAdapter(BreastGPTForConditionalGeneration):
    module_groups = (*BreastGPTForConditionalGeneration.module_groups,
                     ModuleGroup("merger_adapter", ("model.merger_adapter",), encoder=True, warmup=True))

    def __init__(self, config):
        super().__init__(config)
        width = config.text_config.hidden_size
        self.model.merger_adapter = nn.Linear(width, width)
        with torch.no_grad():  # starts as the plain model
            self.model.merger_adapter.weight.zero_()
            self.model.merger_adapter.bias.zero_()
        self.model.visual.merger.register_forward_hook(lambda _, __, out: out + self.model.merger_adapter(out))
'''


@pytest.fixture(scope="module")
def recipes_with_variant(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("recipes") / "recipes"
    shutil.copytree(default_recipes_dir(), folder, ignore=shutil.ignore_patterns("__pycache__"))
    (folder / "merger_adapter.py").write_text(MERGER_ADAPTER)
    return folder


def test_the_built_in_variants() -> None:
    assert variant_names()[:2] == ("breastgpt", "qwen3vl")
    assert get_variant("breastgpt").is_breastgpt and not get_variant("qwen3vl").is_breastgpt
    config = get_recipe("tiny-debug")
    config.model.arch = "breastgpt-no-such"
    with pytest.raises(ConfigError, match="model.arch='breastgpt-no-such' is not a registered model variant; known: "
                                          "breastgpt, qwen3vl"):
        config.check()


def test_a_variant_module_trains_by_name_and_loads_back_elsewhere(recipes_with_variant: Path, tmp_path: Path) -> None:
    from breastgpt.train.cli import app

    out = tmp_path / "run"
    result = CliRunner().invoke(app, [
        "run", "--recipes-dir", str(recipes_with_variant), "--recipe", "tiny-debug", "--output", str(out),
        "--set", "model.arch=breastgpt-merger-adapter", "--set", "model.trainable=stage1",
        "--set", "schedule.max_steps=3", "--set", "checkpoint.every_steps=0", "--json"])
    assert result.exit_code == 0, result.output
    final = out / "final"
    assert json.loads((final / "config.json").read_text())["architectures"] == ["WithMergerAdapter"]
    assert variant_of_checkpoint(final).name == "breastgpt-merger-adapter"
    weights = load_file(str(final / "model.safetensors"))
    assert float(weights["model.merger_adapter.weight"].abs().sum()) > 0  # its group trained in stage 1
    trained = load_file(str(out / "checkpoints" / "step-00000003" / "model.safetensors"))
    assert "model.merger_adapter.weight" in trained and not any(k.startswith("model.language_model.") for k in trained)
    # a fresh process finds the class through the recipes folder and `ask`'s engine loads every weight into it
    code = ("from breastgpt.infer.engine import Engine; import sys; "
            "e = Engine.from_pretrained(sys.argv[1], device='cpu'); "
            "print(type(e.model).__name__, float(e.model.model.merger_adapter.weight.abs().sum()))")
    env = {**os.environ, "BREASTGPT_RECIPES": str(recipes_with_variant)}
    done = subprocess.run([sys.executable, "-c", code, str(final)], env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    name, total = done.stdout.split()[-2:]
    assert name == "WithMergerAdapter"
    assert float(total) == pytest.approx(float(weights["model.merger_adapter.weight"].abs().sum()), rel=1e-6)


def test_a_checkpoint_of_an_unregistered_class_is_refused_by_name(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["SomethingElse"], "model_type": "breastgpt"}))
    with pytest.raises(RegistryError, match="written by 'SomethingElse', which no registered model variant provides"):
        variant_of_checkpoint(tmp_path)
