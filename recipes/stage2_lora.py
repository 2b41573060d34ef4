"""stage2-lora: stage 2 with LoRA adapters on the LLM; visual mergers and the slide branch train in full."""

from breastgpt.train.config import LoraConfig
from breastgpt.train.recipes import recipe

from breastgpt_recipes.stage2 import stage2


@recipe("stage2-lora")
def stage2_lora():
    config = stage2()
    config.name = "stage2-lora"
    config.model.trainable = "lora"
    config.model.lora = LoraConfig(r=64, alpha=128, dropout=0.05)
    config.optim.lr = 1e-4  # adapters start at zero and need a larger step than full fine-tuning
    config.optim.weight_decay = 0.0
    return config
