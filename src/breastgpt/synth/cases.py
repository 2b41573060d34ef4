"""Label draws for synthetic patients, in the shared vocabulary; each source's writer translates them into the
dataset's own codes. Labels are drawn first and pixels rendered from them, never the other way round."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass
class SynthConfig:
    patients: int = 8
    seed: int = 0
    full_size: bool = False

    def __post_init__(self) -> None:
        if self.patients < 1:
            raise ValueError("patients must be at least 1")


@dataclass
class MammoCase:
    pathology: str
    birads: int
    density: str
    abnormality: str
    mass_shape: str = ""
    mass_margin: str = ""
    calc_type: str = ""
    calc_distribution: str = ""


def pick(rng: np.random.Generator, values, p=None):
    return values[int(rng.choice(len(values), p=p))]


def mammo_case(rng: np.random.Generator, *, allow_normal: bool = True,
               abnormalities: tuple[str, ...] = ("mass", "calcification")) -> MammoCase:
    """A coherent mammography case: benign masses round/oval circumscribed, malignant ones irregular and
    spiculated/indistinct; BI-RADS follows pathology."""
    pathology = pick(rng, ["normal", "benign", "malignant"] if allow_normal else ["benign", "malignant"])
    density = pick(rng, ["A", "B", "C", "D"])
    if pathology == "normal":
        return MammoCase("normal", pick(rng, [1, 2]), density, "none")
    abnormality = pick(rng, list(abnormalities))
    birads = pick(rng, [2, 3]) if pathology == "benign" else pick(rng, [4, 5])
    case = MammoCase(pathology, birads, density, abnormality)
    if abnormality == "mass":
        case.mass_shape = pick(rng, ["round", "oval"]) if pathology == "benign" else "irregular"
        case.mass_margin = "circumscribed" if pathology == "benign" else pick(rng, ["spiculated", "indistinct"])
    elif abnormality == "calcification":
        case.calc_type = pick(rng, ["punctate", "round_regular", "coarse"]) if pathology == "benign" else \
            pick(rng, ["fine_pleomorphic", "fine_linear_branching", "amorphous"])
        case.calc_distribution = pick(rng, ["grouped", "regional"]) if pathology == "benign" else \
            pick(rng, ["linear", "segmental", "grouped"])
    return case


def split_for(index: int, n: int) -> str:
    """Deterministic dataset split: the last ~20 % of patients are the test split."""
    return "test" if index >= max(1, round(n * 0.8)) and n > 1 else "train"


def mammo_size(config: SynthConfig) -> tuple[int, int]:
    return (4096, 3328) if config.full_size else (512, 416)


@dataclass
class Truth:
    """What a generator wrote for one sample, for tests: the labels an adapter must recover."""

    sample_id: str
    labels: dict
    split: str | None
    width: int
    height: int
    media: list[Path] = field(default_factory=list)
    depth: int | None = None

    def as_dict(self) -> dict:
        return {"sample_id": self.sample_id, "labels": self.labels, "split": self.split, "width": self.width,
                "height": self.height, "depth": self.depth, "media": [str(p) for p in self.media]}
