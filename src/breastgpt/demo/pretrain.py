"""Encoder pre-training for the demo: the vision tower and the slide branch alone, on the training split's labels.

A model trained from scratch has to learn at once to see (the encoders) and to map what it sees to the answer words
(the language model); in the demo's few hundred CPU steps the second half decides what is learned
(docs/notes/2026-12-demo-research.md).
This stage gives the first half a head start, as a pretrained vision front end would: the mean of the media tokens of
every training study (all of its media: an MRI study's seven sequences, every frame of a volume) feeds one linear
head per closed template, trained with cross-entropy on that template's answer. Only training-split records are
read; the heads are discarded, the encoders are saved as the starting checkpoint of the language training (which may
then keep them frozen: `model.trainable="language"`).

Mirror augmentation (`mirror=True`): each time a study of images or volumes is drawn, it is shown left-right mirrored
with probability one half, its labels mirrored with it (`mirror_classes`: "left breast" becomes "right breast";
every other reading the demo asks about is unchanged by a mirror). With 48 training studies per ultrasound template
the heads otherwise fit the studies instead of the findings (held-out ultrasound accuracy under its prior); mirrored
copies double what they see and make a side-specific memory useless (docs/notes/2026-12-demo-research.md).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from breastgpt.artifacts import atomic_dir


@dataclass
class EncoderTask:
    """What the heads learn: the answer classes of each template and the labels of each training medium."""

    classes: dict[str, list[str]]
    media: dict[tuple[str, ...], dict[str, int]] = field(default_factory=dict)  # media paths -> template -> class
    examples: dict[tuple[str, ...], dict[str, Any]] = field(default_factory=dict)  # media paths -> one record


_SIDES = {"left": "right", "right": "left"}


def mirrored_text(text: str) -> str:
    """`text` with the words left and right exchanged (case kept for a leading capital)."""
    import re

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


def _answer(record: dict[str, Any]) -> str:
    label = record.get("label") or {}
    if "options" not in label or "answer_index" not in label:
        raise ValueError(f"record {record.get('id')}: not a closed question (no options / answer index)")
    return label["options"][label["answer_index"]]


def encoder_task(records: list[dict[str, Any]]) -> EncoderTask:
    """Classes and per-medium labels from closed training records; refuses any record not in the train split.
    Pathway records are left out: they mix several studies' media, and the medium their answer reads (the slide)
    is pre-trained through the single-study records."""
    from breastgpt.corpus.pathway import is_pathway

    records = [r for r in records if not is_pathway(r)]
    for record in records:
        if record.get("split") != "train":
            raise ValueError(f"record {record.get('id')}: split {record.get('split')!r}; encoder pre-training reads "
                             "training records only")
    classes: dict[str, list[str]] = {}
    for record in records:
        classes.setdefault(record["template_id"], [])
        if _answer(record) not in classes[record["template_id"]]:
            classes[record["template_id"]].append(_answer(record))
    classes = {t: sorted(c) for t, c in sorted(classes.items())}
    task = EncoderTask(classes)
    for record in sorted(records, key=lambda r: r["id"]):
        key = tuple(m["path"] for m in record["media"])
        task.examples.setdefault(key, record)
        task.media.setdefault(key, {})[record["template_id"]] = classes[record["template_id"]].index(_answer(record))
    return task


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
        return torch.zeros(cand.main.shape[0], dtype=cand.main.dtype)
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
    """What a pre-training head reads of a study's tokens (rows from `media_tokens(..., with_sides=True)`): their
    mean, and their mean weighted by horizontal place — how much more of each feature lies right of the middle than
    left of it. The mean alone cannot say on which side a finding is (laterality), nor teach the encoders to mark
    a finding's tokens rather than the whole image (docs/notes/2026-12-demo-research.md)."""
    features, sides = tokens[:, :-1], tokens[:, -1:]
    return torch.cat([features.mean(0), (features * sides).mean(0), features.amax(0)])


def study_tokens(tokens: list[torch.Tensor], counts: list[int]) -> list[torch.Tensor]:
    """Per-medium tokens regrouped per study: a study of several media (an MRI's sequences) gets all of theirs."""
    if sum(counts) != len(tokens):
        raise ValueError(f"{len(tokens)} media token sets for studies of {counts} media")
    starts = [sum(counts[:i]) for i in range(len(counts))]
    return [torch.cat(tokens[a:a + n]) for a, n in zip(starts, counts)]


