"""A tiny random-weight BreastGPT checkpoint saved to disk (inference, server and benchmark use)."""

from __future__ import annotations

from pathlib import Path

import torch

# Slide branch sized for the `tiny-random` tile encoder (32-d), so raw slides can be tiled and encoded in tests;
# a volume budget above the frame count, so every frame keeps at least one token.
SLIDE_CONFIG = dict(feature_dim=32, encoder_id="tiny-random", positional=True,
                    longnet=dict(width=32, depth=2, heads=2, ffn=64, segments=[[4, 1], [8, 2]], input_dim=32,
                                 positional="sincos2d"))
SELECTION_CONFIG = dict(image_budget=16, volume_budget=64, slide_budget=16)


def save_tiny_checkpoint(folder: Path, seed: int = 0) -> Path:
    from breastgpt.model import BreastGPTForConditionalGeneration
    from breastgpt.model.flavours import tiny, tiny_processor

    torch.manual_seed(seed)
    config = tiny(slide_config=SLIDE_CONFIG, selection_config=SELECTION_CONFIG)
    model = BreastGPTForConditionalGeneration(config).eval()
    processor = tiny_processor(slide_feature_dim=32, image_budget=16, volume_budget=64, slide_budget=16)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder
