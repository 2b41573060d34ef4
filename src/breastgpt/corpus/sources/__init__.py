"""breastgpt.corpus.sources: one adapter module per dataset, all registered in `ADAPTERS`."""

from breastgpt.corpus.sources.base import (  # noqa: F401
    ADAPTERS,
    NormalisedMedia,
    NormaliseLimits,
    SourceAdapter,
    SourceProblem,
    SourceSample,
    get_adapter,
)
