"""GPU benchmark for issue 5, acceptance point 6 (run by the lead when a GPU is lent).

1. 8B BreastGPT with random bf16 weights: one training step's forward + backward on 4,096 text tokens that
   include a 45,000-tile slide (128 kept tokens), against the same step with no slide (the baseline,
   measured in the same run): time and peak memory of each.
2. Latency of LongNet + projector + token selection for a 5,987-tile slide (inference), with LongNet alone
   as the in-run baseline.

`--tiny` runs the same code on the tiny flavour (CPU is fine) so the script itself is tested.
Run: python benchmarks/model_gpu.py [--tiny] [--device cuda] [--output PATH]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import RESULTS, write_result  # noqa: E402

from breastgpt.model import BreastGPTForConditionalGeneration  # noqa: E402
from breastgpt.model.flavours import build_config  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tiny", action="store_true", help="tiny flavour, small sizes (CPU-friendly)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--text-tokens", type=int, default=None, help="sequence length (default 4096; tiny 256)")
    p.add_argument("--tiles", type=int, default=None, help="slide tiles for fwd+bwd (default 45000; tiny 64)")
    p.add_argument("--latency-tiles", type=int, default=None, help="tiles for latency (default 5987; tiny 48)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--no-checkpointing", action="store_true", help="disable gradient checkpointing")
    p.add_argument("--output", type=Path, default=RESULTS / "model_gpu.json")
    args = p.parse_args(argv)
    big = {"text_tokens": 4096, "tiles": 45000, "latency_tiles": 5987}
    small = {"text_tokens": 256, "tiles": 64, "latency_tiles": 48}
    for key, value in (small if args.tiny else big).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


def build_model(tiny: bool, device: str, dtype: torch.dtype) -> BreastGPTForConditionalGeneration:
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # random init straight in the target dtype: no fp32 copy of 8B weights
    try:
        with torch.device(device):
            torch.manual_seed(0)
            model = BreastGPTForConditionalGeneration(build_config("tiny" if tiny else "8b"))
    finally:
        torch.set_default_dtype(previous)
    return model


def slide_inputs(model, tiles: int, device: str, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    side = int(tiles**0.5) + 1
    grid = torch.stack([torch.arange(tiles) % side, torch.arange(tiles) // side], dim=1)
    feats = torch.randn(1, tiles, model.config.slide.feature_dim, generator=torch.Generator().manual_seed(1))
    return {"slide_features": feats.to(device, dtype), "slide_grid": grid[None].to(device),
            "slide_mask": torch.ones(1, tiles, dtype=torch.bool, device=device)}


def text_batch(model, length: int, kept: int, device: str) -> dict[str, torch.Tensor]:
    """Random text ids with, when kept > 0, one <|vision_start|><|histo_pad|>*kept<|vision_end|> block."""
    cfg = model.config
    low = 0
    high = min(cfg.vision_start_token_id, cfg.image_token_id, cfg.histo_token_id)
    ids = torch.randint(low, high, (1, length), generator=torch.Generator().manual_seed(2))
    labels = ids.clone()
    if kept:
        start = 16
        ids[0, start] = cfg.vision_start_token_id
        ids[0, start + 1: start + 1 + kept] = cfg.histo_token_id
        ids[0, start + 1 + kept] = cfg.vision_end_token_id
        labels[0, start: start + kept + 2] = -100
    return {"input_ids": ids.to(device), "labels": labels.to(device),
            "attention_mask": torch.ones_like(ids).to(device)}


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def measure(fn: Callable[[], Any], device: str, repeats: int) -> dict[str, Any]:
    fn()  # warm-up (allocator, kernels)
    _sync(device)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else None
    return {"seconds": times, "median_seconds": sorted(times)[len(times) // 2], "peak_memory_gib": peak}


def train_step(model, batch: dict[str, torch.Tensor]) -> Callable[[], None]:
    def step() -> None:
        model.zero_grad(set_to_none=True)
        model(**batch).loss.backward()

    return step


def bench_train(model, args, dtype) -> dict[str, Any]:
    model.train()
    if not args.no_checkpointing:
        getattr(model, "activation_checkpointing_enable", model.gradient_checkpointing_enable)()
    budget = model.config.selection.slide_budget
    with_slide = {**text_batch(model, args.text_tokens, min(budget, args.tiles), args.device),
                  **slide_inputs(model, args.tiles, args.device, dtype)}
    text_only = text_batch(model, args.text_tokens, 0, args.device)
    base = measure(train_step(model, text_only), args.device, args.repeats)
    slide = measure(train_step(model, with_slide), args.device, args.repeats)
    model.zero_grad(set_to_none=True)
    return {"text_only": base, "with_slide": slide,
            "time_ratio_with_slide_vs_text_only": slide["median_seconds"] / base["median_seconds"]}


@torch.no_grad()
def bench_latency(model, args, dtype) -> dict[str, Any]:
    model.eval()
    inputs = slide_inputs(model, args.latency_tiles, args.device, dtype)
    m = model.model

    def longnet() -> None:
        m.slide_encoder(inputs["slide_features"], inputs["slide_grid"].to(dtype), inputs["slide_mask"])

    def longnet_and_selection() -> None:
        cand = m.slide_candidates(inputs["slide_features"], inputs["slide_grid"], inputs["slide_mask"])[0]
        m.select(cand, "slide", None)

    base = measure(longnet, args.device, args.repeats)
    full = measure(longnet_and_selection, args.device, args.repeats)
    return {"tiles": args.latency_tiles, "longnet_only": base, "longnet_projector_selection": full,
            "selection_share": 1 - base["median_seconds"] / full["median_seconds"]}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    dtype = torch.float32 if args.tiny and args.device == "cpu" else torch.bfloat16
    model = build_model(args.tiny, args.device, dtype)
    payload = {"flavour": "tiny" if args.tiny else "8b", "device": args.device, "dtype": str(dtype),
               "text_tokens": args.text_tokens, "tiles": args.tiles, "repeats": args.repeats,
               "gradient_checkpointing": not args.no_checkpointing,
               "parameters": sum(p.numel() for p in model.parameters())}
    payload["train_step"] = bench_train(model, args, dtype)
    payload["slide_latency"] = bench_latency(model, args, dtype)
    write_result("model_gpu", payload, args.output)
    print(json.dumps({k: v for k, v in payload.items() if k not in ("train_step", "slide_latency")}))
    t, lat = payload["train_step"], payload["slide_latency"]
    print(f"train step: text-only {t['text_only']['median_seconds']:.3f}s, with slide "
          f"{t['with_slide']['median_seconds']:.3f}s (x{t['time_ratio_with_slide_vs_text_only']:.2f}); "
          f"peak {t['with_slide']['peak_memory_gib']} GiB")
    print(f"slide latency ({lat['tiles']} tiles): LongNet {lat['longnet_only']['median_seconds']:.3f}s, "
          f"+projector+selection {lat['longnet_projector_selection']['median_seconds']:.3f}s")
    print(f"wrote {args.output}")
    return payload


if __name__ == "__main__":
    main()
