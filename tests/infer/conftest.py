"""A tiny random-weight BreastGPT checkpoint saved to disk, shared by the inference and server tests."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch


def save_tiny_checkpoint(folder: Path, seed: int = 0) -> Path:
    from breastgpt.model import BreastGPTForConditionalGeneration
    from breastgpt.model.flavours import tiny, tiny_processor

    torch.manual_seed(seed)
    model = BreastGPTForConditionalGeneration(tiny()).eval()
    processor = tiny_processor(slide_feature_dim=model.config.slide_config.feature_dim
                               if hasattr(model.config, "slide_config") else None)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_checkpoint(tmp_path_factory.mktemp("tiny-checkpoint"))
