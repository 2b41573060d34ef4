"""The learnable selection ablation (SPEC §3.5): the selector alone, and wired into the tiny model."""

from __future__ import annotations

import pytest
import torch

from breastgpt.model.learnable_selection import LearnableConceptSelector
from tests.model.conftest import MIXES, conversation, make_slide

# Tokens per block in the tiny model with the conftest media, all above the tiny budgets (8 / 6+6 / 16), so
# every kind really selects.
KINDS_OF_MIX = {"image": ("image",), "volume": ("video",), "slide": ("slide",), "all": ("image", "video", "slide")}


def test_selector_indices_gate_and_coverage_loss():
    torch.manual_seed(0)
    sel = LearnableConceptSelector(dim=16, num_concepts=4)
    x = torch.randn(30, 16, requires_grad=True)
    out = sel(x, 5, generator=torch.Generator().manual_seed(1))
    assert out.indices.tolist() == sorted(out.indices.tolist()) and out.indices.shape == (5,)
    assert torch.equal(out.gate.detach(), torch.ones(5))
    ((x[out.indices] * out.gate[:, None]).sum() + out.aux_loss).backward()
    assert sel.queries.weight.grad is not None and sel.queries.weight.grad.abs().sum() > 0
    assert sel.key.weight.grad is not None and sel.key.weight.grad.abs().sum() > 0
    # With identical concepts the attention maps coincide, so the overlap penalty is at its largest.
    with torch.no_grad():
        sel.queries.weight.copy_(sel.queries.weight[:1].expand_as(sel.queries.weight))
    same = sel(x.detach(), 5).aux_loss
    attention = torch.softmax(sel.queries.weight @ sel.key(x.detach()).T / 4.0, dim=1)
    assert torch.allclose(same, 0.01 * (attention[0] @ attention[0]))
    sel.eval()
    a, b = sel(x.detach(), 5).indices, sel(x.detach(), 5).indices
    assert torch.equal(a, b)  # no Gumbel noise at evaluation
    scores = attention.max(0).values
    assert a.tolist() == sorted(torch.topk(scores, 5).indices.tolist())  # evaluation keeps the k best scores
    assert sel(x.detach()[:3], 5).indices.tolist() == [0, 1, 2]


def test_gumbel_top_k_samples_in_training_and_is_seeded():
    torch.manual_seed(0)
    sel = LearnableConceptSelector(dim=16, num_concepts=4)
    x = torch.randn(60, 16)
    best = sel.eval()(x, 8).indices
    sel.train()
    draws = [sel(x, 8, generator=torch.Generator().manual_seed(s)).indices for s in range(6)]
    assert torch.equal(draws[0], sel(x, 8, generator=torch.Generator().manual_seed(0)).indices)
    assert any(not torch.equal(d, best) for d in draws)  # training explores beyond the current best scores


def _learnable_model(**selection):
    from breastgpt.model import BreastGPTForConditionalGeneration
    from breastgpt.model.flavours import tiny

    sel = {**tiny().selection_config, "learnable": True, "learnable_concepts": 4, **selection}
    torch.manual_seed(0)
    return BreastGPTForConditionalGeneration(tiny(selection_config=sel))


def _batch(processor, mix: str, answer="A benign mass.", side="right", generation=False):
    enc = processor.encode(conversation(*MIXES[mix](), answer=answer), stage="diagnosis",
                           add_generation_prompt=generation)
    return processor.pad_batch([enc], side)


@pytest.mark.parametrize("mix", sorted(MIXES))
def test_forward_backward_adds_the_regulariser_and_trains_the_selectors(processor, mix):
    model = _learnable_model()
    batch = _batch(processor, mix)
    out = model(**batch)
    lm = model.loss_function(logits=out.logits, labels=batch["labels"],
                             vocab_size=model.config.text_config.vocab_size)
    assert out.selection_loss is not None and float(out.selection_loss.detach()) > 0
    torch.testing.assert_close(out.loss, lm + out.selection_loss)
    out.loss.backward()
    for kind in ("image", "video", "slide"):
        selector = model.model.concept_selectors[kind]
        grads = [selector.queries.weight.grad, selector.key.weight.grad]
        used = kind in KINDS_OF_MIX[mix]
        assert all((g is not None and float(g.abs().sum()) > 0) == used for g in grads), kind


