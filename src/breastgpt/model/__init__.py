"""BreastGPT model: Qwen3-VL + gigapixel slide branch + concept-preserving token selection.

Importing this package registers the ``breastgpt`` model type with transformers' Auto classes.
"""

from breastgpt.model.configuration import BreastGPTConfig, SelectionConfig, SlideBranchConfig
from breastgpt.model.modeling import (
    BreastGPTForConditionalGeneration,
    BreastGPTModel,
    register_breastgpt,
    volume_frame_budgets,
)
from breastgpt.model.processing import BreastGPTProcessor

register_breastgpt()

__all__ = [
    "BreastGPTConfig",
    "BreastGPTForConditionalGeneration",
    "BreastGPTModel",
    "BreastGPTProcessor",
    "SelectionConfig",
    "SlideBranchConfig",
    "register_breastgpt",
    "volume_frame_budgets",
]
