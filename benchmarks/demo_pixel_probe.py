"""How far a simple learner gets on the demo's task set: a per-template logistic regression on the pixels.

    python benchmarks/demo_pixel_probe.py DEMO_OUT [--out benchmarks/results/demo_pixel_probe.json]

DEMO_OUT is a demo output folder that has passed its `task set` stage (`breastgpt demo --out DEMO_OUT`, or any
run of `run_demo` with other settings). For every image-dependent template, a logistic regression is fitted on the
training items and scored on the held-out ones, from: images pooled to 24 × 24 grey pixels, volumes to 8 × 16 × 16
voxels (a study's volumes side by side, e.g. an MRI study's seven sequences), slides as the mean / std / max of
their tile features. It is the ceiling of a reader with no vision of its own (docs/notes/2026-12-demo-research.md):
the templates it reads show where the synthetic signal is strong; the templates it cannot read are where a model
has to learn more than a linear function of the pixels, or where the signal is weak.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_result  # noqa: E402


def medium_vector(corpus: Path, medium: dict[str, Any]) -> np.ndarray:
    """One medium as a fixed-length vector (pixels pooled; slides as tile-feature statistics)."""
    import torch
    import torch.nn.functional as F

    path = corpus / medium["path"]
    if medium["kind"] == "image":
        from breastgpt.io.raster import read_raster

        pixels = np.asarray(read_raster(path), dtype=np.float32)
        grey = pixels.mean(-1) if pixels.ndim == 3 else pixels
        return F.adaptive_avg_pool2d(torch.from_numpy(grey / 255.0)[None, None], (24, 24)).flatten().numpy()
    if medium["kind"] == "volume":
        from breastgpt.io.volume import read_corpus_volume

        voxels = read_corpus_volume(path).astype(np.float32) / 255.0
        return F.adaptive_avg_pool3d(torch.from_numpy(voxels)[None, None], (8, 16, 16)).flatten().numpy()
    if medium["kind"] == "slide":
        from breastgpt.pathology.features import load_features

        tiles = np.asarray(load_features(path).features, dtype=np.float32)
        return np.concatenate([tiles.mean(0), tiles.std(0), tiles.max(0)])
    raise ValueError(f"{medium['path']}: unknown media kind {medium['kind']!r}")


def _answer(record: dict[str, Any]) -> str:
    return record["label"]["options"][record["label"]["answer_index"]]


def probe(demo_out: Path, c: float = 0.05) -> dict[str, Any]:
    """Per-template and overall held-out accuracy of the pixel probe, beside each template's prior."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    corpus, task_set = demo_out / "corpus", demo_out / "task_set"
    if not (task_set / "train.jsonl").is_file() or not (task_set / "bench.jsonl").is_file():
        raise FileNotFoundError(f"{task_set}: no train.jsonl / bench.jsonl; run the demo's stages up to `task set`")
    splits: dict[str, tuple[list, list]] = defaultdict(lambda: ([], []))
    for index, name in enumerate(("train.jsonl", "bench.jsonl")):
        for line in (task_set / name).read_text().splitlines():
            record = json.loads(line)
            splits[record["template_id"]][index].append(record)
    vectors: dict[str, np.ndarray] = {}

    def features(record: dict[str, Any]) -> np.ndarray:
        for medium in record["media"]:
            if medium["path"] not in vectors:
                vectors[medium["path"]] = medium_vector(corpus, medium)
        return np.concatenate([vectors[m["path"]] for m in record["media"]])

    templates, hits, prior_hits, items = [], 0.0, 0.0, 0
    for template, (train, bench) in sorted(splits.items()):
        if not train or not bench:
            continue
        y_train, y_bench = [_answer(r) for r in train], np.array([_answer(r) for r in bench])
        majority = Counter(y_train).most_common(1)[0][0]
        prior = float(np.mean(y_bench == majority))
        if len(set(y_train)) < 2:
            accuracy = prior
        else:
            model = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000))
            model.fit(np.stack([features(r) for r in train]), y_train)
            accuracy = float(np.mean(model.predict(np.stack([features(r) for r in bench])) == y_bench))
        modality = bench[0].get("modality")
        templates.append({"template": template, "modality": modality, "n_train": len(train),
                          "n_bench": len(bench), "probe": round(accuracy, 4), "prior": round(prior, 4)})
        hits, prior_hits, items = hits + accuracy * len(bench), prior_hits + prior * len(bench), items + len(bench)
    if not items:
        raise ValueError(f"{task_set}: no template has both training and held-out items")
    return {"items": items, "probe": round(hits / items, 4), "prior": round(prior_hits / items, 4),
            "regularisation_C": c, "templates": templates}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("demo_out", type=Path)
    parser.add_argument("--out", type=Path, default=None, help="default: benchmarks/results/demo_pixel_probe.json")
    args = parser.parse_args()
    result = probe(args.demo_out)
    for row in result["templates"]:
        print(f"{row['template']:34s} {row['n_train']:4d}/{row['n_bench']:3d}  probe {100 * row['probe']:5.1f}  "
              f"prior {100 * row['prior']:5.1f}")
    print(f"all {result['items']} held-out items: probe {100 * result['probe']:.1f} %, prior {100 * result['prior']:.1f} %")
    settings = json.loads((args.demo_out / "summary.json").read_text())["settings"] \
        if (args.demo_out / "summary.json").is_file() else None
    path = write_result("demo_pixel_probe", {"command": "python benchmarks/demo_pixel_probe.py DEMO_OUT",
                                             "demo_settings": settings, **result}, args.out)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
