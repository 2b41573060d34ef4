"""BreastGPTProcessor: ChatML prompts with stage system prompts and selection-sized visual placeholders.

Wraps Qwen3-VL's processor (tokenizer + image processor + video processor). The number of placeholder
tokens written for each visual input is exactly what the model keeps after token selection:
``min(L, k)`` with L the merged tokens before selection and k the budget for its kind (image 64,
volume 128 split over frames, slide 128), so prompts and model always agree.

Messages are plain dicts: ``{"role": "user"|"assistant"|"system", "content": str | list[part]}`` with parts
``{"type": "text", "text": ...}``, ``{"type": "image", "image": PIL | array[H,W(,3)]}``,
``{"type": "volume", "volume": uint8 array[T,H,W,3]}`` (T even; windowed/resampled by ``breastgpt.io``) and
``{"type": "slide", "features": [N,F], "grid": int [N,2] (col,row)}`` or ``"coords"`` (level-0 px) with
``"tile_size"`` (level-0 px per tile).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from transformers.models.qwen3_vl.processing_qwen3_vl import Qwen3VLProcessor

from breastgpt.model.configuration import HISTO_TOKEN
from breastgpt.model.modeling import volume_frame_budgets

IGNORE_INDEX = -100
MAX_IMAGE_PIXELS = 1024 * 32 * 32  # SPEC §3.3: area <= 1024·32·32, sides multiples of 32
_TEXT_CACHE_SIZE = 16384  # distinct text pieces memoised per processor (`_text`)
_MEDIA_CACHE_BYTES = 1 << 30  # processed image/volume tensors memoised per processor (`_processed`)
STAGES = ("screening", "diagnosis", "treatment planning")


def system_prompts() -> dict[str, str]:
    """Stage -> system prompt text: the corpus's own stage prompts (`corpus/templates/data/prompts.json`), so a
    conversation built from a stage reads exactly as the training records did."""
    from breastgpt.corpus.templates import system_prompt

    return {stage: system_prompt(stage) for stage in STAGES}


def frame_stamp_texts(frames: int, fps: float = 2.0, temporal_patch: int = 2) -> list[str]:
    """The text before each temporal patch of a volume of ``frames`` slices, as Qwen3-VL writes it for video:
    the mean time of the patch's first and last frame at ``fps`` (a short last patch repeats its last frame),
    e.g. ``["<0.2 seconds>", "<1.2 seconds>"]`` for 4 slices at 2 fps."""
    if frames < 1 or temporal_patch < 1 or fps <= 0:
        raise ValueError(f"frames={frames}, temporal_patch={temporal_patch}, fps={fps}: need positive values")
    indices = list(range(frames)) + [frames - 1] * (-frames % temporal_patch)
    return [f"<{(indices[i] + indices[i + temporal_patch - 1]) / fps / 2:.1f} seconds>"
            for i in range(0, len(indices), temporal_patch)]


def qwen_image_processor(**kwargs: Any):
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import Qwen2VLImageProcessor

    kwargs = {"patch_size": 16, "temporal_patch_size": 2, "merge_size": 2, "image_mean": [0.5] * 3,
              "image_std": [0.5] * 3, **kwargs}
    return Qwen2VLImageProcessor(**kwargs)


def qwen_video_processor(**kwargs: Any):
    from transformers.models.qwen3_vl.video_processing_qwen3_vl import Qwen3VLVideoProcessor

    kwargs = {"patch_size": 16, "temporal_patch_size": 2, "merge_size": 2, "image_mean": [0.5] * 3,
              "image_std": [0.5] * 3, **kwargs}
    return Qwen3VLVideoProcessor(**kwargs)


class BreastGPTProcessor(Qwen3VLProcessor):
    """Qwen3-VL processor + ``<|histo_pad|>`` slides, stage system prompts and selection budgets."""

    def __init__(
        self,
        image_processor=None,
        tokenizer=None,
        video_processor=None,
        chat_template=None,
        image_budget: int = 64,
        volume_budget: int = 128,
        slide_budget: int = 128,
        slide_feature_dim: int | None = None,
        image_min_pixels: int = 64 * 32 * 32,
        image_max_pixels: int = MAX_IMAGE_PIXELS,
        volume_fps: float = 2.0,
        **kwargs,
    ):
        super().__init__(image_processor, tokenizer, video_processor, chat_template=chat_template, **kwargs)
        self.image_budget, self.volume_budget, self.slide_budget = image_budget, volume_budget, slide_budget
        self.slide_feature_dim = slide_feature_dim
        if image_max_pixels > MAX_IMAGE_PIXELS:
            raise ValueError(f"image_max_pixels={image_max_pixels} exceeds the SPEC limit {MAX_IMAGE_PIXELS}")
        self.image_min_pixels, self.image_max_pixels = image_min_pixels, image_max_pixels
        self.volume_fps = volume_fps
        self.histo_token = HISTO_TOKEN
        self.histo_token_id = tokenizer.convert_tokens_to_ids(HISTO_TOKEN)
        if self.histo_token_id is None or self.histo_token_id == tokenizer.unk_token_id:
            raise ValueError(f"the tokenizer has no {HISTO_TOKEN}; build the checkpoint with `breastgpt model init`")

    # ---- token helpers ------------------------------------------------------------------------

    def _special(self, token: str) -> list[int]:
        return [self.tokenizer.convert_tokens_to_ids(token)]

    def _text(self, text: str) -> list[int]:
        # Memoised: a training conversation repeats the same pieces (role headers, system prompts, options,
        # instructions) and tokenising them one call at a time was the largest share of encoding a sample. Keyed
        # on the vocabulary size too, so tokens added to the tokenizer afterwards are never served stale.
        cache = self.__dict__.setdefault("_text_ids", {})
        key = (text, len(self.tokenizer))
        ids = cache.get(key)
        if ids is None:
            # split_special_tokens: a "<|image_pad|>" typed in a report must never become a placeholder
            ids = tuple(self.tokenizer.encode(text, add_special_tokens=False, split_special_tokens=True))
            if len(cache) >= _TEXT_CACHE_SIZE:
                cache.clear()
            cache[key] = ids
        return list(ids)

    def _wrap(self, pad: str, count: int) -> list[int]:
        return self._special(self.vision_start_token) + self._special(pad) * count + self._special(
            self.vision_end_token
        )

    # ---- visual inputs ------------------------------------------------------------------------

    def _processed(self, kind: str, array: Any, run: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """(pixel values, grid) of one image or volume: `run()`, memoised on the array's content.

        Training draws every medium once per epoch — with re-worded variants many times per epoch — and the
        Qwen3-VL image / video processors (resize, normalise, patchify) were about a quarter of encoding a sample.
        The key is a digest of the pixels with their shape and dtype plus the processor settings that shape the
        output, so an edited image can never be served stale; the memo is bounded (`_MEDIA_CACHE_BYTES`, cleared
        when full). Callers only read the tensors (collation concatenates them into new ones).
        """
        import hashlib

        arr = np.ascontiguousarray(np.asarray(array))
        key = (kind, hashlib.blake2b(arr.tobytes(), digest_size=16).hexdigest(), arr.shape, str(arr.dtype),
               self.image_min_pixels, self.image_max_pixels)
        cache = self.__dict__.setdefault("_media_memo", {})
        hit = cache.get(key)
        if hit is None:
            hit = run()
            held = self.__dict__.get("_media_memo_bytes", 0) + hit[0].numel() * hit[0].element_size()
            if held > _MEDIA_CACHE_BYTES:
                cache.clear()
                held = hit[0].numel() * hit[0].element_size()
            cache[key] = hit
            self.__dict__["_media_memo_bytes"] = held
        return hit

    def _image(self, image: Any, out: dict[str, list]) -> list[int]:
        size = {"shortest_edge": self.image_min_pixels, "longest_edge": self.image_max_pixels}

        def run() -> tuple[torch.Tensor, torch.Tensor]:
            feats = self.image_processor(images=[image], size=size, return_tensors="pt")
            return feats["pixel_values"], feats["image_grid_thw"][0]

        pixels, grid = self._processed("image", image, run)
        out["pixel_values"].append(pixels)
        out["image_grid_thw"].append(grid)
        tokens = int(grid.prod()) // self.image_processor.merge_size**2
        return self._wrap(self.image_token, min(tokens, self.image_budget))

    def _volume(self, volume: Any, out: dict[str, list]) -> list[int]:
        arr = _check_volume(volume)
        factor = self.video_processor.patch_size * self.video_processor.merge_size
        # sides only rounded to the patch grid: io already windowed and resampled the volume
        size = {"shortest_edge": 1, "longest_edge": arr.shape[0] * max(arr.shape[1], factor) * max(arr.shape[2], factor) * 4}

        def run() -> tuple[torch.Tensor, torch.Tensor]:
            feats = self.video_processor(
                videos=[torch.from_numpy(arr).permute(0, 3, 1, 2)], do_sample_frames=False, size=size,
                cap_pixels_per_frame=False, return_tensors="pt",
            )
            return feats["pixel_values_videos"], feats["video_grid_thw"][0]

        pixels, grid = self._processed("volume", arr, run)
        out["pixel_values_videos"].append(pixels)
        out["video_grid_thw"].append(grid)
        t, h, w = (int(x) for x in grid)
        per_frame = h * w // self.video_processor.merge_size**2
        stamps = frame_stamp_texts(arr.shape[0], self.volume_fps, self.video_processor.temporal_patch_size)
        ids: list[int] = []
        for stamp, count in zip(stamps, volume_frame_budgets(t, per_frame, self.volume_budget)):
            ids += self._text(stamp) + self._wrap(self.video_token, count)
        return ids

    def _slide(self, part: dict[str, Any], out: dict[str, list]) -> list[int]:
        feats, grid = _slide_tensors(part, self.slide_feature_dim)
        out["slide_features"].append(feats)
        out["slide_grid"].append(grid)
        return self._wrap(self.histo_token, min(feats.shape[0], self.slide_budget))

    def _part(self, part: dict[str, Any] | str, out: dict[str, list]) -> list[int]:
        if isinstance(part, str):
            return self._text(part)
        kind = part.get("type")
        if kind == "text":
            return self._text(part["text"])
        if kind == "image":
            return self._image(part["image"], out)
        if kind == "volume":
            return self._volume(part["volume"], out)
        if kind == "slide":
            return self._slide(part, out)
        raise ValueError(f"message part of unknown type {kind!r}; use text, image, volume or slide")

    # ---- conversations ------------------------------------------------------------------------

    def encode(
        self, messages: list[dict[str, Any]], stage: str | None = None, add_generation_prompt: bool = False
    ) -> dict[str, Any]:
        """One conversation -> 1-D ``input_ids``/``labels`` and its visual tensors (see ``pad_batch``).

        Labels keep only assistant content and its closing ``<|im_end|>``; everything else is -100.
        """
        out: dict[str, list] = {k: [] for k in _VISUAL_KEYS}
        ids: list[int] = []
        labels: list[int] = []
        for message in self._with_system(messages, stage):
            role, content = message["role"], message["content"]
            if role not in ("system", "user", "assistant"):
                raise ValueError(f"message role {role!r} is not one of system, user, assistant")
            head = self._special("<|im_start|>") + self._text(f"{role}\n")
            parts = [content] if isinstance(content, str) else content
            body = [i for part in parts for i in self._part(part, out)]
            tail = self._special("<|im_end|>")
            ids += head + body + tail + self._text("\n")
            supervised = body + tail if role == "assistant" else [IGNORE_INDEX] * (len(body) + len(tail))
            labels += [IGNORE_INDEX] * len(head) + supervised + [IGNORE_INDEX] * len(self._text("\n"))
        if add_generation_prompt:
            prompt = self._special("<|im_start|>") + self._text("assistant\n")
            ids += prompt
            labels += [IGNORE_INDEX] * len(prompt)
        return {"input_ids": torch.tensor(ids), "labels": torch.tensor(labels), **out}

    def _with_system(self, messages: list[dict[str, Any]], stage: str | None) -> list[dict[str, Any]]:
        if stage is None:
            return messages
        prompts = system_prompts()
        if stage not in prompts:
            raise ValueError(f"unknown clinical stage {stage!r}; choose one of {sorted(prompts)}")
        if messages and messages[0]["role"] == "system":
            raise ValueError("give either a stage or a system message, not both")
        return [{"role": "system", "content": prompts[stage]}, *messages]

    def pad_batch(self, samples: list[dict[str, Any]], padding_side: str = "left") -> dict[str, torch.Tensor]:
        """Pad encoded conversations into model inputs (left padding for generation, right for training)."""
        if padding_side not in ("left", "right"):
            raise ValueError(f"padding_side must be 'left' or 'right', got {padding_side!r}")
        longest = max(int(s["input_ids"].numel()) for s in samples)
        pad_id = self.tokenizer.pad_token_id
        batch: dict[str, Any] = {"input_ids": [], "attention_mask": [], "labels": []}
        for s in samples:
            n = int(s["input_ids"].numel())
            for key, fill in (("input_ids", pad_id), ("attention_mask", 0), ("labels", IGNORE_INDEX)):
                value = torch.ones(n, dtype=torch.long) if key == "attention_mask" else s[key]
                padding = torch.full((longest - n,), fill, dtype=torch.long)
                parts = (padding, value) if padding_side == "left" else (value, padding)
                batch[key].append(torch.cat(parts))
        batch = {k: torch.stack(v) for k, v in batch.items()}
        batch.update(_batch_visuals(samples))
        return batch


_VISUAL_KEYS = ("pixel_values", "image_grid_thw", "pixel_values_videos", "video_grid_thw", "slide_features",
                "slide_grid")


def _batch_visuals(samples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for key, grid_key in (("pixel_values", "image_grid_thw"), ("pixel_values_videos", "video_grid_thw")):
        values = [v for s in samples for v in s[key]]
        if values:
            out[key] = torch.cat(values)
            out[grid_key] = torch.stack([g for s in samples for g in s[grid_key]])
    slides = [f for s in samples for f in s["slide_features"]]
    if slides:
        grids = [g for s in samples for g in s["slide_grid"]]
        n = max(f.shape[0] for f in slides)
        out["slide_features"] = torch.zeros(len(slides), n, slides[0].shape[1], dtype=slides[0].dtype)
        out["slide_grid"] = torch.zeros(len(slides), n, 2, dtype=torch.long)
        out["slide_mask"] = torch.zeros(len(slides), n, dtype=torch.bool)
        for i, (f, g) in enumerate(zip(slides, grids)):
            out["slide_features"][i, : f.shape[0]] = f
            out["slide_grid"][i, : f.shape[0]] = g
            out["slide_mask"][i, : f.shape[0]] = True
    return out


def _check_volume(volume: Any) -> np.ndarray:
    arr = np.asarray(volume)
    if arr.ndim != 4 or arr.shape[-1] != 3:
        raise ValueError(f"volume must be an array [T, H, W, 3] of frames, got shape {arr.shape}; "
                         "prepare it with breastgpt.io's volume reader (windowing, resampling, 3 channels)")
    if arr.dtype != np.uint8:
        raise ValueError(f"volume frames must be uint8 (windowed), got {arr.dtype}")
    if arr.shape[0] < 2 or arr.shape[0] % 2:
        raise ValueError(f"volume depth must be even and >= 2 (temporal patch 2), got {arr.shape[0]} slices")
    return np.ascontiguousarray(arr)


def _slide_tensors(part: dict[str, Any], feature_dim: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    feats = torch.as_tensor(np.asarray(part["features"]), dtype=torch.float32)
    if feats.ndim != 2 or feats.shape[0] < 1:
        raise ValueError(f"slide features must be [N, F] with N >= 1, got shape {tuple(feats.shape)}")
    if feature_dim is not None and feats.shape[1] != feature_dim:
        raise ValueError(f"slide features have dim {feats.shape[1]} but the model expects {feature_dim}; "
                         "extract them with the tile encoder the checkpoint was trained with")
    if not bool(torch.isfinite(feats).all()):
        raise ValueError("slide features contain NaN or infinite values; re-extract the feature file")
    if "grid" in part:
        grid = torch.as_tensor(np.asarray(part["grid"]), dtype=torch.long)
    elif "coords" in part and "tile_size" in part:
        coords = torch.as_tensor(np.asarray(part["coords"]), dtype=torch.float64)
        grid = torch.floor(coords / float(part["tile_size"])).long()
    else:
        raise ValueError("a slide part needs 'grid' (tile col,row) or 'coords' (level-0 px) with 'tile_size'")
    if grid.shape != (feats.shape[0], 2):
        raise ValueError(f"slide grid/coords must be [N, 2] with N={feats.shape[0]}, got {tuple(grid.shape)}")
    return feats, grid


__all__ = ["BreastGPTProcessor", "IGNORE_INDEX", "STAGES", "frame_stamp_texts", "qwen_image_processor", "qwen_video_processor",
           "system_prompts"]
