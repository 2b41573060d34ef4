"""stage1: warm up the visual front-end and the slide branch with the LLM (and the ViT blocks) frozen.

Trainable: the model class's ``warmup`` module groups (``BreastGPTForConditionalGeneration.module_groups``:
the ViT patch merger and DeepStack mergers, the LongNet slide encoder, the slide projectors and, in the learnable
selection ablation, the concept selectors). The paper published no stage-1 recipe; these values are ours.
"""

from breastgpt.train.config import (CheckpointConfig, DataConfig, LoggingConfig, ModelConfig, OptimConfig,
                                    ScheduleConfig, TrainConfig)
from breastgpt.train.recipes import recipe


@recipe("stage1")
def stage1() -> TrainConfig:
    return TrainConfig(
        name="stage1",
        precision="bf16",
        data=DataConfig(train="corpus/records.jsonl", val="corpus/records.jsonl", max_length=10_000),
        model=ModelConfig(path="checkpoints/breastgpt-8b-init", trainable="stage1", gradient_checkpointing=True),
        optim=OptimConfig(lr=1e-4, weight_decay=0.0, grad_clip=1.0),
        schedule=ScheduleConfig(epochs=1, scheduler="cosine", warmup_ratio=0.03, micro_batch_size=1, grad_accum=4),
        checkpoint=CheckpointConfig(every_steps=1000, keep_last=3),
        logging=LoggingConfig(every_steps=10, val_every_steps=1000, val_max_batches=200),
    )
