"""stage2: the published full fine-tune (SPEC §3.7).

Everything trains except the tile encoder, which is not part of the model (tile features are extracted
offline by ``breastgpt slides``). bf16, AdamW lr 1e-5, cosine, warm-up 3 %, weight decay 0.1, grad clip 1.0,
2 epochs, max length 10,000, gradient checkpointing; launch with ``recipes/launch/accelerate_zero2.yaml``
(DeepSpeed ZeRO-2, 8 GPUs per node).
"""

from breastgpt.train.config import (CheckpointConfig, DataConfig, LoggingConfig, ModelConfig, OptimConfig,
                                    ScheduleConfig, TrainConfig)
from breastgpt.train.recipes import recipe


@recipe("stage2")
def stage2() -> TrainConfig:
    return TrainConfig(
        name="stage2",
        precision="bf16",
        data=DataConfig(train="corpus/records.jsonl", val="corpus/records.jsonl", max_length=10_000),
        model=ModelConfig(path="runs/stage1/final", trainable="all", gradient_checkpointing=True),
        optim=OptimConfig(lr=1e-5, weight_decay=0.1, betas=[0.9, 0.999], grad_clip=1.0),
        schedule=ScheduleConfig(epochs=2, scheduler="cosine", warmup_ratio=0.03, micro_batch_size=1, grad_accum=1),
        checkpoint=CheckpointConfig(every_steps=1000, keep_last=3),
        logging=LoggingConfig(every_steps=10, val_every_steps=1000, val_max_batches=200),
    )
