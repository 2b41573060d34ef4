"""BreastGPT configuration: Qwen3-VL's config plus the slide branch and token selection.

The two nested configs are typed dataclasses stored in ``config.json`` as plain dicts; parsing them
rejects unknown keys so a typo in a recipe fails loudly instead of silently using a default.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from huggingface_hub.dataclasses import strict
from transformers import Qwen3VLConfig

from breastgpt.config import ConfigError, StrictConfig
from breastgpt.model.longnet import LongNetConfig

HISTO_TOKEN = "<|histo_pad|>"


@dataclass(frozen=True)
class SelectionConfig(StrictConfig):
    """Concept-preserving token selection (SPEC §3.5): one budget per visual kind."""

    section = "selection_config"

    image_budget: int = 64
    volume_budget: int = 128
    slide_budget: int = 128
    temperature: float = 0.2
    text_conditioning: bool = False
    text_temperature: float = 0.02
    coverage_weight: float = 0.5
    soft_temperature: float = 1.0
    chunk_size: int = 4096
    # True: DeepStack sets take the main selection's indices (ours); False: each set selects on its
    # own, as the reference did, so DeepStack token j may come from another patch than main token j.
    deepstack_reuse_main_indices: bool = True
    # The paper's learnable ablation instead of the training-free greedy (breastgpt.model.learnable_selection):
    # learned concept queries score tokens, Gumbel top-k in training, a coverage regulariser added to the loss.
    learnable: bool = False
    learnable_concepts: int = 32
    gumbel_temperature: float = 1.0
    learnable_coverage_weight: float = 0.01

    def validate(self) -> None:
        for name in ("image_budget", "volume_budget", "slide_budget", "chunk_size", "learnable_concepts"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"selection.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("temperature", "text_temperature", "soft_temperature", "gumbel_temperature"):
            if float(getattr(self, name)) <= 0:
                raise ConfigError(f"selection.{name} must be > 0, got {getattr(self, name)}")
        if self.learnable_coverage_weight < 0:
            raise ConfigError(f"selection.learnable_coverage_weight must be >= 0, got {self.learnable_coverage_weight}")
        if self.learnable and self.text_conditioning:
            raise ConfigError("selection.learnable=true scores tokens with learned concept queries, which read no "
                              "prompt; text_conditioning applies to the training-free selection only. Turn one off.")
        if self.learnable and not self.deepstack_reuse_main_indices:
            raise ConfigError("selection.learnable=true: DeepStack sets always reuse the learned selection's indices "
                              "(the reference's per-set selection is defined for the training-free greedy only); "
                              "set deepstack_reuse_main_indices=true.")


@dataclass(frozen=True)
class SlideBranchConfig(StrictConfig):
    """Gigapixel branch: tile features (from a frozen tile encoder) -> LongNet -> projectors."""

    section = "slide_config"

    feature_dim: int = 768
    encoder_id: str = "conch_v1_5"
    positional: bool = True
    longnet: LongNetConfig = field(default_factory=LongNetConfig)

    def validate(self) -> None:
        if self.longnet.input_dim != self.feature_dim:
            raise ConfigError(
                f"slide_config: feature_dim={self.feature_dim} but longnet.input_dim={self.longnet.input_dim}; "
                "they must agree (the LongNet reads the tile features directly)."
            )
        if self.positional != (self.longnet.positional != "none"):
            raise ConfigError(
                f"slide_config: positional={self.positional} disagrees with longnet.positional="
                f"{self.longnet.positional!r}; use positional=true with 'sincos2d' or false with 'none'."
            )

    @classmethod
    def prepare(cls, data: dict[str, Any], where: str) -> dict[str, Any]:
        """A slide_config without `longnet` gets the default LongNet sized to its feature_dim and positional flag."""
        data = dict(data)
        if data.get("longnet") is None:
            data.pop("longnet", None)
            feature_dim = data.get("feature_dim", 768)
            positional = data.get("positional", True)
            if isinstance(feature_dim, int) and isinstance(positional, bool):
                data["longnet"] = LongNetConfig(input_dim=feature_dim, positional="sincos2d" if positional else "none")
        return data


@strict
class BreastGPTConfig(Qwen3VLConfig):
    r"""Qwen3-VL configuration extended with the gigapixel (slide) branch and token selection.

    slide_config (`dict`, *optional*): a `SlideBranchConfig` as a dict (LongNet config, feature dim,
        expected tile-encoder id, positional on/off).
    selection_config (`dict`, *optional*): a `SelectionConfig` as a dict (budgets 64/128/128 ...).
    histo_token_id (`int`): id of `<|histo_pad|>`, the slide placeholder token.
    """

    model_type = "breastgpt"

    slide_config: dict | None = None
    selection_config: dict | None = None
    histo_token_id: int = 151669

    def __post_init__(self, **kwargs):
        slide = SlideBranchConfig.from_dict(self.slide_config or {})
        selection = SelectionConfig.from_dict(self.selection_config or {})
        self.slide_config = slide.to_dict()
        self.selection_config = selection.to_dict()
        super().__post_init__(**kwargs)
        self._check_deepstack_agreement(slide)

    def _check_deepstack_agreement(self, slide: SlideBranchConfig) -> None:
        n_taps = len(self.vision_config.deepstack_visual_indexes)
        if slide.longnet.depth != n_taps:
            raise ValueError(
                f"BreastGPTConfig: the slide LongNet has {slide.longnet.depth} layers but the ViT has {n_taps} "
                "DeepStack taps; each LongNet layer feeds one DeepStack set, so the two counts must be equal."
            )
        # Qwen3-VL adds DeepStack set j to the hidden states *after* decoder layer j. A set added after the last
        # layer reaches no logit: its merger / projector never receives a gradient and only costs compute
        # (docs/model.md).
        n_layers = int(self.text_config.num_hidden_layers)
        if n_taps >= n_layers:
            raise ValueError(
                f"BreastGPTConfig: {n_taps} DeepStack taps on a {n_layers}-layer language model; set j is added "
                f"after layer j, so set {n_layers - 1} and later would never reach the output. Use at most "
                f"{n_layers - 1} taps (and as many LongNet layers) or a deeper language model."
            )

    @property
    def slide(self) -> SlideBranchConfig:
        return SlideBranchConfig.from_dict(self.slide_config)

    @property
    def selection(self) -> SelectionConfig:
        return SelectionConfig.from_dict(self.selection_config)


def slide_encoder_id(config: Any) -> str | None:
    """The tile encoder a model's slide branch was trained on (`slide_config.encoder_id`); None for a model
    without a slide branch. Feature files made by another encoder are refused wherever this model reads them."""
    raw = getattr(config, "slide_config", None)
    value = raw.get("encoder_id") if isinstance(raw, dict) else getattr(raw, "encoder_id", None)
    return str(value) if value else None


__all__ = ["BreastGPTConfig", "HISTO_TOKEN", "SelectionConfig", "SlideBranchConfig", "slide_encoder_id"]
