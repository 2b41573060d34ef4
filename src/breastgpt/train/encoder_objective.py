"""The ``encoders`` training objective: the model's encoders learn the training split's closed answers.

A model trained from scratch has to learn at once to see (the encoders) and to map what it sees to the answer words
(the language model); in a few hundred CPU steps the second half decides what is learned. This objective gives the
first half a head start, as a pretrained vision front end would. Each training study (all of its media: an MRI
study's sequences, every frame of a volume) becomes one item, whose media tokens (before selection) feed one linear
head per (template, media kind); the head reads `study_summary` of the tokens and is trained with cross-entropy on
that template's answer. Only the encoder module groups and the heads train (``model.trainable=encoders``). The
export is the model alone, ready for a language training that keeps those encoders frozen
(``model.trainable=language``); the heads are kept beside it (`encoder_heads.safetensors`) for `score_heads`.

Data: a records JSONL (``data.format=records``), e.g. a corpus's ``records.jsonl``, of which the records of
``data.train_split`` are read (``data.val_split`` of ``data.val``). Closed records are read (options and an answer
index) of templates with two or more answers among them; open questions, records without media or with media of
several kinds, templates with one answer, and pathway records are not (the latter mix several studies' media, and
the medium their answer reads, the slide, is trained through the single-study records); how many of each is logged
and kept in `encoder_heads.json`. ``data.slide_mode`` says how slides reach the model that will be trained from the
result: tile features through the slide branch, or the thumbnail image through the vision tower.

Mirror augmentation (``data.mirror=true``): every study of images or volumes is in the training set twice, as it is
and left-right mirrored, its labels mirrored with it (`mirror_classes`: "left breast" becomes "right breast"; a
template whose classes cannot follow a mirror is not trained on the mirrored copy), and every slide study twice as it
is, so that each study is still drawn equally often. With a few dozen studies per template the heads otherwise fit
the studies instead of the findings; mirrored copies double what they see and make a side-specific memory useless.
"""

from __future__ import annotations

import json
import logging
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
from torch import nn

from breastgpt.config import ConfigError
from breastgpt.train.objectives import OBJECTIVES, Objective, media_loader

HEADS_WEIGHTS, HEADS_INDEX = "encoder_heads.safetensors", "encoder_heads.json"


# ---- what the heads learn -------------------------------------------------------------------------------------


@dataclass
class EncoderTask:
    """What the heads learn: the answer classes of each template and the labels of each training study."""

    classes: dict[str, list[str]]
    media: dict[tuple[str, ...], dict[str, int]] = field(default_factory=dict)  # media paths -> template -> class
    examples: dict[tuple[str, ...], dict[str, Any]] = field(default_factory=dict)  # media paths -> one record
    skipped: dict[str, int] = field(default_factory=dict)  # records not read, by reason
    records: int = 0  # records read

    def priors(self) -> dict[str, str]:
        """Each template's most frequent training class (of equally frequent ones, the first in class order)."""
        out = {}
        for template, names in self.classes.items():
            counts = Counter(lab[template] for lab in self.media.values() if template in lab)
            out[template] = names[max(range(len(names)), key=lambda i: (counts[i], -i))]
        return out


_SIDES = {"left": "right", "right": "left"}


def mirrored_text(text: str) -> str:
    """`text` with the words left and right exchanged (case kept for a leading capital)."""

    def swap(match: re.Match) -> str:
        word = _SIDES[match.group(0).lower()]
        return word.capitalize() if match.group(0)[0].isupper() else word

    return re.sub(r"\b(?:[Ll]eft|[Rr]ight)\b", swap, text)


def mirror_classes(classes: list[str]) -> list[int] | None:
    """Where each answer class goes when the image is mirrored left-right: its own index for a class that names no
    side, the index of its mirror image for one that does; None when a side is named whose mirror is not a class
    (the template's labels cannot follow a mirror, so mirrored copies do not train it)."""
    out = []
    for name in classes:
        mirrored = mirrored_text(name)
        if mirrored not in classes:
            return None
        out.append(classes.index(mirrored))
    return out


