"""LongNet slide encoder (SPEC §3.4): dilated attention over tens of thousands of tile features.

Each (segment length s, dilation r) branch splits the sequence into segments of s positions (the tail
padded), keeps every r-th position of a segment — head group g taking offset g mod r — and runs full
attention among the kept positions of each segment, padding masked as keys. Branch outputs are merged per
position and head with weights softmax(branch log-sum-exps): the merged output equals one softmax over
the union of the branches' key sets, so a branch that does not cover a position contributes nothing.
Segment lengths never shrink to the sequence, so extra padding cannot change a real token's output.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from breastgpt.config import ConfigError, StrictConfig


@dataclass(frozen=True)
class LongNetConfig(StrictConfig):
    section = "LongNetConfig"

    width: int = 768
    depth: int = 3
    heads: int = 8
    ffn: int = 3072
    layer_norm_eps: float = 1e-6
    segments: tuple[tuple[int, int], ...] = ((512, 1), (1024, 2), (2048, 4))
    input_dim: int = 768
    # "none" reproduces the reference, which ignored tile coordinates
    positional: Literal["sincos2d", "none"] = "sincos2d"
    # Gain on the 2-D sin-cos code added to the projected tile features. Unscaled, the code's norm is
    # sqrt(width / 2) (19.6 at width 768, 5.7 at 64) while freshly projected features are ~1-2: where a tile
    # sits would drown what it shows, and the slide branch learned to ignore tile content (docs/model.md).
    positional_scale: float = 0.1

    def validate(self) -> None:
        object.__setattr__(self, "segments", tuple((int(s), int(r)) for s, r in self.segments))
        if min(self.width, self.depth, self.heads, self.ffn, self.input_dim) < 1:
            raise ConfigError(f"LongNetConfig: sizes must be >= 1, got {self}")
        if self.width % self.heads:
            raise ConfigError(f"LongNetConfig: width {self.width} is not divisible by heads {self.heads}")
        if not (math.isfinite(self.positional_scale) and self.positional_scale > 0):
            raise ConfigError(f"LongNetConfig: positional_scale must be a positive number, got {self.positional_scale}")
        if self.positional == "sincos2d" and self.width % 4:
            raise ConfigError(f"LongNetConfig: 2-D sin-cos positions need width divisible by 4, got {self.width}")
        if not self.segments:
            raise ConfigError("LongNetConfig: segments must list at least one (segment_length, dilation) pair")
        for s, r in self.segments:
            if r < 1 or s < 1 or s % r:
                raise ConfigError(
                    f"LongNetConfig: segment ({s}, {r}) is invalid; the length must be a positive multiple of the "
                    "dilation"
                )


# ---- dilated attention ---------------------------------------------------------------------------------


def dilated_attention(q: Tensor, k: Tensor, v: Tensor, key_padding_mask: Tensor | None,
                      segments, *, fused: bool | None = None) -> Tensor:
    """q, k, v [B, H, N, d]; key_padding_mask [B, N] with True = real token. Returns [B, H, N, d].

    `fused=None` uses PyTorch's fused attention kernels, which return the log-sum-exp (flash attention on
    CPU, the memory-efficient kernel on CUDA), when no gradient is needed, and plain tensor ops otherwise:
    the merge weights are a function of the log-sum-exp, and the fused kernels' backward does not
    differentiate it. tests/model/test_gpu.py checks the CUDA kernel against the CPU path (float32 to
    2e-5, bfloat16 to 3e-2) and the CUDA gradients against the CPU ones.
    """
    b, h, n, _ = q.shape
    mask = torch.ones(b, n, dtype=torch.bool, device=q.device) if key_padding_mask is None else key_padding_mask.bool()
    if mask.shape != (b, n):
        raise ValueError(f"dilated_attention: key_padding_mask must be [{b}, {n}], got {tuple(mask.shape)}")
    if fused is None:
        needs_grad = torch.is_grad_enabled() and any(t.requires_grad for t in (q, k, v))
        fused = not needs_grad
    outs, lses = zip(*(_branch(q, k, v, mask, int(s), int(r), fused) for s, r in segments))
    lse = torch.stack(lses)  # [branches, B, H, N]
    top = lse.max(dim=0).values
    safe_top = torch.where(torch.isfinite(top), top, torch.zeros_like(top))
    weights = torch.exp(lse - safe_top)  # uncovered (lse = -inf) -> weight 0
    weights = weights / weights.sum(dim=0).clamp_min(torch.finfo(weights.dtype).tiny)
    return sum(w.unsqueeze(-1).to(o.dtype) * o for w, o in zip(weights, outs))


def _branch(q, k, v, mask, seg, rate, fused) -> tuple[Tensor, Tensor]:
    """One (segment, dilation) branch: output [B, H, N, d] (0 where uncovered) and lse [B, H, N] (-inf there)."""
    b, h, n, d = q.shape
    padded = -(-n // seg) * seg
    if padded != n:
        q, k, v = (F.pad(t, (0, 0, 0, padded - n)) for t in (q, k, v))
        mask = F.pad(mask, (0, padded - n), value=False)
    n_seg, kept = padded // seg, seg // rate
    out = q.new_zeros(b, h, padded, d)
    lse = q.new_full((b, h, padded), -torch.inf, dtype=torch.float32)
    for group, (h0, h1) in enumerate(_head_groups(h, rate)):
        offset = group % rate

        def pick(t, h0=h0, h1=h1, offset=offset):
            return t[:, h0:h1].reshape(b, h1 - h0, n_seg, kept, rate, d)[:, :, :, :, offset]

        key_ok = mask.reshape(b, n_seg, kept, rate)[:, :, :, offset]  # [B, S, m]
        o, l = _segment_attention(pick(q), pick(k), pick(v), key_ok, fused)
        # Splitting the sequence axis is always a view, so these writes land in `out` and `lse`.
        out[:, h0:h1].view(b, h1 - h0, n_seg, kept, rate, d)[:, :, :, :, offset] = o
        lse[:, h0:h1].view(b, h1 - h0, n_seg, kept, rate)[:, :, :, :, offset] = l
    return out[:, :, :n], lse[:, :, :n]


def _head_groups(heads: int, rate: int) -> list[tuple[int, int]]:
    """Contiguous head ranges, one per offset 0..rate-1 (or one head per group when heads < rate)."""
    groups = min(heads, rate)
    bounds = [g * heads // groups for g in range(groups + 1)]
    return [(bounds[g], bounds[g + 1]) for g in range(groups)]


def _segment_attention(q, k, v, key_ok, fused) -> tuple[Tensor, Tensor]:
    """Attention inside each segment. q, k, v [B, h, S, m, d]; key_ok [B, S, m]. Returns out, lse (float32)."""
    b, h, s, m, d = q.shape
    flat = [t.permute(0, 2, 1, 3, 4).reshape(b * s, h, m, d) for t in (q, k, v)]
    ok = key_ok.reshape(b * s, m)
    if fused and q.device.type == "cpu":
        o, lse = _fused_cpu(*flat, ok)
    elif fused and q.device.type == "cuda":
        o, lse = _fused_cuda(*flat, ok)
    else:
        o, lse = _plain(*flat, ok)
    empty = ~ok.any(dim=1)  # a segment of padding only: no keys, so no output and weight 0
    if bool(empty.any()):
        o = o.masked_fill(empty[:, None, None, None], 0.0)
        lse = lse.masked_fill(empty[:, None, None], -torch.inf)
    o = o.reshape(b, s, h, m, d).permute(0, 2, 1, 3, 4)
    lse = lse.reshape(b, s, h, m).permute(0, 2, 1, 3)
    return o, lse


def _plain(q, k, v, ok) -> tuple[Tensor, Tensor]:
    scores = (q @ k.transpose(-1, -2)).float() * q.shape[-1] ** -0.5
    scores = scores.masked_fill(~ok[:, None, None, :], -torch.inf)
    lse = torch.logsumexp(scores, dim=-1)
    probs = torch.exp(scores - torch.where(torch.isfinite(lse), lse, torch.zeros_like(lse)).unsqueeze(-1))
    return (probs.to(v.dtype) @ v), lse


def _additive_mask(ok: Tensor, dtype) -> Tensor:
    bias = torch.zeros(ok.shape, dtype=dtype, device=ok.device)
    return bias.masked_fill(~ok, -torch.inf)[:, None, None, :]


def _fused_cpu(q, k, v, ok) -> tuple[Tensor, Tensor]:
    o, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
        q, k, v, 0.0, False, attn_mask=_additive_mask(ok, q.dtype))
    return o, lse.float()


def _fused_cuda(q, k, v, ok) -> tuple[Tensor, Tensor]:
    m = q.shape[2]
    # The kernel wants the bias's last dimension 16-aligned in memory: pad, then view the first m columns.
    aligned = -(-m // 16) * 16
    bias = torch.zeros(ok.shape[0], q.shape[1], m, aligned, dtype=q.dtype, device=q.device)
    bias[..., :m] = _additive_mask(ok, q.dtype)
    bias = bias[..., :m]
    o, lse, _, _ = torch.ops.aten._scaled_dot_product_efficient_attention(q, k, v, bias, True)
    return o, lse[..., :m].float()


# ---- encoder -------------------------------------------------------------------------------------------


def sincos_2d(grid: Tensor, width: int) -> Tensor:
    """[..., 2] (x, y) grid positions -> [..., width]: sin/cos of x, then of y, at width/4 frequencies each."""
    quarter = width // 4
    freq = torch.exp(-math.log(10000.0) * torch.arange(quarter, device=grid.device, dtype=torch.float32) / quarter)
    parts = []
    for axis in range(2):
        angle = grid[..., axis : axis + 1].float() * freq
        parts += [angle.sin(), angle.cos()]
    return torch.cat(parts, dim=-1)


class LongNetLayer(nn.Module):
    """Pre-norm transformer layer with dilated attention and a GELU FFN; no dropout, non-causal."""

    def __init__(self, config: LongNetConfig) -> None:
        super().__init__()
        self.heads, self.segments = config.heads, config.segments
        self.norm1 = nn.LayerNorm(config.width, eps=config.layer_norm_eps)
        self.qkv = nn.Linear(config.width, 3 * config.width)
        self.proj = nn.Linear(config.width, config.width)
        self.norm2 = nn.LayerNorm(config.width, eps=config.layer_norm_eps)
        self.ffn = nn.Sequential(nn.Linear(config.width, config.ffn), nn.GELU(), nn.Linear(config.ffn, config.width))

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        b, n, w = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(b, n, 3, self.heads, w // self.heads).permute(2, 0, 3, 1, 4)
        attended = dilated_attention(q, k, v, mask, self.segments)
        x = x + self.proj(attended.transpose(1, 2).reshape(b, n, w))
        return x + self.ffn(self.norm2(x))


class LongNetEncoder(nn.Module):
    def __init__(self, config: LongNetConfig) -> None:
        super().__init__()
        self.config = config
        self.input_proj = nn.Linear(config.input_dim, config.width) if config.input_dim != config.width else nn.Identity()
        self.layers = nn.ModuleList(LongNetLayer(config) for _ in range(config.depth))

    def forward(self, features: Tensor, coords: Tensor | None = None, padding_mask: Tensor | None = None,
                *, tile_size: float | None = None) -> list[Tensor]:
        """features [B, N, input_dim]; coords [B, N, 2] tile grid positions (or level-0 pixels with
        `tile_size`); padding_mask [B, N], True = real tile. Returns one [B, N, width] tensor per layer."""
        if features.dim() != 3 or features.shape[-1] != self.config.input_dim:
            raise ValueError(
                f"LongNetEncoder: features must be [B, N, {self.config.input_dim}], got {tuple(features.shape)}")
        b, n, _ = features.shape
        mask = torch.ones(b, n, dtype=torch.bool, device=features.device) if padding_mask is None else padding_mask.bool()
        x = self.input_proj(features)
        if self.config.positional == "sincos2d" and coords is not None:
            x = x + self._positions(coords, mask, tile_size).to(x.dtype)
        outputs = []
        for layer in self.layers:
            x = layer(x, mask)
            outputs.append(x)
        return outputs

    @torch.no_grad()
    def standardise_inputs(self, mean: Tensor, std: Tensor, floor: float = 0.05) -> None:
        """Fold per-dimension feature standardisation, (x − mean) / std, into the input projection.

        Tile-encoder features are often far from zero-mean, unit-variance, and what tells slides apart can be a
        small variation on a large constant (hand-made stain/texture features vary by ~1 % of their value).
        A freshly initialised projection then sees mostly the constant, and the branch learns slowly or not at
        all. Folding the statistics into W and b (W' = W / std, b' = b − W' · mean) is exactly the same function
        as standardising every input, with no new module or config field, so checkpoints stay compatible. A
        dimension whose std is below `floor` × the median std is scaled as if its std were that (no division by
        ~0). Call it once, at initialisation, with statistics of the training slides' features.
        """
        if not isinstance(self.input_proj, nn.Linear):
            raise ValueError("standardise_inputs needs an input projection (input_dim differs from width)")
        mean = mean.to(self.input_proj.weight)
        std = std.to(self.input_proj.weight)
        if mean.shape != (self.config.input_dim,) or std.shape != (self.config.input_dim,):
            raise ValueError(f"mean and std must have shape ({self.config.input_dim},)")
        std = std.clamp_min(float(std.median()) * floor).clamp_min(torch.finfo(std.dtype).tiny)
        weight = self.input_proj.weight / std
        self.input_proj.bias -= weight @ mean
        self.input_proj.weight.copy_(weight)

    def _positions(self, coords: Tensor, mask: Tensor, tile_size: float | None) -> Tensor:
        if coords.shape[:2] != mask.shape or coords.shape[-1] != 2:
            raise ValueError(f"LongNetEncoder: coords must be [B, N, 2] matching features, got {tuple(coords.shape)}")
        grid = coords.float() / tile_size if tile_size else coords.float()
        # Origin at the slide's first tile, so where the tissue sits on the glass does not matter.
        big = torch.finfo(grid.dtype).max
        origin = grid.masked_fill(~mask[..., None], big).amin(dim=1, keepdim=True)
        origin = torch.where(origin == big, torch.zeros_like(origin), origin)
        return self.config.positional_scale * sincos_2d(torch.floor(grid - origin + 1e-3), self.config.width)
