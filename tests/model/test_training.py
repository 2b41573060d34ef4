"""End-to-end training on a fixed synthetic batch, save/load round-trip, LoRA wrapping."""

from __future__ import annotations

import pytest
import torch

from tests.model.conftest import MIXES, conversation


def _train_50_steps(model, processor) -> list[float]:
    convs = [conversation(*MIXES["all"](), answer="Invasive ductal carcinoma."),
             conversation(*MIXES["image"](), answer="BI-RADS 2.")]
    batch = processor.pad_batch([processor.encode(c, stage="diagnosis") for c in convs], "right")
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    losses = []
    for _ in range(50):
        loss = model(**batch).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses)))
    return losses


def test_loss_falls_over_50_steps_on_a_fixed_batch():
    """All three kinds in one sample; budgets >= L so the 50 steps stay fast (selection: the slow test)."""
    from breastgpt.model import BreastGPTForConditionalGeneration
    from breastgpt.model.flavours import tiny, tiny_processor

    budgets = {"image_budget": 64, "volume_budget": 64, "slide_budget": 64}
    torch.manual_seed(0)
    model = BreastGPTForConditionalGeneration(tiny(selection_config=budgets))
    losses = _train_50_steps(model, tiny_processor(**budgets))
    assert losses[-1] < 0.5 * losses[0], losses[::10]


@pytest.mark.slow
def test_loss_falls_over_50_steps_with_straight_through_selection(tiny_model, processor):
    losses = _train_50_steps(tiny_model, processor)
    assert losses[-1] < 0.5 * losses[0], losses[::10]


def test_save_pretrained_round_trip_gives_identical_logits(tiny_model, processor, tmp_path):
    from transformers import AutoModelForImageTextToText

    import breastgpt.model  # noqa: F401  (registers the Auto classes)

    tiny_model.eval()
    batch = processor.pad_batch([processor.encode(conversation(*MIXES["all"]()))])
    tiny_model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file()
    assert not list(tmp_path.glob("*.bin"))
    loaded = AutoModelForImageTextToText.from_pretrained(tmp_path).eval()
    assert type(loaded).__name__ == "BreastGPTForConditionalGeneration"
    with torch.no_grad():
        assert torch.equal(tiny_model(**batch).logits, loaded(**batch).logits)


def test_peft_lora_wraps_and_trains_only_adapters(tiny_model, processor):
    from peft import LoraConfig, get_peft_model

    lora = get_peft_model(tiny_model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    trainable = [n for n, p in lora.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    batch = processor.pad_batch([processor.encode(conversation(*MIXES["slide"]()))])
    out = lora(**batch)
    out.loss.backward()
    assert any(float(p.grad.abs().sum()) > 0 for n, p in lora.named_parameters() if "lora_B" in n)


def test_loss_on_the_supervised_positions_only_equals_the_full_logits_loss(tiny_model, processor):
    """Training computes logits only where the next token is supervised (`supervised_positions`): same loss and
    gradients as the full batch x seq x vocab logits, the kept rows equal to the full logits' rows."""
    from breastgpt.model.modeling import next_token_labels, supervised_positions

    convs = [conversation(*MIXES["all"](), answer="Invasive ductal carcinoma."),
             conversation(*MIXES["image"](), answer="BI-RADS 2.")]
    batch = processor.pad_batch([processor.encode(c, stage="diagnosis") for c in convs], "right")
    keep = supervised_positions(batch["labels"])
    assert 0 < int(keep.sum()) < keep.numel() // 4  # answers are a small share of the tokens
    assert int(keep.sum()) == int((batch["labels"][:, 1:] != -100).sum())
    tiny_model.eval()
    grads = []
    for extra in ({}, {"logits_to_keep": keep}):
        tiny_model.zero_grad()
        out = tiny_model(**batch, **extra)
        out.loss.backward()
        grads.append([p.grad.clone() for p in (tiny_model.lm_head.weight,
                                               tiny_model.model.language_model.layers[0].mlp.up_proj.weight)])
        if extra:
            kept = out
        else:
            full = out
    assert kept.logits.shape == (int(keep.sum()), full.logits.shape[-1])
    torch.testing.assert_close(kept.logits, full.logits[keep], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(kept.loss, full.loss, rtol=1e-6, atol=1e-6)
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert torch.equal(next_token_labels(batch["labels"])[keep], batch["labels"][:, 1:][keep[:, :-1]])
    wrong = keep.clone()
    wrong[0, 0] = True  # a position whose next token is not supervised
    with pytest.raises(ValueError, match="supervised positions"):
        tiny_model(**batch, logits_to_keep=wrong)