class MirroredLoader:
    """A `train.data.MediaLoader` whose images and volumes come out mirrored left-right (slides unchanged: tile
    features carry no orientation the readings depend on)."""

    def __init__(self, loader: Any):
        self.loader = loader

    def part(self, kind: str, rel: str) -> dict[str, Any]:
        import numpy as np

        part = self.loader.part(kind, rel)
        if part["type"] == "image":  # (H, W, C)
            part["image"] = np.ascontiguousarray(part["image"][:, ::-1])
        elif part["type"] == "volume":  # (D, H, W, C)
            part["volume"] = np.ascontiguousarray(part["volume"][:, :, ::-1])
        return part


def closed_answer(record: dict[str, Any]) -> str:
    label = record.get("label") or {}
    if "options" not in label or "answer_index" not in label:
        raise ValueError(f"record {record.get('id')}: not a closed question (no options / answer index)")
    return label["options"][label["answer_index"]]


def is_closed(record: dict[str, Any]) -> bool:
    label = record.get("label") or {}
    return "options" in label and "answer_index" in label


def _skip_reason(record: dict[str, Any]) -> str | None:
    from breastgpt.corpus.pathway import is_pathway

    if is_pathway(record):
        return "pathway"
    if not record.get("media"):
        return "no media"
    if not is_closed(record):
        return "open question"
    if len({m["kind"] for m in record["media"]}) > 1:
        return "media of several kinds"
    return None


def encoder_task(records: list[dict[str, Any]]) -> EncoderTask:
    """Classes and per-study labels from the closed single-study records among `records` (training records: open
    questions, pathway records and records without media are counted in `skipped`)."""
    kept, skipped = [], Counter()
    for record in records:
        reason = _skip_reason(record)
        if reason is None:
            kept.append(record)
        else:
            skipped[reason] += 1
    classes: dict[str, list[str]] = {}
    for record in kept:
        classes.setdefault(record["template_id"], [])
        if closed_answer(record) not in classes[record["template_id"]]:
            classes[record["template_id"]].append(closed_answer(record))
    single = {t for t, c in classes.items() if len(c) < 2}  # one answer: a head has nothing to tell apart
    if single:
        skipped["template with one answer"] += sum(r["template_id"] in single for r in kept)
        kept = [r for r in kept if r["template_id"] not in single]
    classes = {t: sorted(c) for t, c in sorted(classes.items()) if t not in single}
    task = EncoderTask(classes, skipped=dict(sorted(skipped.items())), records=len(kept))
    # studies in record-id order: media file names are content hashes, and an order taken from them would change
    # with the bytes of the PNG encoder
    for record in sorted(kept, key=lambda r: r["id"]):
        key = tuple(m["path"] for m in record["media"])
        task.examples.setdefault(key, record)
        task.media.setdefault(key, {})[record["template_id"]] = classes[record["template_id"]].index(
            closed_answer(record))
    return task


# ---- media tokens and what a head reads ---------------------------------------------------------------------


def _media_candidates(model: Any, batch: dict[str, Any]) -> tuple[list[Any], list[int] | None]:
    """The selection candidates of a one-kind batch, and for volumes the number of frames (candidates) of each."""
    inner = model.model
    if batch.get("pixel_values") is not None and batch.get("image_grid_thw") is not None:
        return inner.image_candidates(batch["pixel_values"], batch["image_grid_thw"]), None
    if batch.get("pixel_values_videos") is not None and batch.get("video_grid_thw") is not None:
        frames = [int(t) for t in batch["video_grid_thw"][:, 0].tolist()]
        return inner.video_candidates(batch["pixel_values_videos"], batch["video_grid_thw"]), frames
    if batch.get("slide_features") is not None:
        return inner.slide_candidates(batch["slide_features"], batch["slide_grid"], batch.get("slide_mask")), None
    raise ValueError("the batch holds no image, volume or slide")


def _sides(cand: Any, is_slide: bool) -> torch.Tensor:
    """Each token's horizontal place in its frame, -1 (left edge) to +1 (right edge); 0 for slide tiles, whose
    orientation on the glass means nothing."""
    if is_slide:
        return torch.zeros(cand.main.shape[0], dtype=cand.main.dtype, device=cand.main.device)
    width = int(cand.cols.max()) + 1 if cand.cols.numel() else 1
    return ((cand.cols.to(cand.main.dtype) + 0.5) / width * 2 - 1).to(cand.main.device)


