"""What the demo's language model is handed: how alike the visual tokens of different studies are, before and after
training.

    python benchmarks/demo_token_spread.py DEMO_OUT [--out benchmarks/results/demo_token_spread.json]

DEMO_OUT is a demo output folder whose `train breastgpt` stage has finished. For the initial checkpoint (`init/`)
and the trained model (`runs/breastgpt/final/`), every study of the task set (training and held-out) is encoded and
the mean of its media tokens — what the merger / slide projector hands the language model, before selection — is
taken. Per modality the script reports the mean norm of those study vectors, the share of their squared norm that
differs between studies (`spread`: 0 when every study gives the same vector), the mean cosine between studies, and,
per template, a logistic regression on the standardised vectors (training → held-out) against the template's prior.
The text embeddings' mean norm is the scale the language model's own inputs have.

docs/notes/2026-12-demo-research.md reads it: after training, every study's vector lies along one shared direction
(cosine ~0.998) that the first RMSNorm of each decoder layer cannot remove, while the readings are still there for a
probe that standardises first.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_result  # noqa: E402


def spread_stats(vectors: np.ndarray) -> dict[str, float]:
    """Mean norm, between-study spread (share of the mean squared norm off the mean vector) and mean cosine of
    distinct pairs, for one row per study."""
    x = np.asarray(vectors, dtype=np.float64)
    if x.ndim != 2 or len(x) < 2:
        raise ValueError(f"need at least two study vectors, got shape {x.shape}")
    norms = np.linalg.norm(x, axis=1)
    spread = float(((x - x.mean(0)) ** 2).sum(1).mean() / (norms**2).mean())
    unit = x / np.maximum(norms[:, None], 1e-12)
    cos = unit @ unit.T
    pairs = cos[np.triu_indices(len(x), k=1)]
    return {"norm": float(norms.mean()), "spread": spread, "cosine": float(pairs.mean()), "studies": len(x)}


def probe_accuracy(train_x: np.ndarray, train_y: list[str], bench_x: np.ndarray, bench_y: list[str]) -> float | None:
    """Held-out accuracy of a logistic regression on standardised vectors; None when training has one class."""
    from sklearn.linear_model import LogisticRegression

    if len(set(train_y)) < 2:
        return None
    mean, std = train_x.mean(0), train_x.std(0) + 1e-8
    model = LogisticRegression(C=1.0, max_iter=2000).fit((train_x - mean) / std, train_y)
    return float(model.score((bench_x - mean) / std, bench_y))


def study_vectors(checkpoint: Path, corpus: Path, records: list[dict[str, Any]]) -> dict[tuple, np.ndarray]:
    """Mean media token of every distinct study (media paths) among `records`."""
    import torch

    from breastgpt.train.encoder_objective import media_tokens
    from breastgpt.model import BreastGPTForConditionalGeneration
    from breastgpt.model.processing import BreastGPTProcessor
    from breastgpt.train.data import MediaLoader, Sample, collate, encode_sample

    model = BreastGPTForConditionalGeneration.from_pretrained(checkpoint).eval()
    processor = BreastGPTProcessor.from_pretrained(checkpoint)
    loader = MediaLoader(corpus, corpus, "features", model.config.slide.feature_dim)
    out: dict[tuple, np.ndarray] = {}
    for record in records:
        key = tuple(m["path"] for m in record["media"])
        if key in out:
            continue
        user = next(m["content"] for m in record["messages"] if m["role"] == "user")
        sample = Sample(record["id"], [{"role": "user", "content": user}, {"role": "assistant", "content": "."}],
                        [(m["kind"], m["path"]) for m in record["media"]], record.get("stage"))
        batch = collate([dict(encode_sample(sample, processor, loader), sample_id=record["id"])], processor)
        with torch.no_grad():
            out[key] = torch.cat(media_tokens(model, batch)).mean(0).numpy()
    return out


def _answer(record: dict[str, Any]) -> str:
    return record["label"]["options"][record["label"]["answer_index"]]


def measure(checkpoint: Path, demo: Path) -> dict[str, Any]:
    from breastgpt.corpus.records import iter_jsonl
    from breastgpt.model import BreastGPTForConditionalGeneration

    rows = {s: list(iter_jsonl(demo / "task_set" / f"{s}.jsonl")) for s in ("train", "bench")}
    vectors = study_vectors(checkpoint, demo / "corpus", rows["train"] + rows["bench"])
    by_modality: dict[str, dict[tuple, np.ndarray]] = defaultdict(dict)
    for record in rows["train"] + rows["bench"]:
        key = tuple(m["path"] for m in record["media"])
        by_modality[record["modality"]][key] = vectors[key]
    templates: dict[str, Any] = {}
    for template in sorted({r["template_id"] for r in rows["bench"]}):
        split = {s: [r for r in rows[s] if r["template_id"] == template] for s in rows}
        if not split["train"] or not split["bench"]:
            continue
        x = {s: np.stack([vectors[tuple(m["path"] for m in r["media"])] for r in split[s]]) for s in split}
        y = {s: [_answer(r) for r in split[s]] for s in split}
        prior = max(set(y["train"]), key=y["train"].count)
        templates[template] = {"probe": probe_accuracy(x["train"], y["train"], x["bench"], y["bench"]),
                               "prior": float(np.mean([a == prior for a in y["bench"]])), "n_bench": len(y["bench"])}
    embed = BreastGPTForConditionalGeneration.from_pretrained(checkpoint).get_input_embeddings().weight.detach()
    return {"text_embedding_norm": float(embed.norm(dim=1).mean()),
            "modalities": {m: spread_stats(np.stack(list(v.values()))) for m, v in sorted(by_modality.items())},
            "templates": templates}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("demo", type=Path, help="a demo output folder with a trained breastgpt model")
    parser.add_argument("--out", type=Path, default=None, help="result file (default benchmarks/results/...)")
    args = parser.parse_args()
    final = args.demo / "runs" / "breastgpt" / "final"
    if not (final / "config.json").is_file():
        raise SystemExit(f"{args.demo}: no trained model at {final}; run `breastgpt demo --out {args.demo}` first")
    result = {"command": "python benchmarks/demo_token_spread.py DEMO_OUT",
              "initial": measure(args.demo / "init", args.demo), "trained": measure(final, args.demo)}
    for name in ("initial", "trained"):
        print(name, "text embedding norm", round(result[name]["text_embedding_norm"], 3))
        for modality, stats in result[name]["modalities"].items():
            print(f"  {modality:12s} norm {stats['norm']:7.2f}  spread {stats['spread']:.4f}  "
                  f"cosine {stats['cosine']:.4f}  ({stats['studies']} studies)")
    write_result("demo_token_spread", result, target=args.out)


if __name__ == "__main__":
    main()
