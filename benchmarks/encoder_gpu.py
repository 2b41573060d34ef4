"""Tile-encoder throughput on a GPU: the production path (`TileEncoder.encode`, bf16 autocast) vs float32.

Each encoder is built through `build_encoder` from a random-weight safetensors file of its own architecture
(the real weights are gated; throughput does not depend on their values). Tiles are 512×512 uint8 arrays as
the tiler yields them at 20×, so the figure includes the host→device copy and the on-GPU resize to the
encoder's input size. The float32 run of the same module in the same process is the baseline.

    python benchmarks/encoder_gpu.py [--encoders conch_v1_5 uni_vit_l16] [--batch 128] [--batches 8]
    python benchmarks/encoder_gpu.py --tiny      # tiny-random on CPU: tests the script itself
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import RESULTS, write_result  # noqa: E402

from breastgpt.pathology.encoders import TileEncoder, build_encoder, get_spec  # noqa: E402


def random_weights(name: str, folder: Path) -> Path:
    from safetensors.torch import save_file

    torch.manual_seed(0)
    module = get_spec(name).build()
    path = folder / f"{name}-random.safetensors"
    save_file({k: v.contiguous() for k, v in module.state_dict().items()}, str(path))
    return path


def tiles_per_second(encode, tiles: np.ndarray, batch: int, batches: int, device: str) -> float:
    encode(tiles[:batch])  # warm-up: kernels, allocator
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for i in range(batches):
        chunk = tiles[(i * batch) % len(tiles):][:batch]
        encode(chunk)
    if device == "cuda":
        torch.cuda.synchronize()
    return batch * batches / (time.perf_counter() - start)


def float32_encode(encoder: TileEncoder):
    @torch.inference_mode()
    def encode(batch: np.ndarray) -> np.ndarray:
        return encoder.module(encoder.preprocess(batch)).float().cpu().numpy()

    return encode


def bench_encoder(name: str, args, folder: Path) -> dict:
    spec = get_spec(name)
    weights = random_weights(name, folder) if spec.needs_weights else None
    encoder = build_encoder(name, weights=weights, device=args.device)
    tiles = np.random.default_rng(0).integers(0, 256, (args.batch * 2, args.tile, args.tile, 3), dtype=np.uint8)
    if args.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    fast = tiles_per_second(encoder.encode, tiles, args.batch, args.batches, args.device)
    peak = torch.cuda.max_memory_allocated() / 2**30 if args.device == "cuda" else None
    base = tiles_per_second(float32_encode(encoder), tiles, args.batch, args.batches, args.device)
    bf16, fp32 = encoder.encode(tiles[:8]), float32_encode(encoder)(tiles[:8])
    cosine = float(np.mean(np.sum(bf16 * fp32, 1) / (np.linalg.norm(bf16, axis=1) * np.linalg.norm(fp32, axis=1))))
    return {"input_size": spec.input_size, "dim": spec.dim,
            "params": sum(p.numel() for p in encoder.module.parameters()),
            "production_tiles_per_second": fast, "float32_tiles_per_second": base, "ratio": fast / base,
            "production_peak_memory_gib": peak, "mean_cosine_production_vs_float32": cosine}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tiny", action="store_true", help="tiny-random encoder on CPU (tests the script)")
    p.add_argument("--encoders", nargs="+", default=["conch_v1_5", "uni_vit_l16"])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--batches", type=int, default=8)
    p.add_argument("--tile", type=int, default=512)
    p.add_argument("--output", type=Path, default=RESULTS / "encoder_gpu.json")
    args = p.parse_args(argv)
    if args.tiny:
        args.encoders, args.device, args.batch, args.batches, args.tile = ["tiny-random"], "cpu", 8, 2, 64
    torch.backends.cuda.matmul.allow_tf32 = False  # the float32 baseline is true float32
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.encoders:
            results[name] = bench_encoder(name, args, Path(tmp))
            r = results[name]
            print(f"{name}: {r['production_tiles_per_second']:.1f} tiles/s (production) vs "
                  f"{r['float32_tiles_per_second']:.1f} float32 (x{r['ratio']:.2f}), cosine {r['mean_cosine_production_vs_float32']:.4f}")
    payload = {"device": args.device,
               "gpu": torch.cuda.get_device_name(0) if args.device == "cuda" else None,
               "batch": args.batch, "batches": args.batches, "tile_px": args.tile, "results": results}
    write_result("encoder_gpu", payload, args.output)
    return payload


if __name__ == "__main__":
    main()
