"""breastgpt.corpus.sources: one adapter module per dataset, all registered in `ADAPTERS`."""

from breastgpt.corpus.sources.base import (  # noqa: F401
    ADAPTERS,
    NormalisedMedia,
    SourceAdapter,
    SourceProblem,
    SourceSample,
    get_adapter,
)
from breastgpt.corpus.sources import (  # noqa: F401  (each module registers its adapter)
    bcnb,
    bmcd,
    bus_cot,
    busi,
    cbis_ddsm,
    cdd_cesm,
    csaw_m,
    ct_rate,
    dmid,
    embed,
    histai_breast,
    inbreast,
    institutional,
    kau_bcmd,
    mias,
    rsna_screening,
    tcga_brca,
    vindr_mammo,
)
