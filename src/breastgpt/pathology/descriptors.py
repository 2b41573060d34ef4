"""`stain-texture-v1`: a deterministic, weight-free tile descriptor (86-d). Licence: Apache-2.0 (ours).

What it measures, per tile (input 256 px ≈ 1 µm/px when fed 512 px tiles at 0.5 µm/px):
  * stain: optical density (Beer–Lambert), colour-deconvolved onto the Ruifrok–Johnston haematoxylin,
    eosin and DAB vectors — mean, spread and 10/50/90th percentiles of each (15); per-channel OD mean and
    spread and the stained-pixel fraction (7); an 8-bin saturation histogram (8);
  * texture: rotation-invariant uniform local binary patterns at radii 1, 2, 4 (3 × 10); grey-level
    co-occurrence contrast, homogeneity, energy, correlation and entropy at distances 1 and 3 (2 × 5);
  * structure: gradient magnitude mean/spread, haematoxylin gradient and orientation coherence at
    σ = 1, 2, 4 (3 × 4); difference-of-Gaussians blob response of haematoxylin at two nucleus scales (4).

Good for: tissue-type and stain-quality triage, tumour-versus-stroma separation, cohort QC, smoke tests and
demos that must run without gated weights, and a transparent baseline for pathology foundation models. It is
not a substitute for them on fine morphology (grading, mutation prediction).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

DESCRIPTOR_DIM = 86
# Ruifrok & Johnston (2001) stain OD vectors, rows: haematoxylin, eosin, DAB.
_STAINS = np.array([[0.65, 0.70, 0.29], [0.07, 0.99, 0.11], [0.27, 0.57, 0.78]], dtype=np.float64)
_GREY = (0.299, 0.587, 0.114)
_GLCM_LEVELS = 8


def _riu2_table() -> torch.Tensor:
    """Map each 8-bit LBP code to its rotation-invariant uniform class: #ones if ≤ 2 transitions, else 9."""
    table = []
    for code in range(256):
        bits = [(code >> k) & 1 for k in range(8)]
        transitions = sum(bits[k] != bits[(k + 1) % 8] for k in range(8))
        table.append(sum(bits) if transitions <= 2 else 9)
    return torch.tensor(table, dtype=torch.long)