def media_tokens(model: Any, batch: dict[str, Any], *, with_sides: bool = False) -> list[torch.Tensor]:
    """The media tokens (before selection) of each medium of a one-kind batch, in batch order (a volume's are those
    of all of its frames: the model makes one selection candidate per frame). `with_sides`: each row gets one more
    column, the token's horizontal place (`_sides`), for `study_summary`."""
    cands, frames = _media_candidates(model, batch)
    is_slide = batch.get("slide_features") is not None and batch.get("pixel_values") is None \
        and batch.get("pixel_values_videos") is None
    rows = [torch.cat([c.main, _sides(c, is_slide)[:, None]], 1) if with_sides else c.main for c in cands]
    return rows if frames is None else study_tokens(rows, frames)


def study_summary(tokens: torch.Tensor) -> torch.Tensor:
    """What a head reads of a study's tokens (rows from `media_tokens(..., with_sides=True)`): their mean, their
    mean weighted by horizontal place (how much more of each feature lies right of the middle than left of it) and
    their per-feature maximum. The mean alone cannot say on which side a finding is (laterality), nor teach the
    encoders to mark a finding's tokens rather than the whole image; the maximum keeps a small finding that the
    mean dilutes."""
    features, sides = tokens[:, :-1], tokens[:, -1:]
    return torch.cat([features.mean(0), (features * sides).mean(0), features.amax(0)])


def study_tokens(tokens: list[torch.Tensor], counts: list[int]) -> list[torch.Tensor]:
    """Per-medium tokens regrouped per study: a study of several media (an MRI's sequences) gets all of theirs."""
    if sum(counts) != len(tokens):
        raise ValueError(f"{len(tokens)} media token sets for studies of {counts} media")
    starts = [sum(counts[:i]) for i in range(len(counts))]
    return [torch.cat(tokens[a:a + n]) for a, n in zip(starts, counts)]


# ---- items, heads, objective ---------------------------------------------------------------------------------


def _sample(record: dict[str, Any]) -> Any:
    """The record's user turn (its media placeholders) with a stand-in answer: only the media tokens are read."""
    from breastgpt.train.data import Sample

    user = next(m["content"] for m in record["messages"] if m["role"] == "user")
    messages = [{"role": "user", "content": user}, {"role": "assistant", "content": "."}]
    return Sample(record["id"], messages, [(m["kind"], m["path"]) for m in record["media"]], record.get("stage"))


def head_kind(record: dict[str, Any], slide_mode: str) -> str:
    """The media kind a head of this record's study reads: a slide shown as its thumbnail is an image."""
    kind = record["media"][0]["kind"]
    return "image" if kind == "slide" and slide_mode == "thumbnail" else kind


@dataclass
class _Item:
    record: dict[str, Any]
    kind: str
    targets: dict[str, int]  # template -> class index
    mirrored: bool = False


class EncoderDataset(torch.utils.data.Dataset):
    """One item per study (and one per mirrored study); encoded on first access and kept within `memo_bytes`, once
    per study and side (a slide study's two identical items share one encoding)."""

    def __init__(self, items: list[_Item], processor: Any, loader: Any, memo_bytes: int):
        if not items:
            raise ConfigError("the encoder objective found nothing to learn in data.train: no closed single-study "
                              "record of a template with two or more answers in the training split")
        self.items, self.processor, self.loader, self.memo_bytes = items, processor, loader, memo_bytes
        self.lengths = [1] * len(items)
        self.dropped: list[str] = []
        self._memo: dict[tuple[str, bool], dict[str, Any]] = {}  # (record id, mirrored) -> encoded sample
        self._held = 0

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, Any]:
        from breastgpt.train.data import encode_sample

        item = self.items[index]
        key = (item.record["id"], item.mirrored)
        encoded = self._memo.get(key)
        if encoded is None:
            loader = MirroredLoader(self.loader) if item.mirrored else self.loader
            encoded = encode_sample(_sample(item.record), self.processor, loader)
            size = sum(v.numel() * v.element_size() for v in encoded.values() if isinstance(v, torch.Tensor))
            if self._held + size <= self.memo_bytes:
                self._memo[key], self._held = encoded, self._held + size
        return {**encoded, "sample_id": item.record["id"], "kind": item.kind, "targets": dict(item.targets),
                "n_media": len(item.record["media"])}


