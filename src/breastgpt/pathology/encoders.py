"""Tile encoders: a registry of architectures that turn (B, H, W, 3) uint8 tiles into (B, D) float32.

Weights are never fetched: gated models (CONCH v1.5, UNI, Prov-GigaPath, H-optimus) load from a local
safetensors file the user obtained under the model's own licence; `convert_checkpoint` turns a pickle
checkpoint into safetensors once with `torch.load(weights_only=True)` and records both hashes. The default,
`stain-texture-v1`, needs no weights at all (see `breastgpt.pathology.descriptors`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
HOPTIMUS_MEAN = (0.707223, 0.578729, 0.703617)
HOPTIMUS_STD = (0.211883, 0.230117, 0.177517)
DEFAULT_ENCODER = "stain-texture-v1"


@dataclass(frozen=True)
class EncoderSpec:
    """How to build one encoder. `build()` returns an nn.Module mapping normalised (B, 3, S, S) to (B, dim)."""

    name: str
    dim: int
    input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    build: Callable[[], nn.Module]
    needs_weights: bool
    description: str
    licence: str
    convert_state: Callable[[dict[str, torch.Tensor], nn.Module], dict[str, torch.Tensor]] | None = field(
        default=None, repr=False)


_REGISTRY: dict[str, EncoderSpec] = {}


def _key(name: str) -> str:
    return name.strip().lower().replace("_", "-")


def register_encoder(spec: EncoderSpec) -> None:
    if _key(spec.name) in _REGISTRY:
        raise ValueError(f"tile encoder {spec.name!r} is already registered")
    _REGISTRY[_key(spec.name)] = spec


def encoder_names() -> list[str]:
    return sorted(spec.name for spec in _REGISTRY.values())


def get_spec(name: str) -> EncoderSpec:
    try:
        return _REGISTRY[_key(name)]
    except KeyError:
        raise ValueError(f"unknown tile encoder {name!r}; available: {', '.join(encoder_names())}") from None


class TileEncoder:
    """A built encoder: uint8 tiles in, float32 features out, on CPU or CUDA (autocast on CUDA)."""

    def __init__(self, spec: EncoderSpec, module: nn.Module, weights_sha256: str | None, device: str) -> None:
        self.spec = spec
        self.name = spec.name
        self.dim = spec.dim
        self.input_size = spec.input_size
        self.mean = spec.mean
        self.std = spec.std
        self.weights_sha256 = weights_sha256
        self.device = torch.device(device)
        self.module = module.to(self.device).eval()
        self._mean = torch.tensor(spec.mean, device=self.device).view(1, 3, 1, 1)
        self._std = torch.tensor(spec.std, device=self.device).view(1, 3, 1, 1)

    @property
    def identity(self) -> dict[str, Any]:
        return {"encoder": self.name, "weights_sha256": self.weights_sha256 or "none", "dim": self.dim,
                "input_size": self.input_size, "mean": list(self.mean), "std": list(self.std)}

    def preprocess(self, batch: np.ndarray) -> torch.Tensor:
        if batch.dtype != np.uint8 or batch.ndim != 4 or batch.shape[-1] != 3:
            raise ValueError(f"encode expects (B, H, W, 3) uint8 tiles, got {batch.dtype} {batch.shape}")
        x = torch.from_numpy(np.ascontiguousarray(batch)).to(self.device).permute(0, 3, 1, 2).float() / 255.0
        if x.shape[-2:] != (self.input_size, self.input_size):
            x = torch.nn.functional.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear",
                                                align_corners=False, antialias=True)
        return (x - self._mean) / self._std

    @torch.inference_mode()
    def encode(self, batch: np.ndarray) -> np.ndarray:
        """(B, H, W, 3) uint8 → (B, dim) float32."""
        if len(batch) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        x = self.preprocess(batch)
        if self.device.type == "cuda":
            dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
            with torch.autocast("cuda", dtype=dtype):
                out = self.module(x)
        else:
            out = self.module(x)
        out = out.float().cpu().numpy()
        if out.shape != (len(batch), self.dim):
            raise RuntimeError(f"encoder {self.name} returned {out.shape}, expected {(len(batch), self.dim)}")
        return out


def build_encoder(name: str = DEFAULT_ENCODER, *, weights: str | Path | None = None,
                  device: str = "cpu") -> TileEncoder:
    """Build a registered encoder; weight-bearing ones need `weights`, a local .safetensors file."""
    spec = get_spec(name)
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but torch sees no CUDA device; use --device cpu")
    if spec.needs_weights and weights is None:
        raise ValueError(f"encoder {spec.name} needs --weights PATH (a local .safetensors file obtained under "
                         f"the model's licence); nothing is downloaded")
    if not spec.needs_weights and weights is not None:
        raise ValueError(f"encoder {spec.name} takes no weights; drop --weights")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)  # random-init encoders (tiny-random) must be identical on every build
        module = spec.build()
    sha = None
    if spec.needs_weights:
        sha = load_weights(module, Path(weights), spec)  # type: ignore[arg-type]
    elif spec.name == "tiny-random":
        sha = state_dict_sha256(module)
    return TileEncoder(spec, module, sha, device)


# ------------------------------------------------------------------------------------------ weights



def state_dict_sha256(module: nn.Module) -> str:
    """Hash of a module's tensors (names, dtypes, shapes, bytes) in name order."""
    digest = hashlib.sha256()
    for key, tensor in sorted(module.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{key}|{t.dtype}|{tuple(t.shape)}".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def load_weights(module: nn.Module, path: Path, spec: EncoderSpec) -> str:
    """Load a safetensors state dict strictly; returns the file's sha256."""
    from safetensors.torch import load_file

    if not path.is_file():
        raise ValueError(f"{path}: weights file not found")
    if path.suffix != ".safetensors":
        raise ValueError(f"{path}: weights must be .safetensors; convert a pickle checkpoint once with "
                         f"`breastgpt slides convert-weights {path} OUT.safetensors` (weights_only load)")
    state = load_file(str(path))
    if spec.convert_state is not None:
        state = spec.convert_state(state, module)
    missing, unexpected = module.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(f"{path}: weights do not fit {spec.name}: {len(missing)} missing "
                         f"(e.g. {missing[:3]}), {len(unexpected)} unexpected (e.g. {unexpected[:3]})")
    return file_sha256(path)


def convert_checkpoint(source: str | Path, target: str | Path, *, key: str | None = None) -> dict[str, Any]:
    """Convert a PyTorch pickle checkpoint to safetensors, once, without executing pickled code.

    `torch.load(weights_only=True)` refuses anything but tensors and plain containers. `key` picks a nested
    state dict (e.g. "state_dict", "model"). Writes `target` atomically plus `target.manifest.json` holding
    both sha256 values; the checkpoint is for local use only and must not be redistributed.
    """
    from safetensors.torch import save_file

    source, target = Path(source), Path(target)
    loaded = torch.load(source, map_location="cpu", weights_only=True)
    if key is not None:
        loaded = loaded[key]
    if not isinstance(loaded, dict) or not all(isinstance(v, torch.Tensor) for v in loaded.values()):
        raise ValueError(f"{source}: not a flat state dict of tensors; pass key= naming the nested one")
    with atomic_path(target) as tmp:
        save_file({k: v.contiguous() for k, v in loaded.items()}, str(tmp))
    manifest = {"source": str(source), "source_sha256": file_sha256(source), "target": str(target),
                "target_sha256": file_sha256(target), "tensors": len(loaded), "licence_note":
                "converted for local use; redistribution is governed by the model's own licence"}
    atomic_write_json(target.with_name(target.name + ".manifest.json"), manifest, sort_keys=False)
    return manifest


# ------------------------------------------------------------------------------------ architectures

def _timm_vit(**kwargs: Any) -> nn.Module:
    from timm.models.vision_transformer import VisionTransformer

    return VisionTransformer(num_classes=0, **kwargs)


class AttentionalPooler(nn.Module):
    """Learned queries attend over the trunk's tokens (CoCa-style contrastive pooler).

    Parameter names follow the published CONCH v1.5 checkpoint layout so its state dict loads strictly."""

    def __init__(self, d_model: int, context_dim: int, n_head: int = 8, n_queries: int = 1) -> None:
        super().__init__()
        self.query = nn.Parameter(torch.randn(n_queries, d_model))
        self.heads = n_head
        self.ln_k = nn.LayerNorm(context_dim)
        self.ln_q = nn.LayerNorm(d_model)
        self.to_q = nn.Linear(d_model, d_model, bias=False)
        self.to_kv = nn.Linear(context_dim, d_model * 2, bias=False)
        self.to_out = nn.Linear(d_model, d_model, bias=False)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        b, n, _ = tokens.shape
        q = self.to_q(self.ln_q(self.query)).expand(b, -1, -1)
        k, v = self.to_kv(self.ln_k(tokens)).chunk(2, dim=-1)

        def heads(t: torch.Tensor) -> torch.Tensor:
            return t.reshape(b, t.shape[1], self.heads, -1).transpose(1, 2)

        out = nn.functional.scaled_dot_product_attention(heads(q), heads(k), heads(v))
        return self.to_out(out.transpose(1, 2).reshape(b, -1, q.shape[-1]))


class ConchV15Vision(nn.Module):
    """CONCH v1.5 image tower: ViT-L/16 trunk (width 1024, 24 blocks, 16 heads, LayerScale 1e-6) on 448 px
    tiles, all tokens pooled by one learned 768-d query, then LayerNorm → 768-d feature."""

    def __init__(self, trunk: nn.Module | None = None) -> None:
        super().__init__()
        self.trunk = trunk or _timm_vit(img_size=448, patch_size=16, embed_dim=1024, depth=24, num_heads=16,
                                        mlp_ratio=4.0, qkv_bias=True, init_values=1e-6, global_pool="")
        width = self.trunk.embed_dim
        self.attn_pool_contrast = AttentionalPooler(d_model=768, context_dim=width, n_head=8, n_queries=1)
        self.ln_contrast = nn.LayerNorm(768)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.trunk.forward_features(x)
        return self.ln_contrast(self.attn_pool_contrast(tokens)[:, 0])


def _conch_state(state: dict[str, torch.Tensor], module: nn.Module) -> dict[str, torch.Tensor]:
    """The published tower stores a 14×14 position grid and interpolates it to 28×28 (bicubic, scale factor
    28.1/14) on every 448 px forward; doing that interpolation once at load time is equivalent."""
    key = "trunk.pos_embed"
    target = module.state_dict()[key]
    if key in state and state[key].shape != target.shape:
        pos = state[key]
        cls_pos, grid = pos[:, :1], pos[:, 1:]
        side = int(round(grid.shape[1] ** 0.5))
        new_side = int(round((target.shape[1] - 1) ** 0.5))
        grid = grid.reshape(1, side, side, -1).permute(0, 3, 1, 2).float()
        scale = (new_side + 0.1) / side
        grid = nn.functional.interpolate(grid, scale_factor=(scale, scale), mode="bicubic")
        grid = grid.permute(0, 2, 3, 1).reshape(1, new_side * new_side, -1).to(pos.dtype)
        state = dict(state) | {key: torch.cat([cls_pos, grid], dim=1)}
    return state


def _register_builtin() -> None:
    from breastgpt.pathology.descriptors import DESCRIPTOR_DIM, StainTextureDescriptor

    register_encoder(EncoderSpec(
        "stain-texture-v1", DESCRIPTOR_DIM, 256, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), StainTextureDescriptor, False,
        "weight-free colour (optical density, H&E/DAB deconvolution), LBP, co-occurrence, gradient and blob "
        "statistics", "Apache-2.0 (ours)"))
    register_encoder(EncoderSpec(
        "tiny-random", 32, 32, IMAGENET_MEAN, IMAGENET_STD,
        lambda: _timm_vit(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2, global_pool="token"),
        False, "seeded random ViT (32-d) for tests; features carry no meaning", "Apache-2.0 (ours)"))
    register_encoder(EncoderSpec(
        "conch_v1_5", 768, 448, IMAGENET_MEAN, IMAGENET_STD, ConchV15Vision, True,
        "CONCH v1.5 vision tower (ViT-L/16 trunk, 448 px, attentional pooler → 768-d)",
        "weights: MahmoodLab licence (CC-BY-NC-ND, gated); architecture here is ours", _conch_state))
    register_encoder(EncoderSpec(
        "uni_vit_l16", 1024, 224, IMAGENET_MEAN, IMAGENET_STD,
        lambda: _timm_named("vit_large_patch16_224", img_size=224, patch_size=16, init_values=1e-5,
                            dynamic_img_size=True),
        True, "UNI-style ViT-L/16, 224 px, class token → 1024-d", "weights: model's own licence (gated)"))
    register_encoder(EncoderSpec(
        "gigapath_vit_g14", 1536, 224, IMAGENET_MEAN, IMAGENET_STD,
        lambda: _timm_named("vit_giant_patch14_dinov2", img_size=224, patch_size=16, embed_dim=1536, depth=40,
                            num_heads=24, init_values=1e-5, mlp_ratio=5.33334),
        True, "Prov-GigaPath-style tile encoder (DINOv2 ViT-g with SwiGLU, 16 px patches), 224 px → 1536-d",
        "weights: model's own licence (gated)"))
    register_encoder(EncoderSpec(
        "hoptimus_vit_g14", 1536, 224, HOPTIMUS_MEAN, HOPTIMUS_STD,
        lambda: _timm_named("vit_giant_patch14_reg4_dinov2", img_size=224, init_values=1e-5,
                            dynamic_img_size=False),
        True, "H-optimus-style ViT-g/14 with 4 register tokens, 224 px → 1536-d", "weights: model's own licence"))


def _timm_named(architecture: str, **kwargs: Any) -> nn.Module:
    """A timm architecture by name, randomly initialised (pretrained=False never touches the network)."""
    import timm

    return timm.create_model(architecture, pretrained=False, num_classes=0, **kwargs)


_register_builtin()
from breastgpt.artifacts import atomic_path, atomic_write_json, sha256_file as file_sha256
