"""demo-breastgpt, demo-thumbnail: the two CPU trainings of `breastgpt demo`, each a copy of tiny-debug changed
where the demo differs (its own task-set conversations, a checkpoint to start from, a cosine schedule of 1,400
steps, frozen encoders). The demo fills in what depends on its run: the paths under its output folder, and seed,
steps, learning rate, micro-batch size and encoder freezing from its `DemoSettings`. The paths below are those of
`breastgpt demo --out demo-out`."""

from dataclasses import replace

from breastgpt.train.config import TrainConfig
from breastgpt.train.recipes import recipe

from breastgpt_recipes.tiny_debug import tiny_debug


@recipe("demo-breastgpt")
def demo_breastgpt() -> TrainConfig:
    base = tiny_debug()
    return replace(
        base, name="demo-breastgpt", deterministic=False, output_dir="demo-out/runs/breastgpt",
        data=replace(base.data, synthetic_records=0, train="demo-out/task_set/train_conversations.jsonl",
                     format="swift", media_root="demo-out/corpus", slide_root="demo-out/corpus", slide_mode="features",
                     max_length=4096),
        model=replace(base.model, flavour="", path="demo-out/init", trainable="language"),
        optim=replace(base.optim, lr=2e-3),
        schedule=replace(base.schedule, max_steps=1400, scheduler="cosine", warmup_ratio=0.05, micro_batch_size=8),
        checkpoint=replace(base.checkpoint, every_steps=350, keep_last=1),
        logging=replace(base.logging, every_steps=10, progress=True),
    )


@recipe("demo-thumbnail")
def demo_thumbnail() -> TrainConfig:
    """The comparator: the same training with each slide given as its thumbnail through the vision tower."""
    base = demo_breastgpt()
    return replace(base, name="demo-thumbnail", output_dir="demo-out/runs/thumbnail",
                   data=replace(base.data, slide_mode="thumbnail"))