def encoder_items(task: EncoderTask, slide_mode: str, mirror: bool) -> list[_Item]:
    """The training items: each study once, and with `mirror` once more: mirrored for images and volumes, as it is
    for slides (tile features have no left and right). The second copy of a slide keeps every study drawn equally
    often: with mirrored copies alone, slides would be half as frequent as the other studies and their heads half
    as trained (pathology heads 79 % instead of 93 % held out on the demo's cohort)."""
    flips = {t: mirror_classes(c) for t, c in task.classes.items()} if mirror else {}
    items = []
    for key, record in task.examples.items():
        kind = head_kind(record, slide_mode)
        items.append(_Item(record, kind, dict(task.media[key])))
        if mirror and kind == "slide":
            items.append(_Item(record, kind, dict(task.media[key])))
        elif mirror:
            targets = {t: flips[t][c] for t, c in task.media[key].items() if flips[t] is not None}
            if targets:
                items.append(_Item(record, kind, targets, mirrored=True))
    return items


class EncoderHeads(nn.Module):
    """The model with one linear head per (template, media kind); `forward` returns the summed cross-entropy of a
    micro-batch's studies (one term per study and template)."""

    def __init__(self, model: nn.Module, classes: dict[str, list[str]], head_keys: list[tuple[str, str]],
                 seed: int, priors: dict[str, str] | None = None):
        super().__init__()
        self.model = model
        self.classes, self.head_keys, self.priors = classes, head_keys, priors or {}
        self.head_of = {k: i for i, k in enumerate(head_keys)}
        width = model.config.text_config.hidden_size
        dtype = next(model.parameters()).dtype
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.heads = nn.ModuleList(nn.Linear(3 * width, len(classes[t]), dtype=dtype) for t, _ in head_keys)

    def forward(self, groups: list[dict[str, Any]]) -> torch.Tensor:
        terms = []
        for group in groups:
            tokens = media_tokens(self.model, group["batch"], with_sides=True)
            for targets, study in zip(group["targets"], study_tokens(tokens, group["n_media"])):
                summary = study_summary(study)
                for template, target in targets.items():
                    logits = self.heads[self.head_of[template, group["kind"]]](summary)[None]
                    target_t = torch.tensor([target], device=logits.device)
                    terms.append(nn.functional.cross_entropy(logits.float(), target_t, reduction="sum"))
        return torch.stack(terms).sum()

    def predict(self, tokens: torch.Tensor, template: str, kind: str) -> str | None:
        """The class a head reads from one study's tokens; None when no head has this template and kind."""
        head = self.head_of.get((template, kind))
        return None if head is None else self.classes[template][int(self.heads[head](study_summary(tokens)).argmax())]


