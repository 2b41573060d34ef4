"""comparator: the paper's fair comparator — plain Qwen3-VL on the same data with the same schedule.

No slide branch and no token selection: every visual token reaches the LLM. A whole slide is given as an
image: the clean slide thumbnail that ``breastgpt slides extract`` stores in the slide's feature file
(the ``thumbnail`` dataset, long side 1024 px by default; not the QC overlay PNG). ``model.path`` is a local
Qwen3-VL-8B-Instruct folder.
"""

from breastgpt.train.recipes import recipe

from breastgpt_recipes.stage2 import stage2


@recipe("comparator")
def comparator():
    config = stage2()
    config.name = "comparator"
    config.model.arch = "qwen3vl"
    config.model.path = "checkpoints/Qwen3-VL-8B-Instruct"
    config.data.slide_mode = "thumbnail"
    return config