def test_kept_tokens_are_exactly_the_selected_rows_and_deepstack_reuses_them(processor):
    model = _learnable_model().eval()
    m = model.model
    slide = processor.pad_batch([processor.encode(conversation(make_slide(n=40)))])
    cand = m.slide_candidates(slide["slide_features"], slide["slide_grid"], slide["slide_mask"])[0]
    kept = m.select(cand, "slide", None)
    picked = m.concept_selectors["slide"](cand.main, 16).indices
    assert kept.main.shape == (16, 64) and torch.equal(kept.main, cand.main[picked])
    full = cand.deepstack(None)
    for j, ds in enumerate(kept.deepstack):
        assert torch.equal(ds, full[j][picked])
    assert torch.equal(kept.block.rows, cand.rows[picked]) and torch.equal(kept.block.cols, cand.cols[picked])


@pytest.mark.parametrize("mix", sorted(MIXES))
def test_generate_each_mix_is_deterministic(processor, mix):
    model = _learnable_model().eval()
    batch = _batch(processor, mix, answer=None, side="left", generation=True)
    batch.pop("labels")
    a = model.generate(**batch, max_new_tokens=4, min_new_tokens=4, do_sample=False)
    b = model.generate(**batch, max_new_tokens=4, min_new_tokens=4, do_sample=False)
    assert a.shape == (1, batch["input_ids"].shape[1] + 4) and torch.equal(a, b)


def test_save_and_load_round_trip(processor, tmp_path):
    from transformers import AutoModelForImageTextToText

    import breastgpt.model  # noqa: F401  (registers the model type)

    model = _learnable_model().eval()
    model.save_pretrained(tmp_path / "ck")
    loaded = AutoModelForImageTextToText.from_pretrained(tmp_path / "ck").eval()
    assert loaded.config.selection == model.config.selection
    batch = _batch(processor, "all")
    with torch.no_grad():
        torch.testing.assert_close(loaded(**batch).logits, model(**batch).logits, rtol=0, atol=0)


def test_loss_falls_over_steps_on_a_fixed_batch(processor):
    model = _learnable_model()
    batch = _batch(processor, "all")
    before = {n: p.detach().clone() for n, p in model.named_parameters() if "concept_selectors" in n}
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    losses = []
    for step in range(30):
        torch.manual_seed(step)  # the Gumbel draws
        out = model(**batch)
        out.loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(out.loss.item())
    assert sum(losses[-5:]) / 5 < 0.7 * sum(losses[:5]) / 5, losses
    assert all(not torch.equal(p, before[n]) for n, p in model.named_parameters() if n in before)


def test_encoder_memo_is_refused(processor):
    from breastgpt.model.encoder_memo import EncoderMemo, EncoderMemoError, enable_encoder_memo

    model = _learnable_model()
    model.model.requires_grad_(False)
    assert enable_encoder_memo(model, 2**20) is None  # Gumbel draws change the picks every pass
    model.model.encoder_memo = EncoderMemo(2**20)
    with pytest.raises(EncoderMemoError, match="learnable"):
        model(**_batch(processor, "image"))


def test_trainable_sets_place_the_selectors_with_the_encoders():
    from breastgpt.train.config import ModelConfig
    from breastgpt.train.model_setup import apply_trainable, trainable_names

    model = _learnable_model()
    for trainable, wanted in (("stage1", True), ("language", False), ("all", True)):
        apply_trainable(model, ModelConfig(flavour="tiny", trainable=trainable))
        names = trainable_names(model)
        assert any(n.startswith("model.concept_selectors.") for n in names) == wanted, trainable
