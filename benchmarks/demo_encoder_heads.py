"""The ceiling of the frozen-encoder demo recipe: the encoder pre-training's own heads, scored on the held-out items.

    python benchmarks/demo_encoder_heads.py DEMO_OUT [--steps 600] [--no-mirror] [--seed 0] [--out PATH]

DEMO_OUT is a demo output folder that has passed its `model` stage (`breastgpt demo --out DEMO_OUT`, or `run_demo`
with other settings). The encoders of its initial checkpoint are pre-trained exactly as the demo's `encoder_steps`
do (the `demo-encoders` recipe: the training loop with objective=encoders, one linear head per template on a study's
media tokens, training split only, slides through the slide branch), then the heads are scored on the held-out
closed items (`breastgpt.train.encoder_objective.score_heads`). A language model trained on those frozen encoders
reads the same tokens, so the heads' held-out accuracy is about what it can reach. The pre-training is written to a
temporary folder and deleted.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_result  # noqa: E402


def main() -> None:
    from breastgpt.corpus.pathway import is_pathway
    from breastgpt.corpus.records import iter_jsonl
    from breastgpt.train.encoder_objective import score_heads
    from breastgpt.train.loop import train
    from breastgpt.train.recipes import get_recipe

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("demo_out", type=Path)
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-mirror", action="store_true", help="without the mirror augmentation")
    parser.add_argument("--out", type=Path, default=None, help="default: benchmarks/results/demo_encoder_heads.json")
    args = parser.parse_args()
    task_set, init, corpus = args.demo_out / "task_set", args.demo_out / "init", args.demo_out / "corpus"
    if not (task_set / "bench.jsonl").is_file() or not (init / "config.json").is_file():
        raise SystemExit(f"{args.demo_out}: no task_set/bench.jsonl or init/config.json; run the demo's stages up to "
                         "`model` first")
    config = get_recipe("demo-encoders")
    config.seed, config.data.mirror = args.seed, not args.no_mirror
    config.data.train, config.data.media_root, config.data.slide_root = str(task_set / "train.jsonl"), str(corpus), \
        str(corpus)
    config.model.path, config.optim.lr = str(init), args.lr
    config.schedule.max_steps, config.schedule.micro_batch_size = args.steps, args.batch
    with tempfile.TemporaryDirectory() as tmp:
        config.output_dir = str(Path(tmp) / "encoders")
        result = train(config)
        bench = [r for r in iter_jsonl(task_set / "bench.jsonl") if (r.get("label") or {}).get("options")
                 and r.get("media") and not is_pathway(r)]
        heads = score_heads(result.final_dir, bench, corpus)
    figures = {"steps": result.steps, "first_loss": round(result.losses[0], 3),
               "final_loss_mean10": round(sum(result.losses[-10:]) / len(result.losses[-10:]), 3),
               "mirror": config.data.mirror}
    for template, row in heads["templates"].items():
        print(f"{template:34s} {row['n_items']:4d}  heads {100 * row['heads']:5.1f}  prior {100 * row['prior']:5.1f}")
    for modality, row in heads["modalities"].items():
        print(f"{modality:34s} {row['n_items']:4d}  heads {100 * row['heads']:5.1f}  prior {100 * row['prior']:5.1f}")
    print(f"all {heads['all']['n_items']} held-out items: heads {100 * heads['all']['heads']:.1f} %, "
          f"prior {100 * heads['all']['prior']:.1f} %")
    settings = json.loads((args.demo_out / "summary.json").read_text())["settings"] \
        if (args.demo_out / "summary.json").is_file() else None
    path = write_result("demo_encoder_heads", {
        "command": "python benchmarks/demo_encoder_heads.py DEMO_OUT" + (" --no-mirror" if args.no_mirror else ""),
        "demo_settings": settings, "pretraining": figures,
        **heads}, args.out)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