def pretrain_encoders(init: Path, out: Path, train_records: Path, corpus: Path, *, slide_mode: str, steps: int,
                      lr: float, batch: int, seed: int, mirror: bool = False, progress: bool = True,
                      score_records: Path | None = None) -> dict[str, Any]:
    """Pre-train the encoders of the checkpoint `init` and write the result (model + processor) to `out`.

    `slide_mode` is how the models to be trained from `out` see slides: "features" through the slide branch,
    "thumbnail" as an image through the vision tower, or "both" — every slide study then trains the slide branch
    on its features *and* the vision tower on its thumbnail (a head of its own for each), so that BreastGPT and its
    thumbnail comparator could start from one and the same pre-trained encoders, prepared once (the demo instead
    pre-trains each model on its own routes: `demo.training.pretrain_for`). `mirror`: the mirror augmentation of
    the module docstring.

    `score_records` (diagnostics only: `benchmarks/demo_encoder_heads.py`; the demo never passes it): closed records
    of another split on which the trained heads are scored before they are discarded (`score_heads`) — the ceiling
    of a language model that reads the mean of the media tokens of frozen encoders.
    """
    from breastgpt.corpus.records import iter_jsonl
    from breastgpt.model import BreastGPTForConditionalGeneration
    from breastgpt.model.configuration import slide_encoder_id
    from breastgpt.model.processing import BreastGPTProcessor
    from breastgpt.train.data import MediaLoader, Sample, collate, encode_sample
    from breastgpt.model.module_groups import encoder_prefixes, groups_of
    from breastgpt.train.progress import step_progress

    modes = {"features": ("features",), "thumbnail": ("thumbnail",), "both": ("features", "thumbnail")}
    if slide_mode not in modes:
        raise ValueError(f"slide_mode {slide_mode!r}: choose features, thumbnail or both")
    torch.manual_seed(seed)
    model = BreastGPTForConditionalGeneration.from_pretrained(init)
    processor = BreastGPTProcessor.from_pretrained(init)
    model.train()
    task = encoder_task(list(iter_jsonl(train_records)))
    loaders = {m: MediaLoader(Path(corpus), Path(corpus), m, model.config.slide.feature_dim,
                              slide_encoder=slide_encoder_id(model.config)) for m in modes[slide_mode]}
    flips = {t: mirror_classes(c) for t, c in task.classes.items()} if mirror else {}
    # one entry per (study, route): a slide study has one per slide mode, every other study one
    encoded: dict[tuple[tuple[str, ...], str], dict[str, Any]] = {}
    mirrored: dict[tuple[tuple[str, ...], str], dict[str, Any]] = {}
    kinds: dict[tuple[tuple[str, ...], str], str] = {}
    routes: dict[tuple[str, ...], list[tuple[tuple[str, ...], str]]] = {}
    for key, record in task.examples.items():
        user = next(m["content"] for m in record["messages"] if m["role"] == "user")
        messages = [{"role": "user", "content": user}, {"role": "assistant", "content": "."}]
        sample = Sample(record["id"], messages, [(m["kind"], m["path"]) for m in record["media"]], record.get("stage"))
        is_slide = record["media"][0]["kind"] == "slide"
        for mode in modes[slide_mode] if is_slide else modes[slide_mode][:1]:
            item = (key, mode)
            encoded[item] = dict(encode_sample(sample, processor, loaders[mode]), sample_id=record["id"])
            kinds[item] = "image" if is_slide and mode == "thumbnail" else record["media"][0]["kind"]
            if mirror and kinds[item] != "slide":
                mirrored[item] = dict(encode_sample(sample, processor, MirroredLoader(loaders[mode])),
                                      sample_id=record["id"])
            routes.setdefault(key, []).append(item)
    width = model.config.text_config.hidden_size
    head_keys = sorted({(t, kinds[item]) for item in kinds for t in task.media[item[0]]})
    heads = nn.ModuleList(nn.Linear(3 * width, len(task.classes[t])) for t, _ in head_keys)
    head_of = {k: i for i, k in enumerate(head_keys)}
    encoders = encoder_prefixes(groups_of(model))
    params = [p for n, p in model.named_parameters() if n.startswith(encoders)] + list(heads.parameters())
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    # studies in record-id order (`encoder_task` inserts them so): media file names are content hashes, and an
    # order taken from them would change with the PNG encoder's bytes
    keys, rng, losses = list(task.media), random.Random(seed), []
    with step_progress(steps, 0, progress, "pretrain encoders") as advance:
        for _ in range(steps):
            chosen = [item for key in rng.sample(keys, min(batch, len(keys))) for item in routes[key]]
            flipped = {item for item in chosen if item in mirrored and rng.random() < 0.5}
            terms = []
            for kind in ("image", "volume", "slide"):
                group = [item for item in chosen if kinds[item] == kind]
                if not group:
                    continue
                batch_items = [dict((mirrored if item in flipped else encoded)[item]) for item in group]
                tokens = media_tokens(model, collate(batch_items, processor), with_sides=True)
                for item, study in zip(group, study_tokens(tokens, [len(item[0]) for item in group])):
                    for template, target in task.media[item[0]].items():
                        if item in flipped:
                            if flips[template] is None:
                                continue
                            target = flips[template][target]
                        logits = heads[head_of[template, kind]](study_summary(study))[None]
                        terms.append(nn.functional.cross_entropy(logits, torch.tensor([target])))
            loss = torch.stack(terms).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
            advance(losses[-1])
    scores = None
    if score_records is not None:
        model.eval()
        with torch.no_grad():
            scores = score_heads(model, processor, heads, head_of, task, list(iter_jsonl(score_records)),
                                 loaders[modes[slide_mode][0]])
    with atomic_dir(out) as tmp:
        model.save_pretrained(tmp)
        processor.save_pretrained(tmp)
        (tmp / "encoder_pretraining.json").write_text(json.dumps(
            {"steps": steps, "lr": lr, "batch": batch, "seed": seed, "slide_mode": slide_mode, "mirror": mirror,
             "templates": len(task.classes), "media": len(keys), "first_loss": losses[0] if losses else None,
             "final_loss_mean10": sum(losses[-10:]) / max(1, len(losses[-10:]))}, indent=1))
    figures = {"steps": steps, "media": len(keys), "templates": len(task.classes), "slide_mode": slide_mode,
               "mirror": mirror, "first_loss": round(losses[0], 3) if losses else None,
               "final_loss_mean10": round(sum(losses[-10:]) / max(1, len(losses[-10:])), 3)}
    return figures if scores is None else {**figures, "heads": scores}


