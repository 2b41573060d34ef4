"""One case, from raw files, to a streamed answer (the Python side of `breastgpt ask`)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from breastgpt.infer.engine import Conversation, Engine, GenerationParams
from breastgpt.infer.inputs import (SlideInput, encode_slide, image_modality, load_image, load_slide_features,
                                    load_volume)
from breastgpt.model.configuration import slide_encoder_id
from breastgpt.preprocessing import NO_SETTINGS_NOTICE, Preprocessing


@dataclass
class AskInputs:
    images: list[Path] = field(default_factory=list)
    volume: Path | None = None
    window: str | None = None
    slide: Path | None = None
    slide_features: Path | None = None
    encoder: str | None = None  # None: the tile encoder the checkpoint's slide branch was built for
    modality: str | None = None  # images: mammography | ultrasound | other; None: from the DICOM Modality tag
    encoder_weights: Path | None = None
    mpp: float | None = None
    tile_mpp: float | None = None
    tile_size_level0: float | None = None

    def __post_init__(self) -> None:
        if self.slide is not None and self.slide_features is not None:
            raise ValueError("give --slide or --slide-features, not both")
        if self.slide_features is None and (self.tile_mpp is not None or self.tile_size_level0 is not None):
            raise ValueError("--tile-mpp and --tile-size-level0 describe a --slide-features file; give one")


HISTORY_MEDIA = ("image", "volume", "slide_features")


class HistoryError(ValueError):
    """A conversation-history file that cannot be used (the message names the file and the fix)."""


def _history_part(part: Any, base: Path, where: str, expect_dim: int | None,
                  settings: Preprocessing | None, expect_encoder: str | None = None) -> dict[str, Any]:
    if not isinstance(part, dict) or part.get("type") not in ("text", *HISTORY_MEDIA):
        raise HistoryError(f"{where}: a part is {{'type': 'text', 'text': ...}} or {{'type': one of "
                           f"{HISTORY_MEDIA}, 'path': ...}}, got {part!r}")
    if part["type"] == "text":
        return {"type": "text", "text": str(part.get("text", ""))}
    path = base / str(part.get("path", ""))
    if part["type"] == "image":
        return {"type": "image", "image": load_image(path, settings=settings, modality=image_modality(path))}
    if part["type"] == "volume":
        return {"type": "volume", "volume": load_volume(path, window=part.get("window"), settings=settings)[0]}
    return load_slide_features(path, expect_dim=expect_dim, expect_encoder=expect_encoder).part()


def load_history(path: str | Path, expect_dim: int | None = None, settings: Preprocessing | None = None,
                 expect_encoder: str | None = None) -> list[dict[str, Any]]:
    """Earlier turns of a conversation from a JSON file: a list of {"role": "user" | "assistant", "content": text
    or a list of parts}, media parts naming files relative to the history file (the layout of an OpenAI message
    history, with local paths in place of URLs). Media are read through the same readers as the question's and
    prepared with the same `settings` (the checkpoint's preprocessing)."""
    path = Path(path)
    try:
        turns = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise HistoryError(f"{path}: cannot read a JSON conversation history ({error}); see docs/pathway.md") from None
    if not isinstance(turns, list) or not all(isinstance(t, dict) and t.get("role") in ("user", "assistant")
                                              and set(t) == {"role", "content"} for t in turns):
        raise HistoryError(f"{path}: expected a list of {{'role': 'user' | 'assistant', 'content': ...}} objects")
    messages = []
    for i, turn in enumerate(turns):
        content = turn["content"]
        if isinstance(content, list):
            content = [_history_part(p, path.parent, f"{path}: turn {i + 1}", expect_dim, settings, expect_encoder)
                       for p in content]
        messages.append({"role": turn["role"], "content": content})
    return messages


def build_conversation(engine: Engine, question: str, inputs: AskInputs, stage: str,
                       console: Console | None = None, task: str = "open_vqa",
                       history: list[dict[str, Any]] | None = None) -> tuple[Conversation, SlideInput | None]:
    """Read every input through the readers, normalised with the checkpoint's preprocessing settings (as training
    saw its corpus), and put them before the question, in a fixed order, after the earlier turns of `history`
    (processor messages, e.g. from `load_history`)."""
    settings = engine.preprocessing
    if console and not engine.preprocessing_recorded:
        console.print(f"[yellow]notice:[/yellow] {NO_SETTINGS_NOTICE}")
    parts: list[dict[str, Any]] = []
    for path in inputs.images:
        modality = image_modality(path, inputs.modality)
        if console:
            console.print(f"[dim]image prepared as {modality} (docs/inference.md)")
        parts.append({"type": "image", "image": load_image(path, settings=settings, modality=modality)})
    if inputs.volume is not None:
        frames, preset = load_volume(inputs.volume, window=inputs.window, settings=settings)
        if console:
            console.print(f"[dim]volume: {frames.shape[0]} frames of {frames.shape[1]}×{frames.shape[2]}, window {preset}")
        parts.append({"type": "volume", "volume": frames})
    slide = None
    dim = getattr(engine.processor, "slide_feature_dim", None)
    if inputs.slide_features is not None:
        slide = load_slide_features(inputs.slide_features, expect_dim=dim, expect_encoder=slide_encoder_id(
                                    engine.model.config), tile_mpp=inputs.tile_mpp,
                                    tile_size_level0=inputs.tile_size_level0)
    elif inputs.slide is not None:
        encoder = trained_encoder(engine, inputs.encoder)
        if console:
            console.print(f"[dim]tiling and encoding {inputs.slide.name} with {encoder}…")
        slide = encode_slide(inputs.slide, encoder=encoder,
                             weights=str(inputs.encoder_weights) if inputs.encoder_weights else None,
                             mpp=inputs.mpp, expect_dim=dim)
    if slide is not None:
        parts.append(slide.part())
    parts.append({"type": "text", "text": question})
    return Conversation([*(history or []), {"role": "user", "content": parts}], stage=stage, task=task), slide


def trained_encoder(engine: Engine, requested: str | None = None) -> str:
    """The tile encoder to encode a slide with: the one the checkpoint's slide branch was trained on (its
    `slide_config.encoder_id`); `requested` (`--encoder`) must agree with it, or name one when the checkpoint
    does not."""
    encoder = slide_encoder_id(engine.model.config)
    if encoder and requested and requested != encoder:
        raise ValueError(f"--encoder {requested}: the checkpoint's slide branch was trained on {encoder!r} features; "
                         f"leave --encoder out (or pass {encoder}) so the model sees what it learned from")
    if not (encoder or requested):
        raise ValueError("the checkpoint names no slide encoder (slide_config.encoder_id); pass --encoder")
    return str(encoder or requested)


def run_ask(model: Path, question: str, inputs: AskInputs, *, stage: str = "diagnosis", task: str = "open_vqa",
            max_new_tokens: int = 256,
            temperature: float = 0.0, device: str | None = None, explain: Path | None = None,
            console: Console | None = None, history: Path | None = None) -> Iterator[str]:
    engine = Engine.from_pretrained(model, device=device)
    turns = (load_history(history, getattr(engine.processor, "slide_feature_dim", None), engine.preprocessing,
                          slide_encoder_id(engine.model.config))
             if history else None)
    conversation, slide = build_conversation(engine, question, inputs, stage, console, task, turns)
    params = GenerationParams(max_new_tokens=max_new_tokens, temperature=temperature)
    yield from engine.stream(conversation, params)
    if explain is not None:
        write_explanation(engine, conversation, slide, explain)


def write_explanation(engine: Engine, conversation: Conversation, slide: SlideInput | None, out: Path) -> None:
    """Which visual tokens the model kept (per input) and, for a slide, a GeoJSON + heatmap of the chosen tiles."""
    from breastgpt.infer.explain import selected_indices

    out.mkdir(parents=True, exist_ok=True)
    selections = selected_indices(engine, conversation)
    (out / "selection.json").write_text(json.dumps(selections, indent=2) + "\n")
    if slide is not None and selections.get("slides"):
        from breastgpt.infer.explain import write_slide_overlay

        write_slide_overlay(slide, selections["slides"][0], out)
