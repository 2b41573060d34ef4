"""Fixtures for the model tests.

Until ``breastgpt.model.selection`` and ``breastgpt.model.longnet`` land (another engineer owns them),
this file installs a private minimal stand-in for each missing one so the BreastGPT model can be exercised.
selection.py has landed (its stand-in is gone); the LongNet stand-in is used only while longnet.py is
absent; delete it once that file exists.
"""

from __future__ import annotations

import math
import sys
import types
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn


_MODEL_SRC = Path(__file__).resolve().parents[2] / "src" / "breastgpt" / "model"


def _real_module_exists(name: str) -> bool:
    # A file check, not find_spec: importing the package would import the very module that is missing.
    return (_MODEL_SRC / f"{name.rsplit('.', 1)[-1]}.py").is_file()


@dataclass(frozen=True)
class _LongNetConfig:
    width: int = 768
    depth: int = 3
    heads: int = 8
    ffn: int = 3072
    layer_norm_eps: float = 1e-6
    segments: tuple = ((512, 1), (1024, 2), (2048, 4))
    input_dim: int = 768
    positional: str = "sincos2d"

    def to_dict(self):
        d = asdict(self)
        d["segments"] = [list(s) for s in self.segments]
        return d

    @classmethod
    def from_dict(cls, d):
        d = dict(d)
        if "segments" in d:
            d["segments"] = tuple(tuple(s) for s in d["segments"])
        return cls(**d)


class _LongNetEncoder(nn.Module):
    """Full-attention stand-in with the LongNet interface (one output per layer)."""

    def __init__(self, config):
        super().__init__()
        self.config = config
        self.input_proj = nn.Linear(config.input_dim, config.width)
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(config.width, config.heads, config.ffn, 0.0, "gelu", config.layer_norm_eps,
                                       batch_first=True, norm_first=True)
            for _ in range(config.depth)
        )

    def _sincos(self, coords):
        dim = self.config.width // 4
        freq = torch.exp(-math.log(10000.0) * torch.arange(dim, device=coords.device) / dim)
        parts = []
        for axis in range(2):
            ang = coords[..., axis : axis + 1].float() * freq
            parts += [ang.sin(), ang.cos()]
        return torch.cat(parts, dim=-1)

    def forward(self, features, coords=None, padding_mask=None):
        x = self.input_proj(features)
        if coords is not None and self.config.positional != "none":
            x = x + self._sincos(coords).to(x.dtype)
        key_pad = None if padding_mask is None else ~padding_mask
        outs = []
        for layer in self.layers:
            x = layer(x, src_key_padding_mask=key_pad)
            outs.append(x)
        return outs


def _install_stand_ins() -> None:
    if not _real_module_exists("breastgpt.model.longnet"):
        mod = types.ModuleType("breastgpt.model.longnet")
        mod.LongNetConfig = _LongNetConfig
        mod.LongNetEncoder = _LongNetEncoder
        sys.modules["breastgpt.model.longnet"] = mod


_install_stand_ins()


# ---- fixtures -----------------------------------------------------------------------------------

import numpy as np  # noqa: E402
import pytest  # noqa: E402


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
