"""Which items the bootstrap resamples together: patients when known, else the best evidence of shared origin.

Items of one patient are correlated, so the bootstrap resamples clusters of items, not items (statistics.py).
Our corpus records always carry a patient key. Imported files (the published bench) often do not; resampling
them as one "unknown" cluster gives zero-width intervals, and resampling them one item at a time ignores that
several questions are asked about one image. Each item is therefore clustered at the first level it has:

  patient  its `patient_key`;
  study    its `study_key` (a published field, or the DICOM StudyInstanceUID read at import);
  image    the media it shares with other items: items linked by any common media file (sha256 of the bytes, or
           the path when the file was not available to hash) form one cluster;
  item     no media and no key: the item alone.

Levels are never mixed into one cluster: a study cluster and a patient cluster are separate even when they are
the same person, because nothing says so. The report states the levels used and warns when any item is not
clustered by patient, since one patient's several studies or images then count as independent evidence.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from breastgpt.bench.items import BenchItem

CLUSTER_LEVELS = ("patient", "study", "image", "item")
_UNKNOWN = ("", "unknown", "none")


@dataclass(frozen=True)
class Clustering:
    keys: tuple[str, ...]  # per item, in item order
    levels: tuple[str, ...]  # per item

    @property
    def unit(self) -> str:
        """How intervals name their clusters: 'patients' only when every item is clustered by patient."""
        return "patients" if set(self.levels) <= {"patient"} else "clusters"

    def summary(self) -> dict[str, Any]:
        by_level = {}
        for level in CLUSTER_LEVELS:
            keys = {k for k, lv in zip(self.keys, self.levels) if lv == level}
            if keys:
                by_level[level] = {"items": sum(lv == level for lv in self.levels), "clusters": len(keys)}
        return {"unit": self.unit, "n_items": len(self.keys), "n_clusters": len(set(self.keys)), "by_level": by_level}

    def warning(self) -> str | None:
        """Said in the report whenever an interval is not over patients."""
        s = self.summary()
        other = {lv: v for lv, v in s["by_level"].items() if lv != "patient"}
        if not other:
            return None
        parts = ", ".join(f"{v['items']} by {_LEVEL_WORDS[lv]} ({v['clusters']} clusters)" for lv, v in other.items())
        n = sum(v["items"] for v in other.values())
        return (f"clustering: {n} of {s['n_items']} items have no patient key and are clustered {parts}; intervals "
                f"treat these clusters as independent, so they are too narrow if one patient has several studies "
                f"or images")


_LEVEL_WORDS = {"study": "study", "image": "shared image", "item": "item (no media, no key)"}


def cluster_items(items: list[BenchItem]) -> Clustering:
    """The cluster key and level of every item (see the module docstring for the order of evidence)."""
    keys: list[str] = []
    levels: list[str] = []
    image_group = _media_components(items)
    for n, it in enumerate(items):
        if it.patient_key.strip().lower() not in _UNKNOWN:
            level, key = "patient", it.patient_key
        elif it.study_key.strip().lower() not in _UNKNOWN:
            level, key = "study", it.study_key
        elif it.media_ids:
            level, key = "image", image_group[n]
        else:
            level, key = "item", it.id
        levels.append(level)
        keys.append(f"{level}:{key}")
    return Clustering(tuple(keys), tuple(levels))


def _media_components(items: list[BenchItem]) -> dict[int, str]:
    """Item index -> a name of its connected component, items linked when they share any media identity."""
    parent = list(range(len(items)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    first_holder: dict[str, int] = {}
    for n, it in enumerate(items):
        for media in it.media_ids:
            if media in first_holder:
                parent[root(n)] = root(first_holder[media])
            else:
                first_holder[media] = n
    # a component is named by its smallest media identity, so the name does not depend on item order
    names: dict[int, str] = {}
    for n, it in enumerate(items):
        if it.media_ids:
            r = root(n)
            names[r] = min([names.get(r, min(it.media_ids)), *it.media_ids])
    return {n: names[root(n)] for n, it in enumerate(items) if it.media_ids}
