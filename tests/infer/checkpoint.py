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
    """Random weights: the starting point `train_tiny_checkpoint` trains from."""
    from breastgpt.model import BreastGPTForConditionalGeneration
    from breastgpt.model.flavours import tiny, tiny_processor

    torch.manual_seed(seed)
    config = tiny(slide_config=SLIDE_CONFIG, selection_config=SELECTION_CONFIG)
    model = BreastGPTForConditionalGeneration(config).eval()
    processor = tiny_processor(slide_feature_dim=32, image_budget=16, volume_budget=64, slide_budget=16)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def train_tiny_checkpoint(folder: Path, steps: int = 8) -> Path:
    """A tiny checkpoint produced by the training loop: `steps` optimizer steps on the synthetic brightness
    corpus, starting from `save_tiny_checkpoint`. Returns the Hugging Face folder the run wrote (`final/`)."""
    from breastgpt.train.config import (CheckpointConfig, DataConfig, LoggingConfig, ModelConfig, OptimConfig,
                                        ScheduleConfig, TrainConfig)
    from breastgpt.train.loop import train

    init = save_tiny_checkpoint(folder / "init")
    config = TrainConfig(
        name="tiny-trained", seed=0, output_dir=str(folder / "run"),
        data=DataConfig(synthetic_records=16, max_length=1024),
        model=ModelConfig(path=str(init)),
        optim=OptimConfig(lr=3e-3, weight_decay=0.0),
        schedule=ScheduleConfig(epochs=0, max_steps=steps, scheduler="constant", warmup_ratio=0.0,
                                micro_batch_size=4),
        checkpoint=CheckpointConfig(every_steps=0, keep_last=1),
        logging=LoggingConfig(tensorboard=False, progress=False),
    )
    result = train(config)
    assert result.final_dir is not None and result.losses[-1] < result.losses[0], result.losses
    return result.final_dir
