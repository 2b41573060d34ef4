"""Parameter counts of the 4B/8B BreastGPT configs built on the meta device (no memory, no weights).

Compares the backbone (everything but the slide branch) with the published Qwen3-VL checkpoints' tensor
counts and reports the slide branch separately. Published totals, "calculated from the tensors stored in
the upstream checkpoint": https://huggingface.co/OpenExplorer/Qwen3-VL-8B-Instruct (8.767 B; ViT 576.4 M,
LM 8.191 B) and https://huggingface.co/OpenExplorer/Qwen3-VL-4B-Instruct (4.438 B; ViT 415.3 M, LM 4.022 B).
Run: python benchmarks/model_params.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import write_result  # noqa: E402

from breastgpt.model import BreastGPTForConditionalGeneration  # noqa: E402
from breastgpt.model.flavours import build_config  # noqa: E402

PUBLISHED = {
    "8b": {"total": 8.767e9, "vit": 576.4e6, "lm": 8.191e9,
           "source": "https://huggingface.co/OpenExplorer/Qwen3-VL-8B-Instruct"},
    "4b": {"total": 4.438e9, "vit": 415.3e6, "lm": 4.022e9,
           "source": "https://huggingface.co/OpenExplorer/Qwen3-VL-4B-Instruct"},
}


def count(size: str) -> dict[str, int]:
    with torch.device("meta"):
        model = BreastGPTForConditionalGeneration(build_config(size))
    # the model's own module groups (the first that prefixes a name wins); the rest is the LM
    declared = {g.name: g.prefixes() for g in model.module_groups}
    buckets = {"vit": declared["vision_tower"], "slide_longnet": declared["slide_encoder"],
               "slide_projectors": declared["slide_projectors"]}
    groups = {"vit": 0, "lm": 0, "slide_longnet": 0, "slide_projectors": 0}
    seen = set()
    for name, p in model.named_parameters():
        if id(p) in seen:  # tied embeddings count once
            continue
        seen.add(id(p))
        bucket = next((b for b, prefixes in buckets.items() if name.startswith(prefixes)), "lm")
        groups[bucket] += p.numel()
    groups["backbone"] = groups["vit"] + groups["lm"]
    groups["slide_branch"] = groups["slide_longnet"] + groups["slide_projectors"]
    groups["total"] = groups["backbone"] + groups["slide_branch"]
    return groups


def main() -> None:
    results = {}
    for size in ("8b", "4b"):
        ours, pub = count(size), PUBLISHED[size]
        rel = (ours["backbone"] - pub["total"]) / pub["total"]
        results[size] = {"ours": ours, "published": pub, "backbone_relative_difference": rel,
                         "within_1_percent": abs(rel) < 0.01}
        print(f"{size}: backbone {ours['backbone']:,} vs published {pub['total']:,.0f} ({rel:+.4%}); "
              f"slide branch {ours['slide_branch']:,}; total {ours['total']:,}")
    path = write_result("model_params", {"method": "meta-device construction, unique parameters",
                                         "results": results})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
