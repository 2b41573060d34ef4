"""Which slides a corpus needs feature files for, and under which keyed name (`build_items.slide_feature_id`).

`corpus build` records name a slide's features `features/<keyed id>.h5`; `breastgpt slides extract
--corpus-sources SPEC --out CORPUS` (and the demo) extract every slide of those sources under that name, so the
records find them without any slide barcode or case id in a file name.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

from breastgpt.corpus.build_items import slide_feature_id
from breastgpt.corpus.sources.base import SourceProblem, get_adapter

RASTER_SLIDE_SUFFIXES = (".jpg", ".jpeg", ".png")
RASTER_SLIDE_MPP = 0.5  # raster "WSIs" (BCNB JPEGs) carry no µm/px; the corpus records assume 20x (0.5 µm/px)


@dataclass(frozen=True)
class SlideJob:
    path: Path  # the slide file (raw input: never written out)
    feature_id: str  # keyed name of its feature file
    mpp: float | None  # µm/px override for raster slides, None: read from the file


def slide_jobs(sources: Iterable[Any], pseudonymizer: Any,
               adapters: Mapping[str, Any] | None = None) -> list[SlideJob]:
    """One job per slide sample of `sources` (`build.SourceSpec`s), in source and sample order."""
    jobs = []
    for spec in sources:
        adapter = adapters[spec.name] if adapters and spec.name in adapters else get_adapter(spec.name)
        samples = [s for s in adapter.discover(Path(spec.root)) if not isinstance(s, SourceProblem)]
        for sample in sorted((s for s in samples if s.kind == "slide"), key=lambda s: s.sample_id):
            path = Path(sample.media[0])
            mpp = RASTER_SLIDE_MPP if path.suffix.lower() in RASTER_SLIDE_SUFFIXES else None
            jobs.append(SlideJob(path, slide_feature_id(pseudonymizer, spec.name, sample.sample_id), mpp))
    return jobs
