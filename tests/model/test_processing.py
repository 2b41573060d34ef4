"""BreastGPTProcessor: ChatML layout, placeholder counts = selection budgets, labels, input checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from breastgpt.model.processing import IGNORE_INDEX, STAGES, frame_stamp_texts, system_prompts
from tests.model.conftest import conversation, make_image, make_slide, make_volume


def _count(enc, processor, token):
    return int((enc["input_ids"] == processor.tokenizer.convert_tokens_to_ids(token)).sum())


def test_stage_prompts_are_data_for_every_stage():
    prompts = system_prompts()
    assert sorted(prompts) == sorted(STAGES)
    assert all("Clinical stage: " + stage in prompts[stage] for stage in STAGES)


def test_chatml_layout_and_labels_cover_only_the_answer(processor):
    enc = processor.encode(conversation(answer="Benign."), stage="screening")
    text = processor.tokenizer.decode(enc["input_ids"])
    assert text.startswith("<|im_start|>system\nYou are BreastGPT")
    assert "<|im_start|>user\nWhat is shown?<|im_end|>\n<|im_start|>assistant\nBenign.<|im_end|>\n" in text
    supervised = enc["labels"][enc["labels"] != IGNORE_INDEX]
    assert processor.tokenizer.decode(supervised) == "Benign.<|im_end|>"


def test_generation_prompt_ends_with_assistant_header(processor):
    enc = processor.encode(conversation(answer=None), stage="diagnosis", add_generation_prompt=True)
    assert processor.tokenizer.decode(enc["input_ids"]).endswith("<|im_start|>assistant\n")
    assert bool((enc["labels"] == IGNORE_INDEX).all())


def test_image_placeholders_equal_min_of_tokens_and_budget(processor):
    big = processor.encode(conversation({"type": "image", "image": make_image(h=96, w=128)}))
    assert tuple(big["image_grid_thw"][0].tolist()) == (1, 6, 8)  # 12 merged tokens > budget 8
    assert _count(big, processor, "<|image_pad|>") == 8
    small = processor.encode(conversation({"type": "image", "image": make_image(h=64, w=64)}))
    assert _count(small, processor, "<|image_pad|>") == 4  # 4 tokens <= 8: all kept


def test_image_resize_respects_area_and_multiple_of_32(processor):
    from breastgpt.model.flavours import tiny_processor

    p = tiny_processor(image_max_pixels=64 * 32 * 32)
    enc = p.encode(conversation({"type": "image", "image": make_image(h=1000, w=700)}))
    t, h, w = enc["image_grid_thw"][0].tolist()
    assert (h * 16) * (w * 16) <= 64 * 32 * 32 and h % 2 == 0 and w % 2 == 0
    with pytest.raises(ValueError, match="exceeds the SPEC limit"):
        tiny_processor(image_max_pixels=2048 * 32 * 32)


def test_volume_has_per_frame_timing_and_split_budget(processor):
    enc = processor.encode(conversation({"type": "volume", "volume": make_volume(t=4, h=96, w=96)}))
    text = processor.tokenizer.decode(enc["input_ids"])
    assert tuple(enc["video_grid_thw"][0].tolist()) == (2, 6, 6)  # 2 frames x 9 tokens = 18 > 12
    frames = ["<0.2 seconds><|vision_start|>" + "<|video_pad|>" * 6 + "<|vision_end|>",
              "<1.2 seconds><|vision_start|>" + "<|video_pad|>" * 6 + "<|vision_end|>"]
    assert "".join(frames) in text


@pytest.mark.parametrize("fps", [2.0, 1.0, 3.0])
def test_frame_stamps_are_qwen3_vl_timestamps(processor, fps):
    """The helper the demo tokenizer trains on writes exactly Qwen3-VL's per-patch times, odd counts included."""
    for frames in range(1, 10):
        upstream = processor._calculate_timestamps(list(range(frames)), fps, 2)
        assert frame_stamp_texts(frames, fps, 2) == [f"<{t:.1f} seconds>" for t in upstream]
    assert frame_stamp_texts(8) == ["<0.2 seconds>", "<1.2 seconds>", "<2.2 seconds>", "<3.2 seconds>"]
    with pytest.raises(ValueError, match="positive"):
        frame_stamp_texts(0)


def test_volume_input_checks(processor):
    with pytest.raises(ValueError, match="even"):
        processor.encode(conversation({"type": "volume", "volume": make_volume(t=3)}))
    with pytest.raises(ValueError, match="uint8"):
        processor.encode(conversation({"type": "volume", "volume": make_volume().astype(np.float32)}))
    with pytest.raises(ValueError, match=r"\[T, H, W, 3\]"):
        processor.encode(conversation({"type": "volume", "volume": make_volume()[..., 0]}))


