"""Typed, nested training configuration: ``TrainConfig`` and its sections, strict parsing, ``--set`` overrides.

Every section is a `StrictConfig` dataclass. Parsing a dict rejects unknown keys, and an override ``a.b=c`` is
converted to the field's declared type before it is applied, so a typo or a wrong type fails at start-up, not
hours in.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from breastgpt.config import ConfigError, StrictConfig


class TrainSection(StrictConfig):
    """A part of the training config. Values may be strings (`--set key=value`); `check()` holds the rules that
    need the whole run to be set (a default config has no data yet), and runs before training starts."""

    parse_strings = True


@dataclass
class DataConfig(TrainSection):
    section = "data"

    train: str = ""  # JSONL of corpus records (format=records) or ms-swift rows (format=swift)
    val: str = ""
    format: Literal["records", "swift"] = "records"
    # format=records: only the records of this split are read from data.train / data.val ("" reads every record),
    # so a corpus's records.jsonl (every split in one file) never trains on its bench records
    train_split: str = "train"
    val_split: str = "val"
    media_root: str = ""  # media paths in records are relative to this (default: the train file's folder)
    slide_root: str = ""  # slide feature files (.h5) are relative to this (default: media_root)
    # Slides as tile features for BreastGPT, or as the feature file's clean thumbnail image for a model
    # without a slide branch (the comparator).
    slide_mode: Literal["features", "thumbnail"] = "features"
    synthetic_records: int = 0  # >0 and no train file: write a synthetic corpus of this many records first
    max_length: int = 10_000
    overlong: Literal["drop", "error"] = "drop"
    packing: bool = False  # text-only samples only; see docs/training.md
    group_by_length: bool = True
    mega_batch_factor: int = 8  # length grouping sorts inside windows of this many global micro-batches
    num_workers: int = 0
    # decoded images / volumes kept in memory between epochs (MiB; 0 = off; cleared when full)
    media_memo_mib: int = 1024
    # objective=encoders: each study of images or volumes is also trained left-right mirrored, its labels mirrored
    # with it (breastgpt.train.encoder_objective)
    mirror: bool = False
    # Images are resized to between these pixel areas while training (0: the processor's own bounds); the exported
    # processor keeps the checkpoint's bounds, which inference uses. Training at a coarser scale than inference is
    # FixRes's train-test resolution discrepancy (docs/training.md, "Training resolution").
    image_min_pixels: int = 0
    image_max_pixels: int = 0

    def check(self) -> None:
        _positive("data.max_length", self.max_length)
        if self.image_min_pixels < 0 or self.image_max_pixels < 0:
            raise ConfigError(f"data.image_min_pixels / data.image_max_pixels must be >= 0 (0: the processor's own), "
                              f"got {self.image_min_pixels} / {self.image_max_pixels}")
        if 0 < self.image_max_pixels < self.image_min_pixels:
            raise ConfigError(f"data.image_min_pixels ({self.image_min_pixels}) is above data.image_max_pixels "
                              f"({self.image_max_pixels})")
        _positive("data.mega_batch_factor", self.mega_batch_factor)
        if self.media_memo_mib < 0:
            raise ConfigError(f"data.media_memo_mib must be >= 0 (0 turns the memo off), got {self.media_memo_mib}")
        if not self.train and self.synthetic_records <= 0:
            raise ConfigError("data.train is empty: give a records JSONL (--set data.train=PATH) "
                              "or data.synthetic_records=N for a synthetic corpus")


@dataclass
class LoraConfig(TrainSection):
    section = "model.lora"

    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    # Regex over module paths: the LLM's attention and MLP projections.
    target_modules: str = r".*language_model\.layers\.\d+\.(self_attn\.(q|k|v|o)_proj|mlp\.(gate|up|down)_proj)"
    # Trained in full next to the adapters: the model class's warm-up module groups (model_setup.apply_lora).


@dataclass
class ModelConfig(TrainSection):
    section = "model"

    # a registered model variant (breastgpt.model.variants): breastgpt, qwen3vl (plain Qwen3-VL, no slide branch or
    # selection), or one a module in the recipes folder registers
    arch: str = "breastgpt"
    flavour: str = ""  # a named random-weight flavour (tiny, 4b, 8b) when no path is given
    path: str = ""  # local checkpoint folder (HF format); nothing is fetched
    init_seed: int = 0
    dtype: Literal["float32", "bfloat16"] = "float32"  # weights as stored (mixed precision keeps fp32 masters)
    trainable: Literal["all", "stage1", "lora", "language", "encoders"] = "all"
    gradient_checkpointing: bool = False
    attn_implementation: str = "sdpa"
    # frozen encoders (trainable=language): each medium's visual tokens computed once and kept (MiB; 0 = off;
    # cleared when full; breastgpt.model.encoder_memo)
    encoder_memo_mib: int = 1024
    lora: LoraConfig = field(default_factory=LoraConfig)

    def check(self) -> None:
        if self.encoder_memo_mib < 0:
            raise ConfigError(f"model.encoder_memo_mib must be >= 0 (0 turns the memo off), got {self.encoder_memo_mib}")
        if bool(self.flavour) == bool(self.path):
            raise ConfigError("give exactly one of model.flavour (random weights) or model.path (a local folder)")
        if self.path and not (Path(self.path) / "config.json").is_file():
            raise ConfigError(f"model.path={self.path}: not a checkpoint folder (no config.json); give a local folder "
                              "written by `breastgpt model init` or `breastgpt train` (nothing is downloaded)")
        from breastgpt.model.variants import variant_names  # imports the models: after the checks that need none

        if self.arch not in variant_names():
            raise ConfigError(f"model.arch={self.arch!r} is not a registered model variant; known: "
                              f"{', '.join(variant_names())} (a module in the recipes folder may register more)")


@dataclass
class OptimConfig(TrainSection):
    section = "optim"

    lr: float = 1e-5
    weight_decay: float = 0.1
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8
    grad_clip: float = 1.0  # 0 disables clipping

    def check(self) -> None:
        if self.lr <= 0 or len(self.betas) != 2:
            raise ConfigError(f"optim: lr must be > 0 and betas two numbers, got lr={self.lr} betas={self.betas}")


@dataclass
class ScheduleConfig(TrainSection):
    section = "schedule"

    epochs: float = 2.0
    max_steps: int = 0  # >0: stop after this many optimizer steps (and size the schedule to it)
    scheduler: Literal["cosine", "linear", "constant"] = "cosine"
    warmup_ratio: float = 0.03
    micro_batch_size: int = 1  # per process
    grad_accum: int = 1

    def check(self) -> None:
        _positive("schedule.micro_batch_size", self.micro_batch_size)
        _positive("schedule.grad_accum", self.grad_accum)
        if not 0 <= self.warmup_ratio < 1:
            raise ConfigError(f"schedule.warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        if self.epochs <= 0 and self.max_steps <= 0:
            raise ConfigError("schedule: set epochs > 0 or max_steps > 0")


@dataclass
class CheckpointConfig(TrainSection):
    section = "checkpoint"

    every_steps: int = 500  # 0: only at the end
    keep_last: int = 3
    save_final: bool = True


@dataclass
class LoggingConfig(TrainSection):
    section = "logging"

    every_steps: int = 1
    tensorboard: bool = True
    jsonl: bool = True
    progress: bool = True
    val_every_steps: int = 0  # 0: no validation during training
    val_max_batches: int = 0  # 0: the whole validation set


@dataclass
class TrainConfig(TrainSection):
    section = "train"

    name: str = "run"
    # what a step's loss is (breastgpt.train.objectives): "language" (next-token loss on the answers), "encoders"
    # (the encoder groups learn the closed answers through linear heads), or one a recipe module registers
    objective: str = "language"
    seed: int = 0
    precision: Literal["fp32", "bf16"] = "fp32"
    # Deterministic kernels (and one CPU thread unless `threads` says otherwise): golden loss curves, slower.
    deterministic: bool = False
    # CPU intra-op threads: 0 = automatic (breastgpt.threads: $BREASTGPT_THREADS, else the free usable cores;
    # 1 when deterministic), else exactly this many.
    threads: int = 0
    output_dir: str = ""
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)

    def check(self) -> TrainConfig:
        if self.threads < 0:
            raise ConfigError(f"threads must be >= 0 (0 = automatic), got {self.threads}")
        for section in (self.data, self.model, self.optim, self.schedule):
            section.check()
        from breastgpt.model.variants import get_variant

        if self.data.packing and not get_variant(self.model.arch).is_breastgpt:
            raise ConfigError("data.packing is only implemented for BreastGPT models (model.arch=breastgpt and its "
                              "variants)")
        from breastgpt.registry import RegistryError
        from breastgpt.train.objectives import get_objective

        try:
            objective = get_objective(self.objective)
        except RegistryError as exc:
            raise ConfigError(f"objective: {exc}") from exc
        objective.check(self)
        return self


# ---- parsing ------------------------------------------------------------------------------------------------


def _positive(name: str, value: int) -> None:
    if value < 1:
        raise ConfigError(f"{name} must be >= 1, got {value}")


def apply_overrides(config: TrainConfig, overrides: list[str]) -> TrainConfig:
    """Apply ``section.key=value`` strings (the CLI's ``--set``) with type checking; returns a new config."""
    data = config.to_dict()
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. optim.lr=2e-5")
        key, value = item.split("=", 1)
        parts = key.strip().split(".")
        node: dict[str, Any] = data
        for i, part in enumerate(parts):
            if not isinstance(node, dict) or part not in node:
                known = sorted(node) if isinstance(node, dict) else []
                raise ConfigError(f"--set {key}: unknown key {'.'.join(parts[: i + 1])!r}; known here: {known}")
            if i == len(parts) - 1:
                if isinstance(node[part], dict):
                    raise ConfigError(f"--set {key}: {key!r} is a section; set one of its keys")
                node[part] = value
            else:
                node = node[part]
    return TrainConfig.from_dict(data)


def overrides_between(base: TrainConfig, config: TrainConfig) -> list[str]:
    """The ``--set`` strings that turn `base` (a recipe) into `config`: one per value that differs, so
    ``apply_overrides(base, overrides_between(base, config)) == config`` (a run handed to another process as
    ``breastgpt train run --recipe NAME --set ...``)."""

    def leaves(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in data.items():
            out.update(leaves(value, f"{prefix}{key}.") if isinstance(value, dict) else {prefix + key: value})
        return out

    def text(value: Any) -> str:
        return value if isinstance(value, str) else json.dumps(value)

    old, new = leaves(base.to_dict()), leaves(config.to_dict())
    return [f"{key}={text(value)}" for key, value in new.items() if old.get(key) != value]


__all__ = [
    "CheckpointConfig", "ConfigError", "DataConfig", "LoggingConfig", "LoraConfig", "ModelConfig", "OptimConfig",
    "ScheduleConfig", "TrainConfig", "TrainSection", "apply_overrides", "overrides_between",
]