@OBJECTIVES.register("encoders")
class EncoderObjective(Objective):
    """See the module docstring."""

    name = "encoders"

    @staticmethod
    def check(config: Any) -> None:
        if config.model.trainable != "encoders":
            raise ConfigError(f"objective=encoders trains the encoder groups only: set model.trainable=encoders "
                              f"(got {config.model.trainable!r})")
        if config.data.format != "records" or not config.data.train:
            raise ConfigError("objective=encoders reads corpus records: set data.train=RECORDS.jsonl and "
                              "data.format=records")
        from breastgpt.model.variants import get_variant

        if not get_variant(config.model.arch).is_breastgpt:
            raise ConfigError("objective=encoders is implemented for BreastGPT models (model.arch=breastgpt and its "
                              "variants)")

    def datasets(self, processor: Any, model: nn.Module) -> tuple[Any, Any | None]:
        from breastgpt.corpus.records import iter_jsonl
        from breastgpt.train.data import of_split

        data = self.config.data
        self.task = encoder_task(of_split(list(iter_jsonl(Path(data.train))), data.train_split, data.train))
        skipped = ", ".join(f"{n} {reason}" for reason, n in self.task.skipped.items()) or "none"
        logging.getLogger(__name__).info("encoder objective: %d studies from %d closed records of %s; records not "
                                         "read: %s", len(self.task.media), self.task.records, data.train, skipped)
        loader, memo = media_loader(self.config, model), data.media_memo_mib << 20
        train = EncoderDataset(encoder_items(self.task, data.slide_mode, data.mirror), processor, loader, memo)
        val = None
        if data.val:
            rows = of_split(list(iter_jsonl(Path(data.val))), data.val_split, data.val)
            val = EncoderDataset(self._held_out(rows, data.slide_mode), processor, loader, memo)
        return train, val

    def head_keys(self) -> list[tuple[str, str]]:
        """The (template, media kind) of every head: one per template and kind among the training studies."""
        slide_mode = self.config.data.slide_mode
        return sorted({(t, head_kind(record, slide_mode)) for key, record in self.task.examples.items()
                       for t in self.task.media[key]})

    def _held_out(self, records: list[dict[str, Any]], slide_mode: str) -> list[_Item]:
        """Validation items: closed records of a template and media kind that has a head, and whose answer is one
        of the training classes (the loss of any other cannot be computed)."""
        heads = set(self.head_keys())
        studies: dict[tuple[str, ...], _Item] = {}
        for record in sorted(records, key=lambda r: r["id"]):
            if _skip_reason(record) is not None:
                continue
            template, kind = record["template_id"], head_kind(record, slide_mode)
            answer = closed_answer(record)
            if (template, kind) not in heads or answer not in self.task.classes[template]:
                continue
            item = studies.setdefault(tuple(m["path"] for m in record["media"]), _Item(record, kind, {}))
            item.targets[template] = self.task.classes[template].index(answer)
        return list(studies.values())

    def wrap(self, model: nn.Module, train_set: Any) -> nn.Module:
        return EncoderHeads(model, self.task.classes, self.head_keys(), self.config.seed, self.task.priors())

    def collate(self, items: list[dict[str, Any]], processor: Any) -> dict[str, Any]:
        from breastgpt.train.data import collate

        meta = [(item.pop("kind"), item.pop("targets"), item.pop("n_media")) for item in items]
        groups = []
        for kind in ("image", "volume", "slide"):
            chosen = [i for i, m in enumerate(meta) if m[0] == kind]
            if chosen:
                groups.append({"kind": kind, "batch": collate([items[i] for i in chosen], processor),
                               "targets": [meta[i][1] for i in chosen], "n_media": [meta[i][2] for i in chosen]})
        return {"groups": groups, "sample_ids": [i for g in groups for i in g["batch"]["sample_ids"]]}

    def count(self, batch: dict[str, Any]) -> int:
        return sum(len(t) for g in batch["groups"] for t in g["targets"])

    def loss_sum(self, module: nn.Module, batch: dict[str, Any], device: Any) -> torch.Tensor:
        from breastgpt.train.objectives import to_device

        groups = [{**g, "batch": to_device(g["batch"], device)} for g in batch["groups"]]
        return module(groups)

    def export_model(self, module: nn.Module) -> tuple[nn.Module, str]:
        return module.model, "model."

    def export_extra(self, module: nn.Module, folder: Path) -> None:
        from safetensors.torch import save_file

        save_file({k: v.detach().cpu().contiguous() for k, v in module.heads.state_dict().items()},
                  str(folder / HEADS_WEIGHTS))
        index = {"heads": [{"template": t, "kind": k} for t, k in module.head_keys], "classes": module.classes,
                 "priors": module.priors, "slide_mode": self.config.data.slide_mode, "mirror": self.config.data.mirror,
                 "studies": len(self.task.media), "records": self.task.records, "records_not_read": self.task.skipped,
                 "image_min_pixels": self.config.data.image_min_pixels,
                 "image_max_pixels": self.config.data.image_max_pixels,
                 "reads": "mean | side-weighted mean | per-feature maximum of a study's media tokens"}
        (folder / HEADS_INDEX).write_text(json.dumps(index, indent=1))


