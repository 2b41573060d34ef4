"""Tiny BreastGPT: forward/backward/generate per input mix, padding, selection sizes, encoder-call counts."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from breastgpt.model.positions import PlaceholderMismatchError
from tests.model.conftest import MIXES, conversation, make_image, make_slide, make_volume


def _batch(processor, mix: str, answer="A benign mass.", side="right", generation=False):
    enc = processor.encode(conversation(*MIXES[mix](), answer=answer), stage="diagnosis",
                           add_generation_prompt=generation)
    return processor.pad_batch([enc], side)


@pytest.mark.parametrize("mix", sorted(MIXES))
def test_forward_backward_each_mix(tiny_model, processor, mix):
    batch = _batch(processor, mix)
    out = tiny_model(**batch)
    assert out.logits.shape == (*batch["input_ids"].shape, tiny_model.config.text_config.vocab_size)
    assert torch.isfinite(out.loss)
    out.loss.backward()
    m = tiny_model.model
    grads = {
        "image": m.visual.patch_embed.proj.weight.grad,
        "volume": m.visual.patch_embed.proj.weight.grad,
        "slide": m.slide_projector.weight.grad,
    }
    for kind in (("image", "volume", "slide") if mix == "all" else (mix,)):
        assert grads[kind] is not None and float(grads[kind].abs().sum()) > 0, kind
    if mix in ("image", "volume"):
        assert m.slide_projector.weight.grad is None


@pytest.mark.parametrize("mix", sorted(MIXES))
def test_generate_each_mix_encodes_once(tiny_model, processor, mix):
    tiny_model.eval()
    batch = _batch(processor, mix, answer=None, side="left", generation=True)
    batch.pop("labels")
    calls = {"vit": 0, "slide": 0}
    tiny_model.model.visual.register_forward_hook(lambda *a: calls.__setitem__("vit", calls["vit"] + 1))
    tiny_model.model.slide_encoder.register_forward_hook(lambda *a: calls.__setitem__("slide", calls["slide"] + 1))
    out = tiny_model.generate(**batch, max_new_tokens=4, do_sample=False, min_new_tokens=4)
    assert out.shape == (1, batch["input_ids"].shape[1] + 4)
    expected_vit = {"image": 1, "volume": 1, "slide": 0, "all": 2}[mix]  # one ViT pass per modality
    assert calls == {"vit": expected_vit, "slide": 1 if mix in ("slide", "all") else 0}


def test_cached_generation_matches_full_recompute(tiny_model, processor):
    """Decoding positions (from stored deltas) agree with recomputing the whole prompt each step."""
    tiny_model.eval()
    batch = _batch(processor, "all", answer=None, side="left", generation=True)
    batch.pop("labels")
    cached = tiny_model.generate(**batch, max_new_tokens=3, min_new_tokens=3, do_sample=False)
    full = tiny_model.generate(**batch, max_new_tokens=3, min_new_tokens=3, do_sample=False, use_cache=False)
    assert torch.equal(cached, full)


def test_left_padded_batch_generates_like_single_samples(tiny_model, processor):
    tiny_model.eval()
    convs = [conversation(*MIXES["all"](), answer=None), conversation(answer=None, text="Short?")]
    encs = [processor.encode(c, stage="screening", add_generation_prompt=True) for c in convs]
    singles = []
    for enc in encs:
        b = processor.pad_batch([enc], "left")
        b.pop("labels")
        singles.append(tiny_model.generate(**b, max_new_tokens=5, min_new_tokens=5, do_sample=False)[0, -5:])
    both = processor.pad_batch(encs, "left")
    both.pop("labels")
    out = tiny_model.generate(**both, max_new_tokens=5, min_new_tokens=5, do_sample=False)
    assert torch.equal(out[0, -5:], singles[0])
    assert torch.equal(out[1, -5:], singles[1])


def test_right_padded_training_batch_matches_single_logits(tiny_model, processor):
    tiny_model.eval()
    encs = [processor.encode(conversation(*MIXES[m]()), stage="diagnosis") for m in ("all", "image")]
    batch = processor.pad_batch(encs, "right")
    with torch.no_grad():
        joint = tiny_model(**batch).logits
        for i, enc in enumerate(encs):
            alone = tiny_model(**processor.pad_batch([enc], "right")).logits[0]
            n = enc["input_ids"].numel()
            torch.testing.assert_close(joint[i, :n], alone, rtol=1e-4, atol=1e-4)


def test_selection_keeps_budget_and_reuses_indices(tiny_model, processor):
    """A 40-tile slide keeps its budget (16); DeepStack rows come from the same tiles as the main rows."""
    m = tiny_model.model
    m.eval()
    slide = processor.pad_batch([processor.encode(conversation(make_slide(n=40)))])
    cand = m.slide_candidates(slide["slide_features"], slide["slide_grid"], slide["slide_mask"])[0]
    kept = m.select(cand, "slide", None)
    assert kept.main.shape == (16, 64) and kept.block.length == 16
    rows_all, cols_all = cand.rows, cand.cols
    idx = [int(torch.nonzero((rows_all == r) & (cols_all == c))[0]) for r, c in zip(kept.block.rows, kept.block.cols)]
    full_ds = cand.deepstack(None)
    for j, ds in enumerate(kept.deepstack):
        torch.testing.assert_close(ds, full_ds[j][idx])
    assert idx == sorted(idx)


def test_reference_deepstack_mode_selects_each_set_independently(processor):
    from breastgpt.model import BreastGPTForConditionalGeneration
    from breastgpt.model.flavours import tiny

    sel = {**tiny().selection_config, "deepstack_reuse_main_indices": False}
    torch.manual_seed(0)
    model = BreastGPTForConditionalGeneration(tiny(selection_config=sel)).eval()
    batch = processor.pad_batch([processor.encode(conversation(make_slide(n=40)))])
    out = model(**batch)
    assert torch.isfinite(out.loss)
    assert model.config.selection.deepstack_reuse_main_indices is False


def test_placeholder_count_mismatch_is_a_clear_error(tiny_model, processor):
    batch = _batch(processor, "slide")
    histo = tiny_model.config.histo_token_id
    ids = batch["input_ids"].clone()
    first = int(torch.nonzero(ids[0] == histo)[0])
    ids[0, first] = 65  # one placeholder fewer than the 16 the model keeps
    with pytest.raises(PlaceholderMismatchError, match=r"15 <\|histo_pad\|> tokens but the model keeps 16"):
        tiny_model(**{**batch, "input_ids": ids})


def test_missing_placeholder_run_is_a_clear_error(tiny_model, processor):
    text_only = processor.pad_batch([processor.encode(conversation())])
    extra = processor.pad_batch([processor.encode(conversation(make_slide()))])
    with pytest.raises(PlaceholderMismatchError, match=r"0 run\(s\) of <\|histo_pad\|> but 1 slide"):
        tiny_model(**{**text_only, **{k: extra[k] for k in ("slide_features", "slide_grid", "slide_mask")}})


def test_pixel_values_without_grid_is_an_error(tiny_model, processor):
    batch = _batch(processor, "image")
    batch.pop("image_grid_thw")
    with pytest.raises(ValueError, match="image_grid_thw"):
        tiny_model(**batch)


def test_all_tokens_kept_reproduces_qwen3vl_exactly(processor):
    """With budgets >= L nothing is dropped, and BreastGPT's positions equal Qwen3-VL's: same logits."""
    from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration

    from breastgpt.model import BreastGPTForConditionalGeneration
    from breastgpt.model.flavours import tiny

    cfg = tiny()
    torch.manual_seed(0)
    ours = BreastGPTForConditionalGeneration(cfg).eval()
    d = cfg.to_dict()
    keep = ("image_token_id", "video_token_id", "vision_start_token_id", "vision_end_token_id")
    qwen = Qwen3VLForConditionalGeneration(Qwen3VLConfig(
        text_config=d["text_config"], vision_config=d["vision_config"], **{k: d[k] for k in keep})).eval()
    qwen.load_state_dict(ours.state_dict(), strict=False)
    enc = processor.encode(conversation({"type": "image", "image": make_image(h=64, w=96)},
                                        {"type": "volume", "volume": make_volume(t=2, h=64, w=64)}))
    batch = processor.pad_batch([enc])
    assert int((batch["input_ids"] == cfg.image_token_id).sum()) == 6  # 4x6 patches -> 6 tokens <= 8
    types = torch.zeros_like(batch["input_ids"])
    types[batch["input_ids"] == cfg.image_token_id] = 1
    types[batch["input_ids"] == cfg.video_token_id] = 2
    qwen_inputs = {k: v for k, v in batch.items() if not k.startswith("slide")}
    with torch.no_grad():
        ref = qwen(**qwen_inputs, mm_token_type_ids=types).logits
        got = ours(**batch).logits
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)


def test_text_conditioning_uses_prompt_tokens_only(processor):
    """Changing the answer must not change which tokens are kept (the reference leaked answers)."""
    from breastgpt.model import BreastGPTForConditionalGeneration
    from breastgpt.model.flavours import tiny

    torch.manual_seed(0)
    model = BreastGPTForConditionalGeneration(tiny(selection_config={**tiny().selection_config, "text_conditioning": True})).eval()
    seen = []
    original = model.model.select

    def spy(cand, kind, text):
        seen.append(None if text is None else text.clone())
        return original(cand, kind, text)

    model.model.select = spy
    for answer in ("Benign.", "Malignant, invasive ductal carcinoma grade 3."):
        batch = processor.pad_batch([processor.encode(conversation(make_slide(), answer=answer))])
        with torch.no_grad():
            model(**batch)
    assert len(seen) == 2 and seen[0] is not None
    torch.testing.assert_close(seen[0], seen[1])
    prompt = processor.encode(conversation(make_slide(), answer=None), add_generation_prompt=True)
    n_prompt_text = int(model.model.prompt_mask(prompt["input_ids"][None], None, None).sum())
    assert seen[0].shape[0] == n_prompt_text


def test_volume_frame_budgets():
    from breastgpt.model import volume_frame_budgets

    assert volume_frame_budgets(2, 16, 128) == [16, 16]  # L=32 <= k: keep all
    assert volume_frame_budgets(3, 100, 128) == [43, 43, 42]
    assert sum(volume_frame_budgets(24, 144, 128)) == 128
    assert volume_frame_budgets(5, 30, 128) == [26, 26, 26, 25, 25]
    assert volume_frame_budgets(15, 12, 12) == [1] * 15  # every frame keeps a token, even over budget


def test_volume_with_more_frames_than_budget_generates(tiny_model, processor):
    """30 frames (15 frame groups) against the tiny volume budget of 12: prompt and model agree."""
    volume = np.zeros((30, 64, 64, 3), np.uint8)
    sample = processor.encode([{"role": "user", "content": [{"type": "volume", "volume": volume},
                                                            {"type": "text", "text": "?"}]}],
                              stage="screening", add_generation_prompt=True)
    batch = processor.pad_batch([sample])
    batch.pop("labels")
    out = tiny_model.generate(**batch, max_new_tokens=2, do_sample=False)
    assert out.shape[1] == batch["input_ids"].shape[1] + 2
