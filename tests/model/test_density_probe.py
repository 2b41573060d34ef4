import torch

from breastgpt.model.density_probe import BreastGPTWithDensityProbe
from breastgpt.model.encoder_memo import enable_encoder_memo
from breastgpt.model.flavours import tiny
from breastgpt.model.module_groups import lora_modules_to_save
from breastgpt.train.config import ModelConfig
from breastgpt.train.model_setup import apply_lora, apply_trainable, trainable_names


def test_the_probe_joins_every_trainable_set():
    torch.manual_seed(0)
    model = BreastGPTWithDensityProbe(tiny())
    probe = {n for n, _ in model.named_parameters() if n.startswith("model.density_probe.")}
    assert len(probe) == 4
    apply_trainable(model, ModelConfig(flavour="tiny", trainable="stage1"))
    assert probe <= set(trainable_names(model))
    apply_trainable(model, ModelConfig(flavour="tiny", trainable="language"))
    assert not probe & set(trainable_names(model))
    assert enable_encoder_memo(model, 1 << 20) is not None
    assert "model.density_probe" in lora_modules_to_save(model)
    lora = apply_lora(model, ModelConfig(flavour="tiny", trainable="lora"))
    assert any("density_probe.modules_to_save" in n for n, p in lora.named_parameters() if p.requires_grad)