def score_heads(model: Any, processor: Any, heads: nn.ModuleList, head_of: dict[tuple[str, str], int],
                task: EncoderTask, records: list[dict[str, Any]], loader: Any) -> dict[str, Any]:
    """Accuracy of the pre-training heads on `records` (one forward per study), beside each template's prior (its
    most frequent training class), per template, per modality and overall. A record whose template or media kind
    had no head, or whose answer is not a training class, counts as wrong."""
    from collections import Counter, defaultdict

    from breastgpt.train.data import Sample, collate, encode_sample

    prior = {t: task.classes[t][Counter(lab[t] for lab in task.media.values() if t in lab).most_common(1)[0][0]]
             for t in task.classes}
    studies: dict[tuple[str, ...], list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        studies[tuple(m["path"] for m in record["media"])].append(record)
    counts: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0])  # (modality, template): right, n, prior
    for key, group in studies.items():
        first = group[0]
        sample = Sample(first["id"], [{"role": "user", "content": next(m["content"] for m in first["messages"]
                                                                        if m["role"] == "user")},
                                      {"role": "assistant", "content": "."}],
                        [(m["kind"], m["path"]) for m in first["media"]], first.get("stage"))
        kind = first["media"][0]["kind"]
        kind = "image" if kind == "slide" and loader.slide_mode == "thumbnail" else kind
        tokens = media_tokens(model, collate([dict(encode_sample(sample, processor, loader), sample_id=first["id"])],
                                             processor), with_sides=True)
        summary_ = study_summary(torch.cat(tokens))
        for record in group:
            template, answer = record["template_id"], _answer(record)
            head = head_of.get((template, kind))
            guess = None if head is None else task.classes[template][int(heads[head](summary_).argmax())]
            row = counts[record.get("modality", kind), template]
            row[0] += guess == answer
            row[1] += 1
            row[2] += prior.get(template) == answer

    def summary(rows: list[list[int]]) -> dict[str, Any]:
        right, n, at_prior = (sum(r[i] for r in rows) for i in range(3))
        return {"n_items": n, "heads": round(right / n, 4) if n else None, "prior": round(at_prior / n, 4) if n else None}

    modalities = sorted({m for m, _ in counts})
    return {"all": summary(list(counts.values())),
            "modalities": {m: summary([v for (mm, _), v in counts.items() if mm == m]) for m in modalities},
            "templates": {t: {"modality": m, **summary([v])} for (m, t), v in sorted(counts.items(), key=lambda x: x[0][1])}}


__all__ = ["EncoderTask", "MirroredLoader", "encoder_task", "media_tokens", "mirror_classes", "mirrored_text",
           "pretrain_encoders", "score_heads", "study_summary", "study_tokens"]
