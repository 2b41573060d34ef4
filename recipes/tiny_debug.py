"""tiny-debug: the tiny random BreastGPT on a synthetic corpus, CPU, seconds; its first losses are golden."""

from breastgpt.train.config import (CheckpointConfig, DataConfig, LoggingConfig, ModelConfig, OptimConfig,
                                    ScheduleConfig, TrainConfig)
from breastgpt.train.recipes import recipe


@recipe("tiny-debug")
def tiny_debug() -> TrainConfig:
    return TrainConfig(
        name="tiny-debug",
        seed=0,
        precision="fp32",
        deterministic=True,
        data=DataConfig(synthetic_records=24, max_length=1024),
        model=ModelConfig(flavour="tiny", init_seed=0),
        optim=OptimConfig(lr=3e-3, weight_decay=0.0, grad_clip=1.0),
        schedule=ScheduleConfig(epochs=0, max_steps=20, scheduler="constant", warmup_ratio=0.0,
                                micro_batch_size=2, grad_accum=1),
        checkpoint=CheckpointConfig(every_steps=10, keep_last=2),
        logging=LoggingConfig(every_steps=1, tensorboard=False, progress=False),
    )
