"""BUSI (Dataset_BUSI_with_GT): class folders `benign/`, `malignant/`, `normal/` with `<class> (n).png` and masks
`<class> (n)_mask.png` (a second lesion as `_mask_1.png`). Also accepted: a flat re-export with `<class>_<n>.png`,
`<class>_<n>_mask.png` and a `labels.csv` (image, mask, label). Normal images have empty masks."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterator

from breastgpt.corpus.sources.base import BoxMask, SourceProblem, SourceSample, checked_sample, register, safe_id
from breastgpt.corpus.sources.tables import TableError, read_table

CLASSES = ("benign", "malignant", "normal")
MASK = re.compile(r"_mask(_\d+)?$")


@register
class BUSIAdapter:
    name = "busi"
    modality = "ultrasound"

    def discover(self, root: Path) -> Iterator[SourceSample | SourceProblem]:
        base = next((p for p in (root / "Dataset_BUSI_with_GT", root) if any((p / c).is_dir() for c in CLASSES)),
                    None)  # any class folder: a copy may lack one (e.g. only benign and malignant)
        if base is not None:
            for label in CLASSES:
                for image in sorted((base / label).glob("*.png")):
                    if not MASK.search(image.stem) and not image.name.startswith("."):
                        yield self._sample(image, label, _masks_beside(image))
        elif (root / "labels.csv").is_file():
            yield from self._flat(root)
        else:
            yield SourceProblem(self.name, str(root), "no benign/malignant/normal folders and no labels.csv")

    def _flat(self, root: Path) -> Iterator[SourceSample | SourceProblem]:
        try:
            table = read_table(root / "labels.csv", required=("image", "label"))
        except TableError as exc:
            yield SourceProblem(self.name, str(root / "labels.csv"), str(exc))
            return
        for i, row in table.iterrows():
            image = root / row["image"]
            if row["label"] not in CLASSES or not image.is_file():
                yield SourceProblem(self.name, f"labels.csv:{i + 2}", f"bad label {row['label']!r} or missing {image.name}")
                continue
            named = [root / m for m in str(row.get("mask", "")).split(";") if m]
            yield self._sample(image, row["label"], sorted(set(named) | set(_masks_beside(image))))

    def _sample(self, image: Path, label: str, masks: list[Path]) -> SourceSample | SourceProblem:
        labels = {"pathology": label, "malignant": label == "malignant"} | ({"boxes": []} if label == "normal" else {})
        # a lesion image whose mask was not downloaded, or whose masks are all empty, lacks its ROI mask; a
        # normal image's masks are empty by design (it gets `boxes: []`)
        return checked_sample(self.name, str(image), sample_id=safe_id(image.stem), patient_id=image.stem,
                              study_id=image.stem, modality="ultrasound", kind="image", media=[image],
                              masks=masks, labels=labels, box_masks=[BoxMask(m, "lesion") for m in masks],
                              box_required=label != "normal")


def _masks_beside(image: Path) -> list[Path]:
    return sorted(p for p in image.parent.glob(f"{glob_escape(image.stem)}_mask*.png") if MASK.search(p.stem))


def glob_escape(text: str) -> str:
    return re.sub(r"([\[\]*?])", r"[\1]", text)
