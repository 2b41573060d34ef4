"""Typed, nested training configuration: ``TrainConfig`` and its sections, strict parsing, ``--set`` overrides.

Every section is a dataclass. Parsing a dict rejects unknown keys, and an override ``a.b=c`` is converted to
the field's declared type before it is applied, so a typo or a wrong type fails at start-up, not hours in.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from typing import Any


class ConfigError(ValueError):
    """A training configuration that cannot be used as given."""


@dataclass
class DataConfig:
    train: str = ""  # JSONL of corpus records (format=records) or ms-swift rows (format=swift)
    val: str = ""
    format: str = "records"  # records | swift
    media_root: str = ""  # media paths in records are relative to this (default: the train file's folder)
    slide_root: str = ""  # slide feature files (.h5) are relative to this (default: media_root)
    # Slides as tile features for BreastGPT, or as the feature file's clean thumbnail image for a model
    # without a slide branch (the comparator).
    slide_mode: str = "features"  # features | thumbnail
    synthetic_records: int = 0  # >0 and no train file: write a synthetic corpus of this many records first
    max_length: int = 10_000
    overlong: str = "drop"  # drop | error
    packing: bool = False  # text-only samples only; see docs/training.md
    group_by_length: bool = True
    mega_batch_factor: int = 8  # length grouping sorts inside windows of this many global micro-batches
    num_workers: int = 0
    # decoded images / volumes kept in memory between epochs (MiB; 0 = off; cleared when full)
    media_memo_mib: int = 1024

    def check(self) -> None:
        _one_of("data.format", self.format, ("records", "swift"))
        _one_of("data.slide_mode", self.slide_mode, ("features", "thumbnail"))
        _one_of("data.overlong", self.overlong, ("drop", "error"))
        _positive("data.max_length", self.max_length)
        _positive("data.mega_batch_factor", self.mega_batch_factor)
        if self.media_memo_mib < 0:
            raise ConfigError(f"data.media_memo_mib must be >= 0 (0 turns the memo off), got {self.media_memo_mib}")
        if not self.train and self.synthetic_records <= 0:
            raise ConfigError("data.train is empty: give a records JSONL (--set data.train=PATH) "
                              "or data.synthetic_records=N for a synthetic corpus")


@dataclass
class LoraConfig:
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    # Regex over module paths: the LLM's attention and MLP projections.
    target_modules: str = r".*language_model\.layers\.\d+\.(self_attn\.(q|k|v|o)_proj|mlp\.(gate|up|down)_proj)"
    # Trained in full next to the adapters: the model class's warm-up module groups (model_setup.apply_lora).


@dataclass
class ModelConfig:
    arch: str = "breastgpt"  # breastgpt | qwen3vl (plain Qwen3-VL: no slide branch, no token selection)
    flavour: str = ""  # a named random-weight flavour (tiny, 4b, 8b) when no path is given
    path: str = ""  # local checkpoint folder (HF format); nothing is fetched
    init_seed: int = 0
    dtype: str = "float32"  # weights as stored: float32 (mixed precision keeps fp32 masters) | bfloat16
    trainable: str = "all"  # all | stage1 | lora | language
    gradient_checkpointing: bool = False
    attn_implementation: str = "sdpa"
    # frozen encoders (trainable=language): each medium's visual tokens computed once and kept (MiB; 0 = off;
    # cleared when full; breastgpt.model.encoder_memo)
    encoder_memo_mib: int = 1024
    lora: LoraConfig = field(default_factory=LoraConfig)

    def check(self) -> None:
        _one_of("model.arch", self.arch, ("breastgpt", "qwen3vl"))
        _one_of("model.dtype", self.dtype, ("float32", "bfloat16"))
        _one_of("model.trainable", self.trainable, ("all", "stage1", "lora", "language"))
        if self.encoder_memo_mib < 0:
            raise ConfigError(f"model.encoder_memo_mib must be >= 0 (0 turns the memo off), got {self.encoder_memo_mib}")
        if bool(self.flavour) == bool(self.path):
            raise ConfigError("give exactly one of model.flavour (random weights) or model.path (a local folder)")


@dataclass
class OptimConfig:
    lr: float = 1e-5
    weight_decay: float = 0.1
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8
    grad_clip: float = 1.0  # 0 disables clipping

    def check(self) -> None:
        if self.lr <= 0 or len(self.betas) != 2:
            raise ConfigError(f"optim: lr must be > 0 and betas two numbers, got lr={self.lr} betas={self.betas}")


@dataclass
class ScheduleConfig:
    epochs: float = 2.0
    max_steps: int = 0  # >0: stop after this many optimizer steps (and size the schedule to it)
    scheduler: str = "cosine"  # cosine | linear | constant
    warmup_ratio: float = 0.03
    micro_batch_size: int = 1  # per process
    grad_accum: int = 1

    def check(self) -> None:
        _one_of("schedule.scheduler", self.scheduler, ("cosine", "linear", "constant"))
        _positive("schedule.micro_batch_size", self.micro_batch_size)
        _positive("schedule.grad_accum", self.grad_accum)
        if not 0 <= self.warmup_ratio < 1:
            raise ConfigError(f"schedule.warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        if self.epochs <= 0 and self.max_steps <= 0:
            raise ConfigError("schedule: set epochs > 0 or max_steps > 0")


@dataclass
class CheckpointConfig:
    every_steps: int = 500  # 0: only at the end
    keep_last: int = 3
    save_final: bool = True


@dataclass
class LoggingConfig:
    every_steps: int = 1
    tensorboard: bool = True
    jsonl: bool = True
    progress: bool = True
    val_every_steps: int = 0  # 0: no validation during training
    val_max_batches: int = 0  # 0: the whole validation set


@dataclass
class TrainConfig:
    name: str = "run"
    seed: int = 0
    precision: str = "fp32"  # fp32 | bf16
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
        _one_of("precision", self.precision, ("fp32", "bf16"))
        if self.threads < 0:
            raise ConfigError(f"threads must be >= 0 (0 = automatic), got {self.threads}")
        for section in (self.data, self.model, self.optim, self.schedule):
            section.check()
        if self.data.packing and self.model.arch != "breastgpt":
            raise ConfigError("data.packing is only implemented for model.arch=breastgpt")
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        return _build(cls, data, "")


# ---- parsing ------------------------------------------------------------------------------------------------


def _one_of(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{name}={value!r} is not one of {list(allowed)}")


def _positive(name: str, value: int) -> None:
    if value < 1:
        raise ConfigError(f"{name} must be >= 1, got {value}")


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _build(cls: type, data: dict[str, Any], where: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'config'}: expected a mapping, got {type(data).__name__}")
    hints = _hints(cls)
    unknown = sorted(set(data) - set(hints))
    if unknown:
        raise ConfigError(f"{where or 'config'}: unknown key(s) {unknown}; known: {sorted(hints)}")
    kwargs = {}
    for name, value in data.items():
        path = f"{where}.{name}" if where else name
        kwargs[name] = _coerce(hints[name], value, path)
    return cls(**kwargs)


def _coerce(tp: Any, value: Any, path: str) -> Any:
    """Check (and, for strings from the command line, convert) one value against a declared type."""
    if dataclasses.is_dataclass(tp):
        return value if isinstance(value, tp) else _build(tp, value, path)
    origin = typing.get_origin(tp)
    if origin in (list, tuple):
        (inner,) = typing.get_args(tp)[:1]
        if isinstance(value, str):
            value = _parse_list(value, path)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{path}: expected a list, got {value!r}")
        return [_coerce(inner, v, f"{path}[{i}]") for i, v in enumerate(value)]
    if origin in (typing.Union, types.UnionType):
        raise ConfigError(f"{path}: union types are not supported in configs")
    return _scalar(tp, value, path)


def _parse_list(text: str, path: str) -> list[Any]:
    if text.strip().startswith("["):
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path}: {text!r} is not a JSON list ({exc.msg})") from exc
    return [part.strip() for part in text.split(",") if part.strip()]


_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")


def _scalar(tp: type, value: Any, path: str) -> Any:
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in _TRUE + _FALSE:
            return value.lower() in _TRUE
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str):
            try:
                return int(value.replace("_", ""))
            except ValueError:
                pass
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
    elif tp is str:
        if isinstance(value, str):
            return value
    else:
        raise ConfigError(f"{path}: unsupported field type {tp!r}")
    raise ConfigError(f"{path}: {value!r} is not a valid {tp.__name__}")


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


__all__ = [
    "CheckpointConfig", "ConfigError", "DataConfig", "LoggingConfig", "LoraConfig", "ModelConfig", "OptimConfig",
    "ScheduleConfig", "TrainConfig", "apply_overrides",
]