def test_slide_placeholders_and_grid_from_coords(processor):
    part = make_slide(n=40)
    enc = processor.encode(conversation(part))
    assert _count(enc, processor, "<|histo_pad|>") == 16
    coords = {"type": "slide", "features": part["features"][:5],
              "coords": np.array([[0, 0], [512, 0], [1024, 512], [1535, 1536], [2048, 2047]]), "tile_size": 512}
    enc = processor.encode(conversation(coords))
    assert enc["slide_grid"][0].tolist() == [[0, 0], [1, 0], [2, 1], [2, 3], [4, 3]]
    assert _count(enc, processor, "<|histo_pad|>") == 5


@pytest.mark.parametrize("bad,match", [
    ({"features": np.zeros((4, 8), np.float32), "grid": np.zeros((4, 2))}, "expects 16"),
    ({"features": np.full((4, 16), np.nan, np.float32), "grid": np.zeros((4, 2))}, "NaN"),
    ({"features": np.zeros((4, 16), np.float32)}, "needs 'grid'"),
    ({"features": np.zeros((4, 16), np.float32), "grid": np.zeros((3, 2))}, r"\[N, 2\]"),
])
def test_slide_input_checks(processor, bad, match):
    with pytest.raises(ValueError, match=match):
        processor.encode(conversation({"type": "slide", **bad}))


def test_special_tokens_typed_in_text_never_become_placeholders(processor):
    enc = processor.encode(conversation(text="see <|image_pad|> and <|histo_pad|>"))
    assert _count(enc, processor, "<|image_pad|>") == 0 and _count(enc, processor, "<|histo_pad|>") == 0


def test_stage_errors(processor):
    with pytest.raises(ValueError, match="unknown clinical stage"):
        processor.encode(conversation(), stage="triage")
    with pytest.raises(ValueError, match="not both"):
        processor.encode([{"role": "system", "content": "x"}, *conversation()], stage="screening")


def test_pad_batch_left_and_right(processor):
    a = processor.encode(conversation(make_slide(n=10)))
    b = processor.encode(conversation(make_slide(n=20), {"type": "image", "image": make_image()}, answer="Yes."))
    left = processor.pad_batch([a, b], "left")
    n_a, n_b = a["input_ids"].numel(), b["input_ids"].numel()
    width = max(n_a, n_b)
    assert left["input_ids"].shape == (2, width)
    short = 0 if n_a < n_b else 1
    pad = abs(n_a - n_b)
    assert left["attention_mask"][short, :pad].sum() == 0 and left["attention_mask"][short, pad:].all()
    right = processor.pad_batch([a, b], "right")
    assert right["attention_mask"][short, -pad:].sum() == 0
    assert bool((right["labels"][short, -pad:] == IGNORE_INDEX).all())
    assert left["slide_features"].shape == (2, 20, 16)
    assert left["slide_mask"].sum(1).tolist() == [10, 20]
    assert left["pixel_values"].shape[0] == int(b["image_grid_thw"][0].prod())
    assert torch.equal(left["slide_grid"][0, :10], a["slide_grid"][0])


def test_memoised_text_pieces_match_the_tokenizer_and_follow_added_tokens():
    from breastgpt.model.flavours import tiny_processor

    processor = tiny_processor()
    direct = processor.tokenizer.encode("Is there a mass? <|image_pad|>", add_special_tokens=False,
                                        split_special_tokens=True)
    first = processor._text("Is there a mass? <|image_pad|>")
    again = processor._text("Is there a mass? <|image_pad|>")
    assert first == again == direct
    again.append(-1)  # callers get their own list: the cache cannot be corrupted through it
    assert processor._text("Is there a mass? <|image_pad|>") == direct
    before = processor._text("zqxjkv")
    processor.tokenizer.add_tokens(["zqxjkv"])
    after = processor._text("zqxjkv")
    assert after == [processor.tokenizer.convert_tokens_to_ids("zqxjkv")] != before


def test_memoised_media_equal_fresh_processing_and_follow_the_pixels():
    from breastgpt.model.flavours import tiny_processor

    image, volume = make_image(h=96, w=128), make_volume(t=4, h=64, w=64)
    fresh = tiny_processor().encode(conversation({"type": "image", "image": image}))
    fresh_vol = tiny_processor().encode(conversation({"type": "volume", "volume": volume}))
    processor = tiny_processor()
    for _ in range(2):  # the second pass is served from the memo
        enc = processor.encode(conversation({"type": "image", "image": image}))
        vol = processor.encode(conversation({"type": "volume", "volume": volume}))
        assert torch.equal(enc["pixel_values"][0], fresh["pixel_values"][0])
        assert torch.equal(enc["image_grid_thw"][0], fresh["image_grid_thw"][0])
        assert torch.equal(vol["pixel_values_videos"][0], fresh_vol["pixel_values_videos"][0])
        assert torch.equal(enc["input_ids"], fresh["input_ids"]) and torch.equal(vol["input_ids"], fresh_vol["input_ids"])
    assert len(processor._media_memo) == 2
    edited = image.copy()
    edited[0, 0, 0] ^= 255  # one pixel changed: a new key, never the stale tensors
    changed = processor.encode(conversation({"type": "image", "image": edited}))
    assert not torch.equal(changed["pixel_values"][0], fresh["pixel_values"][0]) and len(processor._media_memo) == 3
