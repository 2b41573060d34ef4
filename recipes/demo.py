"""The trainings of `breastgpt demo`, each a copy of tiny-debug changed where the demo differs.

- demo-encoders: the encoder pre-training of each demo model (objective=encoders: the encoder groups learn the
  training split's closed answers through linear heads, images and volumes also mirrored; 600 steps), on images at
  their stored size (96-px images, 256-px slide thumbnails: bounded at 256 × 256), which the models then read
  resized up to at least 256 × 256: a coarser training scale than the one used later (docs/training.md, "Training
  resolution").
- demo-breastgpt, demo-thumbnail: the two language trainings (the task-set conversations, starting from the
  pre-trained encoders and keeping them frozen, a cosine schedule of 1,400 steps); the comparator sees each slide
  as its thumbnail through the vision tower.

The demo fills in what depends on its run: the paths under its output folder, the slide mode of the model being
pre-trained, and seed, steps, learning rate, micro-batch size and encoder freezing from its `DemoSettings`. The
paths below are those of `breastgpt demo --out demo-out`."""

from dataclasses import replace

from breastgpt.train.config import TrainConfig
from breastgpt.train.recipes import recipe

from breastgpt_recipes.tiny_debug import tiny_debug


@recipe("demo-encoders")
def demo_encoders() -> TrainConfig:
    base = tiny_debug()
    return replace(
        base, name="demo-encoders", objective="encoders", deterministic=False,
        output_dir="demo-out/runs/encoders-breastgpt",
        data=replace(base.data, synthetic_records=0, train="demo-out/task_set/train.jsonl", format="records",
                     media_root="demo-out/corpus", slide_root="demo-out/corpus", slide_mode="features", mirror=True,
                     group_by_length=False, image_min_pixels=64 * 64, image_max_pixels=256 * 256),
        model=replace(base.model, flavour="", path="demo-out/init", trainable="encoders"),
        optim=replace(base.optim, lr=2e-3, weight_decay=0.0, grad_clip=0.0),
        schedule=replace(base.schedule, max_steps=600, scheduler="constant", warmup_ratio=0.0, micro_batch_size=16),
        checkpoint=replace(base.checkpoint, every_steps=300, keep_last=1),
        logging=replace(base.logging, every_steps=10, progress=True),
    )


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
