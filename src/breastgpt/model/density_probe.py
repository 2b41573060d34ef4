"""BreastGPT with a breast-density probe on the pooled visual tokens (worked example of a model variant)."""

from torch import nn

from breastgpt.model.modeling import BreastGPTForConditionalGeneration
from breastgpt.model.module_groups import ModuleGroup


class BreastGPTWithDensityProbe(BreastGPTForConditionalGeneration):
    module_groups = (*BreastGPTForConditionalGeneration.module_groups,
                     ModuleGroup("density_probe", ("model.density_probe",), encoder=True, warmup=True))

    def __init__(self, config):
        super().__init__(config)
        width = config.text_config.hidden_size
        self.model.density_probe = nn.Sequential(nn.Linear(width, width), nn.GELU(), nn.Linear(width, 4))
