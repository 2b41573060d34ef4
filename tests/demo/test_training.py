"""The demo model's initialisation: a ViT that can see brightness from the first step."""

from __future__ import annotations

import json

import torch

from breastgpt.demo.training import offset_patch_embedding
from breastgpt.model import BreastGPTForConditionalGeneration
from breastgpt.model.flavours import demo
from breastgpt.train.model_setup import seeded_init


def _first_norm_of_uniform_patches(model, levels: list[float]) -> torch.Tensor:
    """The first ViT block's LayerNorm applied to the patch embedding of uniform patches of each level."""
    visual = model.model.visual
    proj = visual.patch_embed.proj
    patches = torch.stack([torch.full(proj.weight.shape[1:], level) for level in levels])
    with torch.no_grad():
        tokens = proj(patches).flatten(1)
        return visual.blocks[0].norm1(tokens)


def test_offset_bias_makes_uniform_brightness_visible() -> None:
    torch.manual_seed(0)
    model = BreastGPTForConditionalGeneration(demo())
    seeded_init(model, 0)
    before = _first_norm_of_uniform_patches(model, [-0.6, -0.4])
    # Zero bias: a uniform patch embeds as level × (W · 1), and LayerNorm removes the scale.
    assert torch.allclose(before[0], before[1], atol=1e-4)
    offset_patch_embedding(model, seed=0)
    after = _first_norm_of_uniform_patches(model, [-0.6, -0.4])
    assert (after[0] - after[1]).norm() > 0.1 * after[0].norm()
    bias = model.model.visual.patch_embed.proj.bias.detach().clone()
    offset_patch_embedding(model, seed=0)  # deterministic for a seed
    assert torch.equal(bias, model.model.visual.patch_embed.proj.bias)


def test_demo_tokenizer_learns_the_text_the_processor_adds(tmp_path) -> None:
    """Trained on the records as the model reads them, frame times and role headers get their own tokens."""
    from breastgpt.demo.training import corpus_texts
    from breastgpt.model.flavours import demo_tokenizer

    record = {"messages": [{"role": "user", "content": "<video>\nIs there an enhancing mass?"},
                           {"role": "assistant", "content": "Yes"}],
              "media": [{"kind": "volume", "path": "media/a.npz"}, {"kind": "volume", "path": "media/b.npz"}]}
    path = tmp_path / "records.jsonl"
    path.write_text("\n".join(json.dumps(record) for _ in range(50)) + "\n")
    texts = corpus_texts(path, volume_depth=8)
    assert texts[:4] == ["user\n", "<video>\nIs there an enhancing mass?", "assistant\n", "Yes"]
    assert texts[4] == texts[5] == "<0.2 seconds> <1.2 seconds> <2.2 seconds> <3.2 seconds>"
    tokenizer = demo_tokenizer(texts, vocab_size=400)
    assert tokenizer.tokenize("<0.2 seconds>") == ["<", "0", ".", "2", "Ġseconds", ">"]  # digits stay digits
    assert tokenizer.tokenize("assistant\n") == ["assistant", "Ċ"]
    baseline = demo_tokenizer([m["content"] for m in record["messages"]] * 50, vocab_size=400)
    assert len(baseline.tokenize("<0.2 seconds>")) > 6 and len(baseline.tokenize("assistant\n")) > 2
