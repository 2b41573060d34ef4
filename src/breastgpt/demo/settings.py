"""What `breastgpt demo` runs at its two sizes: the full demo and `--quick` (the test suite's)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

# Several public-layout sources per modality; HISTAI-breast has no labels for closed questions, so it is left out.
FULL_SOURCES: tuple[str, ...] = (
    "cbis_ddsm", "vindr_mammo", "inbreast",  # mammography (DICOM)
    "busi", "bus_cot",  # ultrasound
    "ct_rate", "ct_cohort",  # chest CT
    "mri_cohort_a", "mri_cohort_b",  # breast MRI (institutional manifests)
    "tcga_brca", "bcnb",  # whole-slide pathology
    "pathway_cohort",  # linked patients: screening mammogram, diagnostic ultrasound, biopsy slide (pathway items)
)
# --quick: two mammography sources (what the small model learns to read first, docs/notes/2026-12-demo-research.md), one MRI
# cohort and slides so that every branch trains; no comparator (the test suite's time), one shortcut ablation.
QUICK_SOURCES: tuple[str, ...] = ("vindr_mammo", "cbis_ddsm", "mri_cohort_a", "bcnb")


@dataclass(frozen=True)
class DemoSettings:
    """Every knob of one demo size; part of each stage's manifest, so a changed knob redoes the stage."""

    name: str
    deid_patients: int  # DICOM studies of the de-identification showcase
    sources: tuple[str, ...]
    patients: int  # per source
    seed: int = 0
    # the trainings' seed (encoder pre-training and language training: data order, head weights), None: `seed`; the
    # cohort, the initial checkpoint and the bootstrap keep `seed`, so another value is another draw of the training
    # alone (benchmarks/demo_training_seeds.py)
    train_seed: int | None = None
    image_long_side: int = 96  # normalised 2-D images (px); the processor resizes them up (`write_initial_checkpoint`)
    volume_inplane: int = 64  # normalised volumes: in-plane long edge (px) ...
    volume_depth: int = 8  # ... and slices (4 frames of 2 after the temporal patch)
    ct_window: str = "ct-wide"  # corpus window preset for CT (`breastgpt.io.windowing.WINDOW_PRESETS`)
    slide_tile_px: int = 192  # tiles at 20x (0.5 um/px); the synthetic slides are 768 px square: ~10 tiles each
    thumbnail_px: int = 256  # slide thumbnail stored in each feature file (the comparator's input)
    train_steps: int = 300
    micro_batch: int = 8
    lr: float = 2e-3
    ablations: tuple[str, ...] = ("no-image", "shuffle-image")
    bench_batch: int = 32
    bootstrap: int = 2000  # patient-clustered resamples per interval
    comparator: bool = True  # also train the thumbnail comparator (slides through the standard branch)
    media_position: str = "before"  # corpus build: placeholders before the question, or "after" it
    group_turns: bool = True  # training: every question about one study as turns of one conversation ...
    max_turns: int = 0  # ... of at most this many turns (0: all of them in one)
    train_variants: int = 1  # training: each conversation this many times, re-worded (`demo.tasks.reword`)
    encoder_steps: int = 0  # > 0: first pre-train the encoders on the training labels (objective=encoders) ...
    freeze_encoders: bool = False  # ... and keep them frozen while the language model trains
    encoder_mirror: bool = True  # ... with every image and volume study also shown mirrored (data.mirror)

    @property
    def training_seed(self) -> int:
        return self.seed if self.train_seed is None else self.train_seed

    def as_dict(self) -> dict[str, object]:
        return dataclasses.asdict(self)


# The full demo: each model's encoders pre-trained on the training labels and then frozen, 1,400 language steps on
# conversations re-worded 12 ways: fewer steps read less from the pixels (docs/notes/2026-12-demo-research.md);
# the frozen encoders' memo, mask-free causal attention and the comparator trained in a second process pay for
# the steps.
FULL = DemoSettings(name="full", deid_patients=8, sources=FULL_SOURCES, patients=30, train_steps=1400,
                    train_variants=12, encoder_steps=600, freeze_encoders=True,
                    ablations=("no-image", "shuffle-image", "no-prior-media"))
QUICK = DemoSettings(name="quick", deid_patients=3, sources=QUICK_SOURCES, patients=24, train_steps=150,
                     ablations=("no-image",), bootstrap=1000, comparator=False)


def settings_for(quick: bool) -> DemoSettings:
    return QUICK if quick else FULL


__all__ = ["FULL", "FULL_SOURCES", "QUICK", "QUICK_SOURCES", "DemoSettings", "settings_for"]