# ---- reading the heads back ------------------------------------------------------------------------------------


def load_encoder_heads(folder: Path) -> EncoderHeads:
    """The exported model of an ``encoders`` run with its heads (`export_extra`), in eval mode."""
    from safetensors.torch import load_file

    from breastgpt.model import BreastGPTForConditionalGeneration

    folder = Path(folder)
    if not (folder / HEADS_INDEX).is_file():
        raise FileNotFoundError(f"{folder}: no {HEADS_INDEX}; is it the final model of an objective=encoders run?")
    index = json.loads((folder / HEADS_INDEX).read_text())
    model = BreastGPTForConditionalGeneration.from_pretrained(folder, local_files_only=True)
    module = EncoderHeads(model, index["classes"], [(h["template"], h["kind"]) for h in index["heads"]], 0,
                          index.get("priors"))
    module.heads.load_state_dict(load_file(str(folder / HEADS_WEIGHTS)))
    return module.eval()


@torch.no_grad()
def score_heads(folder: Path, records: list[dict[str, Any]], media_root: Path, slide_root: Path | None = None,
                slide_mode: str = "features") -> dict[str, Any]:
    """Accuracy of an ``encoders`` run's heads on `records` (one forward per study, images at the size the heads were
    trained on) beside each template's prior (its most frequent training class), per template, per modality and
    overall: about what a language model that reads these frozen encoders can reach. A record whose template or
    media kind has no head counts as wrong."""
    from breastgpt.model.configuration import slide_encoder_id
    from breastgpt.model.processing import BreastGPTProcessor
    from breastgpt.train.data import MediaLoader, collate, encode_sample
    from breastgpt.train.model_setup import training_processor

    module = load_encoder_heads(folder)
    index = json.loads((Path(folder) / HEADS_INDEX).read_text())
    # images at the size the heads were trained on (data.image_min_pixels / image_max_pixels, 0: the processor's)
    bounds = SimpleNamespace(image_min_pixels=index.get("image_min_pixels", 0),
                             image_max_pixels=index.get("image_max_pixels", 0))
    processor = training_processor(BreastGPTProcessor.from_pretrained(folder, local_files_only=True), bounds)
    loader = MediaLoader(Path(media_root), Path(slide_root or media_root), slide_mode,
                         module.model.config.slide.feature_dim, slide_encoder=slide_encoder_id(module.model.config))
    studies: dict[tuple[str, ...], list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        studies[tuple(m["path"] for m in record["media"])].append(record)
    counts: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0])  # (modality, template): right, n, prior
    for group in studies.values():
        first = group[0]
        batch = collate([dict(encode_sample(_sample(first), processor, loader), sample_id=first["id"])], processor)
        tokens = torch.cat(media_tokens(module.model, batch, with_sides=True))
        kind = head_kind(first, slide_mode)
        for record in group:
            template, answer = record["template_id"], closed_answer(record)
            row = counts[record.get("modality", kind), template]
            row[0] += module.predict(tokens, template, kind) == answer
            row[1] += 1
            row[2] += module.priors.get(template) == answer

    def summary(rows: list[list[int]]) -> dict[str, Any]:
        right, n, at_prior = (sum(r[i] for r in rows) for i in range(3))
        return {"n_items": n, "heads": round(right / n, 4) if n else None,
                "prior": round(at_prior / n, 4) if n else None}

    modalities = sorted({m for m, _ in counts})
    return {"all": summary(list(counts.values())),
            "modalities": {m: summary([v for (mm, _), v in counts.items() if mm == m]) for m in modalities},
            "templates": {t: {"modality": m, **summary([v])}
                          for (m, t), v in sorted(counts.items(), key=lambda x: x[0][1])}}


__all__ = ["EncoderDataset", "EncoderHeads", "EncoderObjective", "EncoderTask", "MirroredLoader", "closed_answer",
           "encoder_items", "encoder_task", "head_kind", "load_encoder_heads", "media_tokens", "mirror_classes",
           "mirrored_text", "score_heads", "study_summary", "study_tokens"]
