"""Training data: corpus records (or ms-swift rows) -> processor messages -> tensors -> batches.

A record's user text carries ms-swift placeholders (``<image>``, ``<video>``, ``<slide>``), one per media
item in order; each becomes a processor part with the decoded media. Labels are the processor's: only
assistant content and its closing ``<|im_end|>`` are supervised, everything else is -100. The number of
placeholder tokens per visual input comes from the model config's selection budgets, so prompts and model
agree.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from breastgpt.artifacts import sha256_file as file_sha256
from breastgpt.corpus.splits import SplitError
from breastgpt.train.config import ConfigError, DataConfig

IGNORE_INDEX = -100
_PLACEHOLDER = re.compile(r"(<image>|<video>|<slide>)")
_KIND_OF = {"<image>": "image", "<video>": "volume", "<slide>": "slide"}
# Record stages -> the processor's system-prompt stages.
_STAGE_PROMPT = {"screening": "screening", "diagnosis": "diagnosis", "treatment": "treatment planning"}


class DataError(ValueError):
    """A training sample that cannot be turned into model inputs."""


class MissingSplitError(DataError, SplitError):
    """A records file with no record of the split the run reads: the file and the setting disagree."""


@dataclass
class Sample:
    """One conversation before tokenisation: messages with placeholders and its media, in order."""

    id: str
    messages: list[dict[str, str]]
    media: list[tuple[str, str]] = field(default_factory=list)  # (kind, path relative to the root)
    stage: str | None = None


# ---- reading --------------------------------------------------------------------------------------------


def read_samples(path: str | Path, fmt: str, split: str = "") -> list[Sample]:
    """Read our corpus records (``fmt='records'``; with `split`, only that split's) or ms-swift rows
    (``fmt='swift'``, which carry no split) from JSONL."""
    from breastgpt.corpus.records import iter_jsonl, read_records_jsonl

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: training file not found; build the corpus with `breastgpt corpus build`")
    if fmt == "records":
        return [sample_from_record(r) for r in of_split(read_records_jsonl(path), split, path, lambda r: r.split)]
    return [_from_swift(row, f"{path.name}:{i}") for i, row in enumerate(iter_jsonl(path), 1)]


def of_split(rows: list[Any], split: str, where: Any,
             split_of: Callable[[Any], Any] = lambda row: row.get("split")) -> list[Any]:
    """The rows of `split` ("": all of them); a file whose rows are all of other splits is a `MissingSplitError`
    naming the splits it holds."""
    chosen = [row for row in rows if not split or split_of(row) == split]
    if rows and not chosen:
        found = sorted({str(split_of(row)) for row in rows})
        raise MissingSplitError(f"{where}: no record of split {split!r} (the file holds {', '.join(found)}); set "
                         "data.train_split / data.val_split, or \"\" to read every record")
    return chosen


def sample_from_record(rec: Any) -> Sample:
    media = [(m.kind, m.path) for m in rec.media]
    return Sample(rec.id, [dict(m) for m in rec.messages], media, rec.stage)


def _from_swift(row: dict[str, Any], where: str) -> Sample:
    if not isinstance(row.get("messages"), list) or not row["messages"]:
        raise DataError(f"{where}: an ms-swift row needs a non-empty 'messages' list")
    media = [("image", p) for p in row.get("images") or []] + [("volume", p) for p in row.get("videos") or []]
    media += [("slide", p) for p in row.get("slides") or []]
    # ms-swift media lists are per kind; order them as the placeholders appear in the text.
    by_kind: dict[str, list[str]] = {}
    for kind, p in media:
        by_kind.setdefault(kind, []).append(p)
    text = "".join(m["content"] for m in row["messages"] if m["role"] == "user")
    ordered = []
    for token in _PLACEHOLDER.findall(text):
        items = by_kind.get(_KIND_OF[token], [])
        if not items:
            raise DataError(f"{where}: more {token} placeholders than media entries")
        ordered.append((_KIND_OF[token], items.pop(0)))
    if any(by_kind.values()):
        raise DataError(f"{where}: media entries without a placeholder: {by_kind}")
    return Sample(str(row.get("id", where)), [dict(m) for m in row["messages"]], ordered, None)




# ---- media -------------------------------------------------------------------------------------------------


@dataclass
class MediaLoader:
    """Decodes media references through ``breastgpt.io`` / ``breastgpt.pathology`` (the only parsers)."""

    media_root: Path
    slide_root: Path
    slide_mode: str = "features"
    slide_feature_dim: int | None = None
    # > 0: keep up to this many bytes of decoded media, keyed on path, size and mtime (a training run reads every
    # medium once per epoch, and with re-worded variants many times per epoch; decoding images and volumes was
    # about a fifth of a small model's CPU training step, and reading a slide's feature file a third of encoding
    # the samples that have one). Arrays are handed out as copies, so a caller can never alter the memo.
    memo_bytes: int = 0
    _memo: dict[tuple, Any] = field(default_factory=dict, init=False, repr=False, compare=False)
    _memo_held: int = field(default=0, init=False, repr=False, compare=False)
    # (settings, modality): images not normalised by a corpus build (a published bench's media) are prepared
    # here with the model's preprocessing; corpus media are already normalised and are read as stored.
    prepare: tuple[Any, str] | None = None
    # the tile encoder the model's slide branch was trained on: feature files made by another are refused
    slide_encoder: str | None = None

    def part(self, kind: str, rel: str) -> dict[str, Any]:
        if self.memo_bytes <= 0:
            return self._decode(kind, rel)
        path = (self.slide_root if kind == "slide" else self.media_root) / rel
        stat = path.stat()
        key = (kind, str(path), stat.st_size, stat.st_mtime_ns)
        cached = self._memo.get(key)
        if cached is None:
            cached = self._decode(kind, rel)
            size = 0
            for value in cached.values():
                if isinstance(value, np.ndarray):
                    value.flags.writeable = False
                    size += value.nbytes
            if self._memo_held + size > self.memo_bytes:
                self._memo.clear()
                self._memo_held = 0
            self._memo[key] = cached
            self._memo_held += size
        return {k: v.copy() if isinstance(v, np.ndarray) else v for k, v in cached.items()}

    def _decode(self, kind: str, rel: str) -> dict[str, Any]:
        if kind == "image":
            return {"type": "image", "image": self._image(self.media_root / rel, self.prepare)}
        if kind == "volume":
            return {"type": "volume", "volume": self._volume(self.media_root / rel)}
        if kind == "slide":
            return self._slide(self.slide_root / rel)
        raise DataError(f"media {rel}: unknown kind {kind!r}")

    @staticmethod
    def _image(path: Path, prepare: tuple[Any, str] | None = None) -> np.ndarray:
        from breastgpt.io.raster import read_raster

        if prepare is None:
            return _rgb(np.asarray(read_raster(path)), path)
        from breastgpt.preprocessing import prepare_image, read_image_pixels

        settings, modality = prepare
        return _rgb(prepare_image(read_image_pixels(path), modality, settings).pixels, path)

    @staticmethod
    def _volume(path: Path) -> np.ndarray:
        from breastgpt.io.volume import read_corpus_volume
        from breastgpt.preprocessing import model_frames

        if path.suffix.lower() != ".npz":
            raise DataError(f"{path}: volumes in the corpus are windowed uint8 .npz files (corpus normalise)")
        return model_frames(read_corpus_volume(path))

    def _slide(self, path: Path) -> dict[str, Any]:
        from breastgpt.pathology.features import load_features

        features = self.slide_mode != "thumbnail"
        feats = load_features(path, expect_dim=self.slide_feature_dim if features else None,
                              expect_encoder=self.slide_encoder if features else None)
        if self.slide_mode == "thumbnail":
            if feats.thumbnail is None:
                raise DataError(f"{path}: the feature file holds no thumbnail; re-extract with `breastgpt slides`")
            return {"type": "image", "image": _rgb(np.asarray(feats.thumbnail), path)}
        footprint = feats.attrs.get("footprint_level0") or [feats.attrs.get("tile_size")]
        tile = float(footprint[0]) if footprint and footprint[0] else None
        if tile is None:
            raise DataError(f"{path}: no footprint_level0/tile_size attribute to turn coords into a tile grid")
        return {"type": "slide", "features": feats.features, "coords": feats.coords, "tile_size": tile}


def _rgb(array: np.ndarray, path: Path) -> np.ndarray:
    from breastgpt.preprocessing import model_image

    try:
        return model_image(array)
    except ValueError as exc:
        raise DataError(f"{path}: {exc}") from None


# ---- encoding ------------------------------------------------------------------------------------------


def to_messages(sample: Sample, loader: MediaLoader) -> list[dict[str, Any]]:
    """Replace placeholders in user turns by processor parts, consuming media in order."""
    media = list(sample.media)
    out = []
    for message in sample.messages:
        if message["role"] != "user" or not _PLACEHOLDER.search(message["content"]):
            out.append({"role": message["role"], "content": message["content"]})
            continue
        parts: list[Any] = []
        for piece in _PLACEHOLDER.split(message["content"]):
            if piece in _KIND_OF:
                if not media:
                    raise DataError(f"sample {sample.id}: more placeholders than media")
                kind, rel = media.pop(0)
                if kind != _KIND_OF[piece]:
                    raise DataError(f"sample {sample.id}: placeholder {piece} but the next media item is a {kind}")
                parts.append(loader.part(kind, rel))
            elif piece:
                parts.append({"type": "text", "text": piece})
        out.append({"role": "user", "content": parts})
    if media:
        raise DataError(f"sample {sample.id}: {len(media)} media item(s) without a placeholder")
    return out


def conversation_stage(sample: Sample, messages: list[dict[str, Any]]) -> str | None:
    """The processor stage for a sample: none when the conversation brings its own system prompt."""
    has_system = any(m["role"] == "system" for m in messages)
    return None if has_system or sample.stage is None else _STAGE_PROMPT.get(sample.stage)


def encode_sample(sample: Sample, processor: Any, loader: MediaLoader) -> dict[str, Any]:
    messages = to_messages(sample, loader)
    return processor.encode(messages, stage=conversation_stage(sample, messages))


class TrainDataset(torch.utils.data.Dataset):
    """Samples encoded on access (media decoded lazily); ``lengths`` are cheap upper-bound estimates."""

    def __init__(self, samples: list[Sample], processor: Any, loader: MediaLoader, config: DataConfig):
        self.processor, self.loader, self.config = processor, loader, config
        self.dropped: list[str] = []
        self.samples = self._within_length(samples)
        if not self.samples:
            raise DataError("no training samples left (all over data.max_length?)")
        self.lengths = [self.estimate_length(s) for s in self.samples]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict[str, Any]:
        encoded = encode_sample(self.samples[index], self.processor, self.loader)
        encoded["sample_id"] = self.samples[index].id
        return encoded

    def estimate_length(self, sample: Sample) -> int:
        """Text tokens + visual placeholders at their budget (an upper bound for images and slides)."""
        tok = self.processor.tokenizer
        text = " ".join(_PLACEHOLDER.sub("", m["content"]) for m in sample.messages)
        n = len(tok.encode(text, add_special_tokens=False)) + 5 * len(sample.messages) + 64
        budgets = {"image": self.processor.image_budget, "volume": self.processor.volume_budget,
                   "slide": self.processor.slide_budget}
        return n + sum(min(budgets[kind], 1 << 20) + 2 for kind, _ in sample.media)

    def _within_length(self, samples: list[Sample]) -> list[Sample]:
        kept = []
        for sample in samples:
            if self.estimate_length(sample) > self.config.max_length:
                n = int(encode_sample(sample, self.processor, self.loader)["input_ids"].numel())
                if n > self.config.max_length:
                    if self.config.overlong == "error":
                        raise DataError(f"sample {sample.id}: {n} tokens > data.max_length={self.config.max_length}; "
                                        "raise max_length or set data.overlong=drop")
                    self.dropped.append(sample.id)
                    continue
            kept.append(sample)
        return kept


# ---- collation -----------------------------------------------------------------------------------------


def collate(samples: list[dict[str, Any]], processor: Any, packing: bool = False,
            max_length: int = 0) -> dict[str, Any]:
    """Right-padded batch for training; with ``packing``, samples share rows (text-only samples only)."""
    ids = [s.pop("sample_id") for s in samples]
    if packing:
        batch = pack(samples, processor.tokenizer.pad_token_id, max_length)
    else:
        batch = processor.pad_batch(samples, padding_side="right")
        batch["mm_token_type_ids"] = mm_token_types(batch["input_ids"], processor)
    batch["sample_ids"] = ids
    return batch


def mm_token_types(input_ids: torch.Tensor, processor: Any) -> torch.Tensor:
    """Qwen3-VL's token types (0 text, 1 image, 2 video) that its own M-RoPE needs (the comparator);
    BreastGPT computes positions from the placeholders and ignores them."""
    tok = processor.tokenizer
    image, video = tok.convert_tokens_to_ids("<|image_pad|>"), tok.convert_tokens_to_ids("<|video_pad|>")
    return (input_ids == image).int() + 2 * (input_ids == video).int()


def _has_visual(sample: dict[str, Any]) -> bool:
    return any(len(sample.get(k) or []) for k in ("pixel_values", "pixel_values_videos", "slide_features"))


def pack(samples: list[dict[str, Any]], pad_id: int, max_length: int) -> dict[str, torch.Tensor]:
    """Pack samples into rows of at most ``max_length`` tokens, first fit in order.

    Each sample restarts its positions at 0 and there is no attention mask, which makes transformers build
    a block-diagonal causal mask from the position ids (no attention across samples). BreastGPT assigns
    3-D (t, h, w) positions to visual tokens per row from the placeholders, so samples with visual inputs
    cannot share a row: they are refused rather than silently mis-positioned.
    """
    if any(_has_visual(s) for s in samples):
        raise DataError("data.packing=true but a batch holds visual inputs; packing supports text-only samples "
                        "(BreastGPT's 3-D positions are computed per row). Set data.packing=false.")
    rows: list[list[dict[str, Any]]] = []
    for s in samples:
        n = int(s["input_ids"].numel())
        row = next((r for r in rows if sum(int(x["input_ids"].numel()) for x in r) + n <= max_length), None)
        if row is None:
            rows.append([s])
        else:
            row.append(s)
    width = max(sum(int(x["input_ids"].numel()) for x in r) for r in rows)
    out = {"input_ids": [], "labels": [], "position_ids": []}
    for r in rows:
        ids = torch.cat([x["input_ids"] for x in r])
        labels = torch.cat([x["labels"] for x in r])
        pos = torch.cat([torch.arange(int(x["input_ids"].numel())) for x in r])
        pad = width - ids.numel()
        out["input_ids"].append(torch.cat([ids, torch.full((pad,), pad_id)]))
        out["labels"].append(torch.cat([labels, torch.full((pad,), IGNORE_INDEX)]))
        out["position_ids"].append(torch.cat([pos, torch.arange(pad)]))  # padding: its own segment
    return {k: torch.stack(v).long() for k, v in out.items()}


def supervised_tokens(labels: torch.Tensor) -> int:
    """Tokens that contribute to the loss (labels shifted by one, as causal LM losses do)."""
    return int((labels[..., 1:] != IGNORE_INDEX).sum())


def data_manifest(config: DataConfig, n_train: int, dropped: list[str]) -> dict[str, Any]:
    """What the run trains on. The hash covers content and settings, not where the files live, so a
    corpus moved to another folder (or node) still resumes."""
    files = {}
    for key in ("train", "val"):
        path = getattr(config, key)
        if path:
            files[key] = {"path": str(path), "sha256": file_sha256(path)}
    settings = {k: v for k, v in config.__dict__.items() if k not in _LOCATION_KEYS}
    hashed = {"files": {k: v["sha256"] for k, v in files.items()}, "n_train": n_train, "dropped_overlong": dropped,
              "settings": settings}
    digest = hashlib.sha256(json.dumps(hashed, sort_keys=True, default=str).encode()).hexdigest()
    return {"files": files, "n_train": n_train, "dropped_overlong": dropped, "settings": settings, "sha256": digest}


_LOCATION_KEYS = ("train", "val", "media_root", "slide_root", "num_workers", "synthetic_records")


def corpus_preprocessing(config: DataConfig) -> Any:
    """The `Preprocessing` the training corpus was normalised with (its `preprocessing.json`, beside the media),
    or None for data that did not come from `corpus build` (synthetic records, foreign ms-swift files)."""
    from breastgpt.preprocessing import read_preprocessing

    return read_preprocessing(resolve_roots(config)[0]) if config.train else None


def resolve_roots(config: DataConfig) -> tuple[Path, Path]:
    if not config.train:
        raise ConfigError("data.train is empty")
    media = Path(config.media_root) if config.media_root else Path(config.train).resolve().parent
    slide = Path(config.slide_root) if config.slide_root else media
    return media, slide


__all__ = ["DataError", "MediaLoader", "MissingSplitError", "Sample", "TrainDataset", "collate",
           "corpus_preprocessing", "data_manifest", "encode_sample", "of_split", "pack", "read_samples",
           "resolve_roots", "supervised_tokens", "to_messages"]
