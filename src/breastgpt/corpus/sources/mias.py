"""mini-MIAS: `Info.txt` (one line per abnormality: ref, tissue F/G/D, class CALC/CIRC/SPIC/MISC/ARCH/ASYM/NORM,
severity B/M, x, y, radius) and `mdbNNN.pgm` (1024×1024). Coordinates have their origin at the bottom-left
corner; we convert to top-left (y' = height − y). Consecutive numbers are the two breasts of one patient
(odd = right, even = left)."""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path
from typing import Iterator

from breastgpt.corpus.sources.base import SourceProblem, SourceSample, checked_sample, register, safe_id
from breastgpt.corpus.sources.media import image_shape
from breastgpt.io.errors import MedicalFileError

TISSUE = {"F": "fatty", "G": "fatty_glandular", "D": "dense_glandular"}
CLASS = {"CALC": ("calcification", None), "CIRC": ("mass", "circumscribed"), "SPIC": ("mass", "spiculated"),
         "MISC": ("mass", "indistinct"), "ARCH": ("architectural_distortion", None), "ASYM": ("asymmetry", None),
         "NORM": ("none", None)}
LINE = re.compile(r"^(mdb\d{3})\s+([FGD])\s+(CALC|CIRC|SPIC|MISC|ARCH|ASYM|NORM)(?:\s+([BM]))?"
                  r"(?:\s+(\d+)\s+(\d+)\s+(\d+))?\s*$")


def mias_box(x: int, y: int, radius: int, height: int, width: int) -> list[int]:
    """Centre (x, y) with bottom-left origin and a radius → [x1, y1, x2, y2] with top-left origin, clipped."""
    cy = height - y
    return [max(0, x - radius), max(0, cy - radius), min(width, x + radius), min(height, cy + radius)]


@register
class MIASAdapter:
    name = "mias"
    modality = "mammography"

    def discover(self, root: Path) -> Iterator[SourceSample | SourceProblem]:
        info = root / "Info.txt"
        if not info.is_file():
            yield SourceProblem(self.name, str(info), "Info.txt not found")
            return
        lines = defaultdict(list)
        for number, text in enumerate(info.read_text(encoding="latin-1").splitlines(), start=1):
            if not text.strip().startswith("mdb"):
                continue
            match = LINE.match(text.strip())
            if match is None:
                yield SourceProblem(self.name, f"Info.txt:{number}", f"unparseable line {text.strip()!r}")
                continue
            lines[match.group(1)].append((number, match))
        for ref, numbered in sorted(lines.items()):
            yield self._sample(root, ref, f"Info.txt:{numbered[0][0]}", [match for _, match in numbered])

    def _sample(self, root: Path, ref: str, where: str, matches) -> SourceSample | SourceProblem:
        path = root / f"{ref}.pgm"
        try:
            height, width = image_shape(path)
        except MedicalFileError as exc:
            return SourceProblem(self.name, where, str(exc))
        first = matches[0]
        abnormality, margin = CLASS[first.group(3)]
        number = int(ref[3:])
        labels = {"tissue": TISSUE[first.group(2)], "abnormality": abnormality,
                  "laterality": "R" if number % 2 else "L",
                  "pathology": {"B": "benign", "M": "malignant", None: "normal"}[first.group(4)]}
        labels["malignant"] = labels["pathology"] == "malignant"
        if abnormality == "mass":
            labels["mass_margin"] = margin
        boxes = [{"box": mias_box(int(m.group(5)), int(m.group(6)), int(m.group(7)), height, width),
                  "label": CLASS[m.group(3)][0]} for m in matches if m.group(5)]
        if boxes or abnormality == "none":
            labels["boxes"] = boxes
        return checked_sample(self.name, where, sample_id=ref, patient_id=str((number + 1) // 2),
                              study_id=str((number + 1) // 2), modality="mammography", kind="image",
                              media=[path], labels=labels, meta={"mias_class": first.group(3)})
