"""Fixtures for the model tests.

Until ``breastgpt.model.selection`` and ``breastgpt.model.longnet`` land (another engineer owns them),
this file installs a private minimal stand-in for each so the BreastGPT model can be exercised. The
stand-ins are only used when the real module cannot be imported; delete them once both exist.
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


@torch.no_grad()
def _select_concepts(tokens, k, *, temperature=0.2, text_tokens=None, text_temperature=0.02,
                     coverage_weight=0.5, chunk_size=4096):
    n = tokens.shape[0]
    if n <= k:
        return torch.arange(n, device=tokens.device)
    v = nn.functional.normalize(tokens.float(), dim=-1)
    q = torch.softmax(v @ v.T / temperature, dim=-1) / n
    if text_tokens is not None:
        t = nn.functional.normalize(text_tokens.float(), dim=-1)
        p = torch.softmax(t @ v.T / text_temperature, dim=-1) / t.shape[0]
        q = torch.cat([p, coverage_weight * q], dim=0)
    best = torch.zeros(q.shape[0], device=q.device)
    chosen: list[int] = []
    for _ in range(k):
        gain = (torch.clamp(q - best[:, None], min=0)).sum(0)
        if chosen:
            gain[chosen] = -1.0
        j = int(torch.argmax(gain))
        chosen.append(j)
        best = torch.maximum(best, q[:, j])
    return torch.tensor(sorted(chosen), device=tokens.device, dtype=torch.long)


class _STSelect(torch.autograd.Function):
    @staticmethod
    def forward(ctx, tokens, hard, weights):
        return hard

    @staticmethod
    def backward(ctx, grad):
        return None, None, grad


def _straight_through_select(tokens, indices, *, soft_temperature=1.0):
    v = nn.functional.normalize(tokens, dim=-1)
    w = torch.softmax((v[indices] @ v.T) / soft_temperature, dim=-1)
    soft = w @ tokens
    return soft + (tokens[indices] - soft).detach()


def _install_stand_ins() -> None:
    if not _real_module_exists("breastgpt.model.longnet"):
        mod = types.ModuleType("breastgpt.model.longnet")
        mod.LongNetConfig = _LongNetConfig
        mod.LongNetEncoder = _LongNetEncoder
        sys.modules["breastgpt.model.longnet"] = mod
    if not _real_module_exists("breastgpt.model.selection"):
        mod = types.ModuleType("breastgpt.model.selection")
        mod.select_concepts = _select_concepts
        mod.straight_through_select = _straight_through_select
        sys.modules["breastgpt.model.selection"] = mod


_install_stand_ins()
