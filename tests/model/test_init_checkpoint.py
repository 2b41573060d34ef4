"""`model init` from a tiny Qwen3-VL checkpoint built and saved in the test (no hub access)."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from tests.model.conftest import conversation, make_image, make_slide


@pytest.fixture
def qwen_base(tmp_path):
    """A tiny Qwen3-VL checkpoint folder: weights, config, tokenizer (no <|histo_pad|>), processor."""
    from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration, Qwen3VLProcessor

    from breastgpt.model.flavours import tiny, tiny_tokenizer
    from breastgpt.model.processing import qwen_image_processor, qwen_video_processor

    d = tiny().to_dict()
    keep = ("image_token_id", "video_token_id", "vision_start_token_id", "vision_end_token_id")
    torch.manual_seed(3)
    qwen = Qwen3VLForConditionalGeneration(
        Qwen3VLConfig(text_config=d["text_config"], vision_config=d["vision_config"], **{k: d[k] for k in keep})
    )
    base = tmp_path / "qwen"
    qwen.save_pretrained(base)
    Qwen3VLProcessor(image_processor=qwen_image_processor(), tokenizer=tiny_tokenizer(with_histo=False),
                     video_processor=qwen_video_processor()).save_pretrained(base)
    return base, qwen


def _tiny_overrides():
    from breastgpt.model.flavours import tiny

    return {"slide_config": tiny().slide_config, "selection_config": tiny().selection_config}


def test_init_copies_weights_adds_histo_on_spare_row_and_verifies(qwen_base, tmp_path):
    from breastgpt.model import BreastGPTForConditionalGeneration, BreastGPTProcessor
    from breastgpt.artifacts import artifact_problems
    from breastgpt.model.init_checkpoint import init_checkpoint

    base, qwen = qwen_base
    result = init_checkpoint(base, tmp_path / "out", config_overrides=_tiny_overrides())
    assert result.histo_token_id == 270 and result.vocab_size == 320 and result.vocab_size_kept
    assert artifact_problems(tmp_path / "out", exhaustive=True) == []
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert "model.safetensors" in manifest["base"]["files"] and "model.safetensors" in manifest["files"]
    assert not list((tmp_path / "out").glob("*.bin"))

    model = BreastGPTForConditionalGeneration.from_pretrained(tmp_path / "out")
    ours, theirs = model.state_dict(), qwen.state_dict()
    for name, value in theirs.items():
        if name in ("model.language_model.embed_tokens.weight", "lm_head.weight"):
            assert torch.equal(ours[name][:270], value[:270]) and torch.equal(ours[name][271:], value[271:])
            assert torch.equal(ours[name][270], value[268])  # <|histo_pad|> row = <|image_pad|> row
        else:
            assert torch.equal(ours[name], value), name
    processor = BreastGPTProcessor.from_pretrained(tmp_path / "out")
    assert processor.histo_token_id == 270 and processor.slide_budget == 16 and processor.slide_feature_dim == 16
    batch = processor.pad_batch([processor.encode(conversation({"type": "image", "image": make_image()},
                                                               make_slide()))])
    assert torch.isfinite(model(**batch).loss)


def test_tampering_is_caught_by_verify(qwen_base, tmp_path):
    from breastgpt.artifacts import artifact_problems
    from breastgpt.model.init_checkpoint import init_checkpoint

    base, _ = qwen_base
    out = tmp_path / "out"
    init_checkpoint(base, out, config_overrides=_tiny_overrides())
    (out / "config.json").write_text((out / "config.json").read_text() + " ")
    (out / "extra.txt").write_text("x")
    problems = artifact_problems(out, exhaustive=True)
    assert any("config.json: sha256 differs" in p for p in problems)
    assert any("extra.txt: not listed" in p for p in problems)


def test_init_refuses_bad_inputs(qwen_base, tmp_path):
    from breastgpt.model.init_checkpoint import CheckpointError, init_checkpoint

    base, _ = qwen_base
    with pytest.raises(CheckpointError, match="not found"):
        init_checkpoint(tmp_path / "nowhere", tmp_path / "o1")
    with pytest.raises(CheckpointError, match="hidden_size=64 but the 8b flavour has 4096"):
        init_checkpoint(base, tmp_path / "o2", size="8b", config_overrides=_tiny_overrides())
    assert not (tmp_path / "o2").exists() and not list(tmp_path.glob(".o2*"))
    (tmp_path / "o3").mkdir()
    with pytest.raises(CheckpointError, match="already exists"):
        init_checkpoint(base, tmp_path / "o3")


def test_cli_init_and_verify(qwen_base, tmp_path, monkeypatch):
    from breastgpt.model import cli, init_checkpoint as ic

    base, _ = qwen_base
    original = ic.init_checkpoint

    def tiny_init(*a, config_overrides=None, **kw):  # tiny shapes; the CLI's selection flags on top
        tiny = _tiny_overrides()
        tiny["selection_config"] = {**tiny["selection_config"], **(config_overrides or {}).get("selection_config", {})}
        return original(*a, config_overrides=tiny, **kw)

    monkeypatch.setattr(ic, "init_checkpoint", tiny_init)
    runner = CliRunner()
    res = runner.invoke(cli.app, ["init", "--base", str(base), "--out", str(tmp_path / "ck"), "--json"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    assert summary["histo_token_id"] == 270 and summary["vocab_size_kept"] is True
    res = runner.invoke(cli.app, ["verify", str(tmp_path / "ck"), "--json"])
    assert res.exit_code == 0 and json.loads(res.stdout)["ok"] is True
    res = runner.invoke(cli.app, ["init", "--base", str(tmp_path / "missing"), "--out", str(tmp_path / "x")])
    assert res.exit_code == 2
    res = runner.invoke(cli.app, ["init", "--base", str(base), "--out", str(tmp_path / "y"), "--size", "9b"])
    assert res.exit_code != 0


def test_cli_init_learnable_selection_initialises_the_selectors(qwen_base, tmp_path, monkeypatch):
    """`model init --learnable-selection`: the ablation's selectors are new weights, initialised and saved."""
    from breastgpt.model import BreastGPTForConditionalGeneration, cli, init_checkpoint as ic

    base, qwen = qwen_base
    original = ic.init_checkpoint
    seen = {}

    def tiny_init(*a, config_overrides=None, **kw):
        seen["overrides"] = config_overrides
        tiny = _tiny_overrides()
        tiny["selection_config"] = {**tiny["selection_config"], **config_overrides["selection_config"]}
        return original(*a, config_overrides=tiny, **kw)

    monkeypatch.setattr(ic, "init_checkpoint", tiny_init)
    res = CliRunner().invoke(cli.app, ["init", "--base", str(base), "--out", str(tmp_path / "ck"),
                                       "--learnable-selection"])
    assert res.exit_code == 0, res.output
    assert seen["overrides"] == {"selection_config": {"learnable": True}}
    model = BreastGPTForConditionalGeneration.from_pretrained(tmp_path / "ck")
    assert model.config.selection.learnable and model.config.selection.learnable_concepts == 32
    selectors = {n: p for n, p in model.named_parameters() if n.startswith("model.concept_selectors.")}
    assert len(selectors) == 6  # queries and key for image, video, slide
    for name, p in selectors.items():
        assert torch.isfinite(p).all() and 0.005 < p.detach().std().item() < 0.05, name  # transformers' init, std 0.02
    ours = model.state_dict()
    for name, value in qwen.state_dict().items():  # Qwen3-VL's weights still copied unchanged
        if name not in ("model.language_model.embed_tokens.weight", "lm_head.weight"):
            assert torch.equal(ours[name], value), name
