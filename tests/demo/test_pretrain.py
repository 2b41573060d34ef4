"""Encoder pre-training (`breastgpt.demo.pretrain`) and the `language` trainable set that keeps encoders frozen."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from breastgpt.demo.pretrain import (MirroredLoader, encoder_task, media_tokens, mirror_classes, mirrored_text,
                                   pretrain_encoders, study_summary, study_tokens)
from breastgpt.demo.settings import QUICK
from breastgpt.demo.training import write_initial_checkpoint
from breastgpt.model import BreastGPTForConditionalGeneration
from breastgpt.train.config import ModelConfig
from breastgpt.model.module_groups import encoder_prefixes
from breastgpt.train.model_setup import apply_trainable

ENCODER_PARAMS = encoder_prefixes(BreastGPTForConditionalGeneration.module_groups)

SYSTEM = "You are BreastGPT. Clinical stage: screening."


def _record(rid: str, path: str, answer: str, split: str = "train") -> dict:
    options = ["No", "Yes"]
    user = "<image>\nIs the breast dense?\nA. No\nB. Yes\nAnswer with the text of the correct option."
    return {"id": rid, "split": split, "template_id": "scr-mam-dense-yesno", "stage": "screening",
            "label": {"options": options, "answer_index": options.index(answer)},
            "media": [{"kind": "image", "path": path, "sha256": "0" * 64}],
            "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user},
                         {"role": "assistant", "content": answer}]}


def test_encoder_task_reads_training_records_only() -> None:
    records = [_record("a", "m/a.png", "Yes"), _record("b", "m/b.png", "No")]
    task = encoder_task(records)
    assert task.classes == {"scr-mam-dense-yesno": ["No", "Yes"]}
    assert task.media == {("m/a.png",): {"scr-mam-dense-yesno": 1}, ("m/b.png",): {"scr-mam-dense-yesno": 0}}
    with pytest.raises(ValueError, match="c.*'bench'.*training records only"):
        encoder_task([*records, _record("c", "m/c.png", "No", split="bench")])


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """Bright images answer "Yes", dark ones "No"; the demo model's initial checkpoint."""
    root = tmp_path_factory.mktemp("pretrain")
    corpus = root / "corpus"
    (corpus / "m").mkdir(parents=True)
    rng = np.random.default_rng(0)
    records = []
    for i in range(12):
        bright = i % 2 == 0
        pixels = rng.normal(170 if bright else 60, 20, (96, 66)).clip(0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(corpus / "m" / f"{i}.png")
        records.append(_record(f"r{i}", f"m/{i}.png", "Yes" if bright else "No"))
    train = root / "train.jsonl"
    train.write_text("".join(json.dumps(r) + "\n" for r in records))
    init = write_initial_checkpoint(root / "init", [m["content"] for r in records for m in r["messages"]],
                                    dataclasses.replace(QUICK, seed=0), [])
    return init, train, corpus


def test_pretraining_trains_the_encoders_and_leaves_the_language_model(tiny_set, tmp_path: Path) -> None:
    init, train, corpus = tiny_set
    out = tmp_path / "encoders"
    figures = pretrain_encoders(init, out, train, corpus, slide_mode="features", steps=30, lr=5e-3, batch=8,
                                seed=0, progress=False)
    assert figures["media"] == 12 and figures["templates"] == 1 and figures["steps"] == 30
    assert figures["final_loss_mean10"] < figures["first_loss"]
    assert json.loads((out / "encoder_pretraining.json").read_text())["slide_mode"] == "features"
    assert not (tmp_path / "encoders.partial").exists()
    before = dict(BreastGPTForConditionalGeneration.from_pretrained(init).named_parameters())
    after = dict(BreastGPTForConditionalGeneration.from_pretrained(out).named_parameters())
    changed = {n for n in before if not torch.equal(before[n], after[n])}
    assert changed and all(n.startswith(ENCODER_PARAMS) for n in changed)
    assert any(n.startswith("model.visual.blocks.") for n in changed)
    again = pretrain_encoders(init, tmp_path / "again", train, corpus, slide_mode="features", steps=30, lr=5e-3,
                              batch=8, seed=0, progress=False)
    assert again == figures  # deterministic for a seed


def test_language_trainable_set_freezes_exactly_the_encoders(tiny_set) -> None:
    init, _, _ = tiny_set
    model = BreastGPTForConditionalGeneration.from_pretrained(init)
    apply_trainable(model, ModelConfig(path=str(init), trainable="language"))
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert frozen == {n for n, _ in model.named_parameters() if n.startswith(ENCODER_PARAMS)}
    assert any(n.startswith("model.slide_encoder.") for n in frozen)
    assert any(n.startswith("model.language_model.") for n, p in model.named_parameters() if p.requires_grad)


def test_study_tokens_give_each_study_all_of_its_media() -> None:
    """An MRI study's sequences are one study: its tokens are all of theirs, in order (the batch's media are flat)."""
    tokens = [torch.full((2, 3), float(i)) for i in range(5)]  # media 0-1: study a; 2-4: study b (three sequences)
    a, b = study_tokens(tokens, [2, 3])
    assert a.shape == (4, 3) and b.shape == (6, 3)
    assert a[:, 0].tolist() == [0, 0, 1, 1] and b[:, 0].tolist() == [2, 2, 3, 3, 4, 4]
    with pytest.raises(ValueError, match="5 media token sets for studies of \\[2, 2\\] media"):
        study_tokens(tokens, [2, 2])


def test_study_summary_reads_mean_side_and_peak() -> None:
    """A head reads the tokens' mean, their mean weighted by horizontal place (which side a finding is on) and their
    per-feature maximum (a small bright finding that the mean dilutes)."""
    sides = torch.tensor([-0.5, 0.5, -0.5, 0.5])  # two frames of a left and a right token
    finding_left = torch.tensor([[4.0, 1.0], [0.0, 1.0], [4.0, 1.0], [0.0, 1.0]])
    summary = study_summary(torch.cat([finding_left, sides[:, None]], 1))
    assert summary.tolist() == [2.0, 1.0, -1.0, 0.0, 4.0, 1.0]  # mean | side-weighted mean | maximum
    mirrored = study_summary(torch.cat([finding_left, -sides[:, None]], 1))
    assert mirrored[2:4].tolist() == [1.0, 0.0] and torch.equal(mirrored[[0, 1, 4, 5]], summary[[0, 1, 4, 5]])


def test_media_tokens_mark_each_tokens_side(tiny_set) -> None:
    """Image tokens carry their horizontal place in the frame (-1 left .. +1 right, symmetric about the middle):
    the place of the token, whatever the image shows (a mirrored image's tokens have the same places)."""
    from breastgpt.model.processing import BreastGPTProcessor
    from breastgpt.train.data import MediaLoader, Sample, collate, encode_sample

    init, train, corpus = tiny_set
    model = BreastGPTForConditionalGeneration.from_pretrained(init).eval()
    processor = BreastGPTProcessor.from_pretrained(init)
    record = json.loads(train.read_text().splitlines()[0])
    sample = Sample("r0", record["messages"][1:], [("image", record["media"][0]["path"])], "screening")
    loader = MediaLoader(corpus, corpus)
    with torch.no_grad():
        plain, = media_tokens(model, collate([dict(encode_sample(sample, processor, loader), sample_id="r0")],
                                             processor), with_sides=True)
        flipped, = media_tokens(model, collate([dict(encode_sample(sample, processor, MirroredLoader(loader)),
                                                     sample_id="r0")], processor), with_sides=True)
    sides = plain[:, -1]
    assert sides.min() > -1 and sides.max() < 1 and abs(float(sides.sum())) < 1e-5
    assert len(set(sides.tolist())) > 1
    width = len(set(sides.tolist()))
    grid = plain[:, :-1].reshape(-1, width, plain.shape[1] - 1)
    assert torch.equal(flipped[:, -1], sides)
    assert not torch.allclose(flipped[:, :-1].reshape(grid.shape), grid)


def test_both_slide_modes_train_the_slide_branch_and_the_vision_tower_on_thumbnails(tiny_set, tmp_path) -> None:
    """"both": one pre-training usable by BreastGPT and its comparator (a slide study trains the slide branch on its
    tile features and the vision tower on its thumbnail); "features" alone leaves the vision tower to the images,
    "thumbnail" leaves the slide branch untouched (the demo pre-trains each model on its own routes)."""
    from breastgpt.pathology.features import write_features

    init, train, corpus = tiny_set
    dim = BreastGPTForConditionalGeneration.from_pretrained(init).config.slide.feature_dim
    rng = np.random.default_rng(1)
    records = []
    for i in range(6):  # slides only: the vision tower can learn from the thumbnails alone
        positive = i % 2 == 0
        write_features(corpus / "features" / f"s{i}.h5", np.stack([np.arange(4), np.zeros(4)], 1) * 192,
                       rng.normal(1.0 if positive else -1.0, 0.3, (4, dim)), {"footprint_level0": [192, 192]},
                       thumbnail=np.full((64, 96, 3), 200 if positive else 50, np.uint8))
        record = _record(f"s{i}", f"features/s{i}.h5", "Yes" if positive else "No")
        record["template_id"], record["media"][0]["kind"] = "tx-path-er-yesno", "slide"
        record["messages"][1]["content"] = record["messages"][1]["content"].replace("<image>", "<slide>")
        records.append(record)
    slides = tmp_path / "slides.jsonl"
    slides.write_text("".join(json.dumps(r) + "\n" for r in records))
    before = dict(BreastGPTForConditionalGeneration.from_pretrained(init).named_parameters())

    def changed(mode: str) -> set[str]:
        out = tmp_path / mode
        figures = pretrain_encoders(init, out, slides, corpus, slide_mode=mode, steps=5, lr=5e-3, batch=4, seed=0,
                                    progress=False)
        assert figures["slide_mode"] == mode and figures["media"] == 6
        after = dict(BreastGPTForConditionalGeneration.from_pretrained(out).named_parameters())
        return {n.split(".")[1] for n in before if not torch.equal(before[n], after[n])}

    slide_branch = {"slide_encoder", "slide_projector"}
    assert changed("both") == {"visual", *slide_branch}
    assert changed("features") == slide_branch
    assert changed("thumbnail") == {"visual"}
    with pytest.raises(ValueError, match="choose features, thumbnail or both"):
        pretrain_encoders(init, tmp_path / "x", slides, corpus, slide_mode="pixels", steps=1, lr=1e-3, batch=1,
                          seed=0, progress=False)


def test_mirror_classes_follow_a_left_right_mirror() -> None:
    assert mirrored_text("Right breast, left axilla") == "Left breast, right axilla"
    assert mirrored_text("bright enhancement, upright") == "bright enhancement, upright"  # whole words only
    assert mirror_classes(["right breast", "left breast"]) == [1, 0]
    assert mirror_classes(["No", "Yes"]) == [0, 1]
    assert mirror_classes(["both breasts", "left breast", "right breast"]) == [0, 2, 1]
    assert mirror_classes(["left breast", "no lesion"]) is None  # the mirror of a class is missing


def test_mirrored_loader_mirrors_images_and_volumes(tiny_set) -> None:
    from breastgpt.train.data import MediaLoader

    _, _, corpus = tiny_set
    loader = MediaLoader(corpus, corpus, "features", None)
    plain, mirrored = loader.part("image", "m/0.png")["image"], MirroredLoader(loader).part("image", "m/0.png")["image"]
    assert mirrored.shape == plain.shape and np.array_equal(mirrored, plain[:, ::-1])

    class Volumes:
        def part(self, kind: str, rel: str) -> dict:
            return {"type": "volume", "volume": np.arange(2 * 3 * 4 * 3).reshape(2, 3, 4, 3)}

    volume = MirroredLoader(Volumes()).part("volume", "v.npz")["volume"]
    assert np.array_equal(volume, Volumes().part("volume", "v.npz")["volume"][:, :, ::-1])


def test_mirror_augmentation_trains_and_is_recorded(tiny_set, tmp_path: Path) -> None:
    init, train, corpus = tiny_set
    figures = pretrain_encoders(init, tmp_path / "m", train, corpus, slide_mode="features", steps=30, lr=5e-3,
                                batch=8, seed=0, mirror=True, progress=False)
    assert figures["mirror"] is True and figures["final_loss_mean10"] < figures["first_loss"]
    assert json.loads((tmp_path / "m" / "encoder_pretraining.json").read_text())["mirror"] is True

    def losses(folder: str, mirror: bool) -> float:  # a few steps: both runs still learning, mirrors drawn
        pretrain_encoders(init, tmp_path / folder, train, corpus, slide_mode="features", steps=4, lr=5e-3, batch=8,
                          seed=0, mirror=mirror, progress=False)
        return json.loads((tmp_path / folder / "encoder_pretraining.json").read_text())["final_loss_mean10"]

    assert losses("p", False) != losses("m4", True)


def test_score_heads_reports_held_out_accuracy_beside_the_prior(tiny_set, tmp_path: Path) -> None:
    init, train, corpus = tiny_set
    held_out = tmp_path / "bench.jsonl"
    rows = [json.loads(line) for line in train.read_text().splitlines()]
    held_out.write_text("".join(json.dumps({**r, "split": "bench", "modality": "mammography"}) + "\n" for r in rows))
    figures = pretrain_encoders(init, tmp_path / "e", train, corpus, slide_mode="features", steps=30, lr=5e-3,
                                batch=8, seed=0, progress=False, score_records=held_out)
    heads = figures["heads"]
    assert heads["all"] == {"n_items": 12, "heads": 1.0, "prior": 0.5}  # bright = Yes is read; half are Yes
    assert heads["modalities"]["mammography"]["n_items"] == 12
    assert heads["templates"]["scr-mam-dense-yesno"]["heads"] == 1.0


def test_each_demo_model_pretrains_its_own_routes_and_trains_from_them(tiny_set, tmp_path: Path) -> None:
    """`demo.training.pretrain_for`: BreastGPT's encoders see slides as tile features, the comparator's as
    thumbnails; each language training starts from its own model's encoders; a re-run reuses a verified stage."""
    from types import SimpleNamespace

    from breastgpt.demo.training import pretrain_for, train_config

    init, train, corpus = tiny_set
    task_set = tmp_path / "task_set"
    task_set.mkdir()
    (task_set / "train.jsonl").write_text(train.read_text())
    settings = dataclasses.replace(QUICK, encoder_steps=3, comparator=True)
    ctx = SimpleNamespace(out=tmp_path, settings=settings,
                          state={"init": init, "task_set": task_set, "corpus": corpus})
    for name, mode in (("breastgpt", "features"), ("thumbnail", "thumbnail")):
        figures = pretrain_for(ctx, name)
        assert figures["slide_mode"] == mode and figures["steps"] == 3
        folder = tmp_path / "runs" / f"encoders-{name}"
        assert ctx.state[f"encoders:{name}"] == folder
        assert json.loads((folder / "encoder_pretraining.json").read_text())["slide_mode"] == mode
        assert (tmp_path / "stages" / f"pretrain_{name}.json").is_file()
        assert train_config(ctx, name).model.path == str(folder)
        stamp = (folder / "model.safetensors").stat().st_mtime_ns
        assert pretrain_for(ctx, name) == figures  # the verified stage is reused, not redone
        assert (folder / "model.safetensors").stat().st_mtime_ns == stamp
    ctx.settings = dataclasses.replace(settings, encoder_steps=0)
    assert pretrain_for(ctx, "breastgpt") is None
