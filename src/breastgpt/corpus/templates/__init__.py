"""Task templates as data (`data/*.json`), the fixed answer-builder registry and the renderer."""

from breastgpt.corpus.templates.builders import BUILDERS, NotApplicable, RenderContext  # noqa: F401
from breastgpt.corpus.templates.render import (  # noqa: F401
    SampleView,
    applicable_templates,
    render_one,
    render_sample,
    system_prompt,
)
from breastgpt.corpus.templates.schema import (  # noqa: F401
    CLINICAL_TARGETS,
    STAGE_MODALITIES,
    Template,
    TemplateError,
    TemplateSet,
    load_templates,
)
