"""Fixtures for the model tests: the tiny processor and model, synthetic images, volumes and slides."""

from __future__ import annotations

import numpy as np
import pytest
import torch


@pytest.fixture(autouse=True)
def _single_thread():
    # Tiny matrices: one thread is ~10x faster than several contending on a shared CI box.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def processor():
    from breastgpt.model.flavours import tiny_processor

    return tiny_processor()


@pytest.fixture
def tiny_model():
    from breastgpt.model import BreastGPTForConditionalGeneration
    from breastgpt.model.flavours import tiny

    torch.manual_seed(0)
    return BreastGPTForConditionalGeneration(tiny())


def make_image(seed: int = 0, h: int = 96, w: int = 128) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def make_volume(seed: int = 0, t: int = 4, h: int = 96, w: int = 96) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (t, h, w, 3), dtype=np.uint8)


def make_slide(seed: int = 0, n: int = 40, cols: int = 8) -> dict:
    rng = np.random.default_rng(seed)
    grid = np.stack([np.arange(n) % cols, np.arange(n) // cols], axis=1)
    return {"type": "slide", "features": rng.normal(size=(n, 16)).astype(np.float32), "grid": grid}


def user_turn(*parts, text: str = "What is shown?") -> dict:
    return {"role": "user", "content": [*parts, {"type": "text", "text": text}]}


def conversation(*parts, answer: str | None = "A benign mass.", text: str = "What is shown?") -> list[dict]:
    msgs = [user_turn(*parts, text=text)]
    if answer is not None:
        msgs.append({"role": "assistant", "content": answer})
    return msgs


MIXES = {
    "image": lambda: [{"type": "image", "image": make_image()}],
    "volume": lambda: [{"type": "volume", "volume": make_volume()}],
    "slide": lambda: [make_slide()],
    "all": lambda: [{"type": "image", "image": make_image()}, {"type": "volume", "volume": make_volume()},
                    make_slide()],
}
