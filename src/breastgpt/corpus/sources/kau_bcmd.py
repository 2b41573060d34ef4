"""KAU-BCMD: images under `Birad1/`, `Birad3/`, `Birad4/`, `Birad5/` (any depth, .jpg). The BI-RADS category
is the folder; file names repeat across folders, so the sample id is the full relative path (never the bare
file name — the reference pipeline's output names collided). View/laterality are read from name tokens
(RCC, LCC, RMLO, LMLO) when present."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterator

from breastgpt.corpus.sources.base import SourceProblem, SourceSample, checked_sample, register, safe_id

FOLDER = re.compile(r"^birads?\s*_?([0-6])$", re.IGNORECASE)
TOKEN = re.compile(r"(?:^|[_\s-])([LR])[_\s-]?(CC|MLO)(?:$|[_\s-])", re.IGNORECASE)


@register
class KAUBCMDAdapter:
    name = "kau_bcmd"
    modality = "mammography"

    def discover(self, root: Path) -> Iterator[SourceSample | SourceProblem]:
        folders = [p for p in sorted(root.iterdir()) if p.is_dir() and FOLDER.match(p.name)] if root.is_dir() else []
        if not folders:
            yield SourceProblem(self.name, str(root), "no Birad1/Birad3/Birad4/Birad5 folders under the root")
            return
        for folder in folders:
            birads = int(FOLDER.match(folder.name).group(1))
            for path in sorted(folder.rglob("*")):
                if path.suffix.lower() in (".jpg", ".jpeg", ".png"):
                    yield self._sample(root, folder, path, birads)

    def _sample(self, root: Path, folder: Path, path: Path, birads: int) -> SourceSample | SourceProblem:
        rel = path.relative_to(root)
        inner = path.relative_to(folder)
        patient = inner.parts[0] if len(inner.parts) > 1 else inner.stem
        labels: dict = {"birads": birads}
        token = TOKEN.search(path.stem)
        if token:
            labels["laterality"], labels["view"] = token.group(1).upper(), token.group(2).upper()
        return checked_sample(self.name, str(rel), sample_id=safe_id(*rel.with_suffix("").parts),
                              patient_id=f"{folder.name}/{patient}", study_id=f"{folder.name}/{patient}",
                              modality="mammography", kind="image", media=[path], labels=labels)
