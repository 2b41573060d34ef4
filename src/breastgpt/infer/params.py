"""Generation parameters: the one type that `ask`, `predict`, the server and the bench pass to a model.

Kept free of torch so that the bench (which may only talk to an endpoint) and the server's request parsing can
build it without loading the engine. Field names follow OpenAI's sampling options, which the server exposes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from breastgpt.config import ConfigError, StrictConfig

# The fields that decide an answer under greedy decoding: always recorded (and hashed by the bench cache).
_ALWAYS_RECORDED = ("max_new_tokens", "seed", "temperature", "top_p")


@dataclass(frozen=True)
class GenerationParams(StrictConfig):
    """Greedy by default (temperature 0, top-p 1), so the same request gives the same answer."""

    section = "generation"

    max_new_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0
    stop: tuple[str, ...] = ()
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    logprobs: bool = False
    top_logprobs: int = 0
    # Also the probability of every option of a closed question (bench only: log-likelihoods of a local model,
    # `logprobs` of an endpoint); generation itself does not change.
    option_scores: bool = False

    def validate(self) -> None:
        if self.max_new_tokens < 1:
            raise ConfigError("max_new_tokens must be at least 1")
        if self.temperature < 0 or not 0 < self.top_p <= 1:
            raise ConfigError("temperature must be ≥ 0 and top_p in (0, 1]")
        if any(not text for text in self.stop):
            raise ConfigError("stop sequences must not be empty")
        if self.top_logprobs < 0:
            raise ConfigError("top_logprobs must be ≥ 0")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0 and self.top_p == 1.0

    def as_record(self) -> dict[str, Any]:
        """What a saved answer records of its decoding: the four fields that decide a greedy answer, and any other
        field only where it differs from its default, so adding a field never changes an existing record (or the
        bench's cache keys, which hash it)."""
        default, data = GenerationParams(), self.to_dict()
        changed = {name: value for name, value in data.items()
                   if name not in _ALWAYS_RECORDED and getattr(self, name) != getattr(default, name)}
        return {**{name: data[name] for name in _ALWAYS_RECORDED}, **changed}

    def generate_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"do_sample": False, "max_new_tokens": self.max_new_tokens}
        if self.temperature > 0:
            kwargs.update(do_sample=True, temperature=self.temperature, top_p=self.top_p)
        if self.stop:
            kwargs["stop_strings"] = list(self.stop)
        return kwargs
