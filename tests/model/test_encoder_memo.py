"""Frozen encoders' visual tokens, memoised per medium: same loss and gradients, hits on repeats, never stale."""

from __future__ import annotations

import pytest
import torch

from tests.model.conftest import conversation, make_image, make_slide, make_volume


def _freeze_encoders(model) -> None:
    from breastgpt.model.module_groups import encoder_prefixes, groups_of

    encoders = encoder_prefixes(groups_of(model))
    for name, param in model.named_parameters():
        param.requires_grad_(not name.startswith(encoders))


def _batch(processor, seed: int = 0):
    convs = [
        conversation({"type": "image", "image": make_image(seed)}, {"type": "volume", "volume": make_volume(seed)},
                     make_slide(seed), answer="Invasive ductal carcinoma."),
        conversation({"type": "image", "image": make_image(seed + 1)}, make_slide(seed + 1), answer="BI-RADS 2."),
    ]
    return processor.pad_batch([processor.encode(c, stage="diagnosis") for c in convs], "right")


def _loss_and_grads(model, batch):
    model.zero_grad(set_to_none=True)
    loss = model(**batch).loss
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return float(loss.detach()), grads


def test_memo_gives_the_same_loss_and_gradients_and_hits_on_repeats(tiny_model, processor):
    from breastgpt.model.encoder_memo import enable_encoder_memo

    _freeze_encoders(tiny_model)
    tiny_model.train()
    batch = _batch(processor)
    plain_loss, plain_grads = _loss_and_grads(tiny_model, batch)
    memo = enable_encoder_memo(tiny_model, 1 << 20)
    assert memo is not None and tiny_model.model.encoder_memo is memo
    for expected_hits in (0, 5):  # 2 images + 1 volume + 2 slides: computed once, then served
        loss, grads = _loss_and_grads(tiny_model, batch)
        assert memo.stats.hits == expected_hits and len(memo) == 5
        assert loss == pytest.approx(plain_loss, rel=1e-6)
        assert grads.keys() == plain_grads.keys() and not any(n.startswith("model.visual.") for n in grads)
        for name, grad in grads.items():
            torch.testing.assert_close(grad, plain_grads[name], rtol=1e-5, atol=1e-7)


def test_memo_recomputes_changed_media_and_survives_a_full_memo(tiny_model, processor):
    from breastgpt.model.encoder_memo import enable_encoder_memo

    _freeze_encoders(tiny_model)
    tiny_model.eval()
    memo = enable_encoder_memo(tiny_model, 1 << 20)
    with torch.no_grad():
        tiny_model(**_batch(processor, seed=0))
        other = _batch(processor, seed=10)  # new pixels and tile features: all misses, distinct entries
        with_memo = tiny_model(**other).logits
        assert memo.stats.hits == 0 and len(memo) == 10
        tiny_model.model.encoder_memo = None
        assert torch.equal(with_memo, tiny_model(**other).logits)
        small = enable_encoder_memo(tiny_model, 64)  # smaller than any medium's tokens: nothing kept, still right
        assert torch.equal(tiny_model(**other).logits, with_memo) and len(small) == 0


def test_memo_is_refused_or_stops_when_encoders_train(tiny_model, processor):
    from breastgpt.model import BreastGPTForConditionalGeneration
    from breastgpt.model.encoder_memo import EncoderMemoError, enable_encoder_memo
    from breastgpt.model.flavours import tiny

    assert enable_encoder_memo(tiny_model, 1 << 20) is None  # every parameter trains
    _freeze_encoders(tiny_model)
    assert enable_encoder_memo(tiny_model, 0) is None
    assert enable_encoder_memo(tiny_model, 1 << 20) is not None
    tiny_model.model.slide_projector.weight.requires_grad_(True)  # unfrozen after the memo was attached
    with pytest.raises(EncoderMemoError, match="slide_projector"):
        tiny_model(**_batch(processor))
    conditioned = BreastGPTForConditionalGeneration(tiny(selection_config={"text_conditioning": True}))
    _freeze_encoders(conditioned)
    assert enable_encoder_memo(conditioned, 1 << 20) is None  # selection reads the prompt: tokens vary by prompt