class StainTextureDescriptor(nn.Module):
    """Input (B, 3, S, S) RGB in [0, 1] (mean 0, std 1 normalisation); output (B, 86) float32."""

    def __init__(self) -> None:
        super().__init__()
        stains = _STAINS / np.linalg.norm(_STAINS, axis=1, keepdims=True)
        self.register_buffer("unmix", torch.tensor(np.linalg.inv(stains), dtype=torch.float32), persistent=False)
        self.register_buffer("riu2", _riu2_table(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float().clamp(0, 1)
        od = -torch.log10((x * 255.0 + 1.0) / 256.0)
        conc = torch.einsum("bchw,cs->bshw", od, self.unmix)
        grey = sum(w * x[:, i] for i, w in enumerate(_GREY)).unsqueeze(1)
        haem = conc[:, :1]
        parts = [_stain_stats(conc, od), _saturation_hist(x), _lbp(grey, self.riu2),
                 _glcm(grey), _gradients(grey, haem), _blobs(haem)]
        out = torch.cat(parts, dim=1)
        return torch.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0)


def _stain_stats(conc: torch.Tensor, od: torch.Tensor) -> torch.Tensor:
    flat = conc.flatten(2)[..., ::4]  # percentiles from every 4th pixel: same values to ~1e-3, 4× less sorting
    q = torch.quantile(flat, torch.tensor([0.1, 0.5, 0.9], device=flat.device), dim=2).permute(1, 2, 0)
    stain = torch.cat([flat.mean(2, keepdim=True), flat.std(2, keepdim=True), q], dim=2).flatten(1)
    od_flat = od.flatten(2)
    stained = (od.sum(1) > 0.15).float().flatten(1).mean(1, keepdim=True)
    return torch.cat([stain, od_flat.mean(2), od_flat.std(2), stained], dim=1)


def _saturation_hist(x: torch.Tensor) -> torch.Tensor:
    cmax, cmin = x.max(1).values, x.min(1).values
    sat = torch.where(cmax > 0, (cmax - cmin) / cmax.clamp_min(1e-6), torch.zeros_like(cmax))
    bins = (sat * 8).long().clamp(0, 7).flatten(1)
    return _histogram(bins, 8)


def _histogram(codes: torch.Tensor, n: int) -> torch.Tensor:
    """Row-wise histograms of integer codes in [0, n): one bincount over row-offset codes."""
    rows = codes.shape[0]
    offset = torch.arange(rows, device=codes.device).unsqueeze(1) * n
    counts = torch.bincount((codes + offset).flatten(), minlength=rows * n).view(rows, n)
    return counts.float() / codes.shape[1]


def _shift(img: torch.Tensor, dx: int, dy: int, pad: int) -> torch.Tensor:
    """img shifted so output[y, x] = img[y + dy, x + dx] (replicate border), same size."""
    padded = F.pad(img, (pad, pad, pad, pad), mode="replicate")
    h, w = img.shape[-2:]
    return padded[..., pad + dy:pad + dy + h, pad + dx:pad + dx + w]


def _lbp(grey: torch.Tensor, riu2: torch.Tensor) -> torch.Tensor:
    feats = []
    angles = np.arange(8) * np.pi / 4
    h, w = grey.shape[-2:]
    for radius in (1, 2, 4):
        padded = F.pad(grey, (radius,) * 4, mode="replicate")
        code = torch.zeros(grey.shape, dtype=torch.int32, device=grey.device)
        for k, angle in enumerate(angles):
            dx, dy = int(round(radius * np.cos(angle))), int(round(-radius * np.sin(angle)))
            neighbour = padded[..., radius + dy:radius + dy + h, radius + dx:radius + dx + w]
            code += (neighbour >= grey).to(torch.int32) * (1 << k)
        feats.append(_histogram(riu2[code.long()].flatten(1), 10))
    return torch.cat(feats, dim=1)


def _glcm(grey: torch.Tensor) -> torch.Tensor:
    levels = _GLCM_LEVELS
    q = (grey[:, 0] * levels).long().clamp(0, levels - 1)
    i = torch.arange(levels, device=grey.device, dtype=torch.float32)
    di = (i[:, None] - i[None, :]) ** 2
    feats = []
    for distance in (1, 3):
        props = torch.zeros(grey.shape[0], 5, device=grey.device)
        for dx, dy in ((distance, 0), (0, distance), (distance, distance), (distance, -distance)):
            p = _cooccurrence(q, dx, dy, levels)
            props += _haralick(p, i, di)
        feats.append(props / 4)
    return torch.cat(feats, dim=1)


def _cooccurrence(q: torch.Tensor, dx: int, dy: int, levels: int) -> torch.Tensor:
    h, w = q.shape[-2:]
    y0, y1 = max(0, -dy), h - max(0, dy)
    a = q[:, y0:y1, 0:w - dx]
    b = q[:, y0 + dy:y1 + dy, dx:w]
    counts = _histogram((a * levels + b).flatten(1), levels * levels).view(-1, levels, levels)
    symmetric = counts + counts.transpose(1, 2)
    return symmetric / symmetric.sum((1, 2), keepdim=True).clamp_min(1e-12)


def _haralick(p: torch.Tensor, i: torch.Tensor, di: torch.Tensor) -> torch.Tensor:
    contrast = (p * di).sum((1, 2))
    homogeneity = (p / (1 + di)).sum((1, 2))
    energy = (p * p).sum((1, 2))
    marginal = p.sum(2)
    mu = (marginal * i).sum(1)
    var = (marginal * (i - mu[:, None]) ** 2).sum(1)
    cov = (p * (i[None, :, None] - mu[:, None, None]) * (i[None, None, :] - mu[:, None, None])).sum((1, 2))
    correlation = torch.where(var > 1e-12, cov / var.clamp_min(1e-12), torch.ones_like(var))
    entropy = -(p * torch.log(p.clamp_min(1e-12))).sum((1, 2))
    return torch.stack([contrast, homogeneity, energy, correlation, entropy], dim=1)


def _gaussian(img: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of every channel independently (reflect border)."""
    radius = max(1, int(round(3 * sigma)))
    t = torch.arange(-radius, radius + 1, device=img.device, dtype=img.dtype)
    kernel = torch.exp(-(t * t) / (2 * sigma * sigma))
    kernel = kernel / kernel.sum()
    channels = img.shape[1]
    out = F.conv2d(F.pad(img, (radius, radius, 0, 0), mode="reflect"),
                   kernel.view(1, 1, 1, -1).expand(channels, 1, 1, -1), groups=channels)
    return F.conv2d(F.pad(out, (0, 0, radius, radius), mode="reflect"),
                    kernel.view(1, 1, -1, 1).expand(channels, 1, -1, 1), groups=channels)


def _sobel(img: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    gx = (_shift(img, 1, 0, 1) - _shift(img, -1, 0, 1)) / 2
    gy = (_shift(img, 0, 1, 1) - _shift(img, 0, -1, 1)) / 2
    return gx, gy


def _gradients(grey: torch.Tensor, haem: torch.Tensor) -> torch.Tensor:
    """Scales σ = 1, 2, 4 (input pixels) as σ = 1 on a 2×-average-pooled pyramid: the same scale space at a
    fraction of the cost of wide kernels. Gradients are rescaled to input-pixel units."""
    feats = []
    both = torch.cat([grey, haem], dim=1)
    for octave in range(3):
        if octave:
            both = F.avg_pool2d(both, 2)
        smooth = _gaussian(both, 1.0)
        gx, gy = _sobel(smooth)
        gx, gy = gx / 2**octave, gy / 2**octave
        magnitude = torch.sqrt(gx * gx + gy * gy + 1e-12)
        g_mag, h_mag = magnitude[:, 0].flatten(1), magnitude[:, 1].flatten(1)
        tensor = _gaussian(torch.cat([gx[:, :1] ** 2, gy[:, :1] ** 2, gx[:, :1] * gy[:, :1]], dim=1), 2.0)
        jxx, jyy, jxy = tensor[:, 0], tensor[:, 1], tensor[:, 2]
        coherence = torch.sqrt((jxx - jyy) ** 2 + 4 * jxy * jxy) / (jxx + jyy).clamp_min(1e-8)
        feats.append(torch.stack([g_mag.mean(1), g_mag.std(1), h_mag.mean(1), coherence.flatten(1).mean(1)], dim=1))
    return torch.cat(feats, dim=1)


def _blobs(haem: torch.Tensor) -> torch.Tensor:
    """Difference of Gaussians (σ vs 2σ) at σ = 1.5 and 3 input pixels, the second on a 2× pyramid level."""
    feats = []
    for octave in range(2):
        level = F.avg_pool2d(haem, 2) if octave else haem
        dog = (_gaussian(level, 1.5) - _gaussian(level, 3.0)).flatten(1)
        feats.append(torch.stack([dog.clamp_min(0).mean(1), (dog > 0.05).float().mean(1)], dim=1))
    return torch.cat(feats, dim=1)
