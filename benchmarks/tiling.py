"""Tiling throughput: ours (low-res tissue mask → grid → batched reads in worker processes) against a naive
per-tile OpenSlide loop, on a synthetic 40,000 × 40,000 pyramidal slide at 20× (0.5 µm/px), 512 px tiles.
Also encoder throughput on CPU (tiny-random, the weight-free descriptor, a ViT-B/16-sized network).

    python benchmarks/tiling.py [--slide /tmp/bench_40k.tif] [--size 40000] [--quick]

Writes benchmarks/results/tiling.json. The slide is generated once into /tmp, never into the repository.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from breastgpt.io.wsi import open_slide  # noqa: E402
from breastgpt.pathology.synthetic import SyntheticScene, write_pyramidal_tiff  # noqa: E402
from breastgpt.pathology.tiling import SlideSource, TilingConfig, build_grid, iter_tile_batches  # noqa: E402
from breastgpt.pathology.tissue import rgb_to_hsv, tissue_mask_for_slide  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "tiling.json"


def ensure_slide(path: Path, size: int) -> Path:
    if path.is_file():
        return path
    started = time.time()
    scene = SyntheticScene.random(size, size, mpp=0.5, seed=40, n_blobs=3)
    write_pyramidal_tiff(path, scene, downsamples=(1, 4, 16, 64), tile=512)
    print(f"generated {path} in {time.time() - started:.0f} s", flush=True)
    return path


def ours(path: Path, workers: int, limit: int | None) -> dict:
    started = time.time()
    with open_slide(path) as slide:
        mask, _ = tissue_mask_for_slide(slide)
        grid = build_grid(slide, mask, TilingConfig())
    planned = time.time() - started
    if limit is not None:
        grid = _truncate(grid, limit)
    count = 0
    for coords, pixels in iter_tile_batches(SlideSource(str(path)), grid, batch_size=32, workers=workers):
        count += len(pixels)
    seconds = time.time() - started
    return {"workers": workers, "tiles": count, "seconds": round(seconds, 2), "plan_seconds": round(planned, 2),
            "tiles_per_s": round(count / seconds, 2), "coords": grid.coords}


def _truncate(grid, limit: int):  # noqa: ANN001, ANN202
    from dataclasses import replace

    return replace(grid, coords=grid.coords[:limit], tissue_fraction=grid.tissue_fraction[:limit])


def naive(path: Path, positions: np.ndarray | None, footprint: int, width: int, height: int) -> dict:
    """The loop many pipelines start with: visit every grid position, read it, decide on the tile itself."""
    import openslide

    started = time.time()
    slide = openslide.OpenSlide(str(path))
    if positions is None:
        ys, xs = np.mgrid[0:height // footprint, 0:width // footprint]
        positions = np.stack([xs.ravel() * footprint, ys.ravel() * footprint], axis=1)
        decide = True
    else:
        decide = False
    kept = 0
    for x, y in positions:
        tile = np.asarray(slide.read_region((int(x), int(y)), 0, (footprint, footprint)).convert("RGB"))
        if not decide:
            kept += 1
            continue
        _, sat, _ = rgb_to_hsv(tile[::8, ::8])
        kept += int((sat > 0.07).mean() >= 0.25)
    seconds = time.time() - started
    return {"visited": int(len(positions)), "tiles": kept, "seconds": round(seconds, 2),
            "tiles_per_s": round(kept / seconds, 2)}


def encoder_rates(batches: int) -> dict:
    import torch
    import timm

    from breastgpt.pathology.encoders import build_encoder

    tiles = np.random.default_rng(0).integers(0, 256, (16, 512, 512, 3), dtype=np.uint8)
    rates = {}
    for name in ("tiny-random", "stain-texture-v1"):
        rates[name] = _rate(build_encoder(name).encode, tiles, batches)
    vit = timm.create_model("vit_base_patch16_224", pretrained=False, num_classes=0).eval()
    tiny = build_encoder("tiny-random")

    @torch.inference_mode()
    def vit_encode(batch: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(batch).permute(0, 3, 1, 2).float() / 255
        x = torch.nn.functional.interpolate(x, size=(224, 224), mode="bilinear", antialias=True)
        return vit((x - tiny._mean.cpu()) / tiny._std.cpu()).numpy()

    rates["vit_b16_224 (random init, 86 M params)"] = _rate(vit_encode, tiles, batches)
    return rates


def _rate(encode, tiles: np.ndarray, batches: int) -> dict:  # noqa: ANN001
    encode(tiles[:2])  # warm-up
    started = time.time()
    for _ in range(batches):
        encode(tiles)
    seconds = time.time() - started
    return {"tiles": batches * len(tiles), "seconds": round(seconds, 2),
            "tiles_per_s": round(batches * len(tiles) / seconds, 2)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--slide", type=Path, default=Path("/tmp/bench_40k.tif"))
    parser.add_argument("--size", type=int, default=40_000)
    parser.add_argument("--limit", type=int, default=None, help="cap tissue tiles read (quick runs)")
    parser.add_argument("--encoder-batches", type=int, default=2)
    args = parser.parse_args()
    path = ensure_slide(args.slide, args.size)
    load: dict[str, list[float]] = {"start": list(os.getloadavg())}
    runs = {}
    for workers in (0, 1, 2):
        runs[f"ours_workers_{workers}"] = ours(path, workers, args.limit)
        load[f"after_ours_{workers}"] = list(os.getloadavg())
        print(workers, {k: v for k, v in runs[f"ours_workers_{workers}"].items() if k != "coords"}, flush=True)
    kept = runs["ours_workers_2"]["coords"]
    with open_slide(path) as slide:
        width, height = slide.dimensions
    footprint = 512
    limit_naive = None if args.limit is None else np.inf
    full = naive(path, None, footprint, width, height) if limit_naive is None else None
    load["after_naive_full"] = list(os.getloadavg())
    same = naive(path, kept, footprint, width, height)
    load["after_naive_same_tiles"] = list(os.getloadavg())
    print("naive", full, same, flush=True)
    encoders = encoder_rates(args.encoder_batches)
    load["end"] = list(os.getloadavg())
    for run in runs.values():
        run.pop("coords")
    best = runs["ours_workers_2"]["tiles_per_s"]
    result = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "cpu_count": os.cpu_count(), "python": platform.python_version()},
        "loadavg": load,
        "slide": {"path": str(path), "dimensions": [width, height], "mpp": 0.5, "levels": [1, 4, 16, 64]},
        "tiling": {"target_mpp": 0.5, "tile_size": 512, "min_tissue_fraction": 0.25},
        "ours": runs,
        "naive_all_positions": full,
        "naive_same_tiles": same,
        "ratio_ours2_vs_naive_all_positions": round(best / full["tiles_per_s"], 2) if full else None,
        "ratio_ours2_vs_naive_same_tiles": round(best / same["tiles_per_s"], 2),
        "ratio_ours1_vs_naive_same_tiles": round(runs["ours_workers_1"]["tiles_per_s"] / same["tiles_per_s"], 2),
        "encoders_cpu": encoders,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    tmp = RESULTS.with_suffix(".json.partial")
    tmp.write_text(json.dumps(result, indent=2))
    tmp.replace(RESULTS)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
