"""The ``encoders`` training objective (`breastgpt.train.encoder_objective`) run by the training loop, and the
``language`` / ``encoders`` trainable sets that split the model between it and the language training."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from tests.train.conftest import train_interrupted

from breastgpt.config import ConfigError
from breastgpt.demo.settings import QUICK
from breastgpt.demo.training import write_initial_checkpoint
from breastgpt.model import BreastGPTForConditionalGeneration
from breastgpt.model.module_groups import encoder_prefixes
from breastgpt.model.processing import BreastGPTProcessor
from breastgpt.train.config import ModelConfig
from breastgpt.train.data import of_split
from breastgpt.train.encoder_objective import (MirroredLoader, encoder_items, encoder_task, load_encoder_heads,
                                               media_tokens, mirror_classes, mirrored_text, score_heads,
                                               study_summary, study_tokens)
from breastgpt.train.loop import train
from breastgpt.train.model_setup import apply_trainable
from breastgpt.train.recipes import get_recipe

ENCODER_PARAMS = encoder_prefixes(BreastGPTForConditionalGeneration.module_groups)

SYSTEM = "You are BreastGPT. Clinical stage: screening."


def _record(rid: str, path: str, answer: str, split: str = "train", kind: str = "image") -> dict:
    options = ["No", "Yes"]
    user = f"<{kind}>\nIs the breast dense?\nA. No\nB. Yes\nAnswer with the text of the correct option."
    return {"id": rid, "split": split, "template_id": "scr-mam-dense-yesno", "stage": "screening",
            "label": {"options": options, "answer_index": options.index(answer)},
            "media": [{"kind": kind, "path": path, "sha256": "0" * 64}],
            "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user},
                         {"role": "assistant", "content": answer}]}


def encoder_run(init: Path, train_file: Path, corpus: Path, out: Path, steps: int, **changes):
    """The demo-encoders recipe on a test set: `changes` as section__key=value."""
    config = get_recipe("demo-encoders")
    config.output_dir, config.deterministic = str(out), True
    config.data.train, config.data.media_root, config.data.slide_root = str(train_file), str(corpus), str(corpus)
    config.model.path, config.schedule.max_steps, config.schedule.micro_batch_size = str(init), steps, 8
    config.data.mirror, config.checkpoint.every_steps, config.logging.progress = False, 0, False
    config.optim.lr = 5e-3
    for key, value in changes.items():
        section, name = key.split("__")
        setattr(config if section == "run" else getattr(config, section), name, value)
    return config


def test_the_objective_reads_the_training_split_of_a_file_of_every_split() -> None:
    records = [_record("a", "m/a.png", "Yes"), _record("b", "m/b.png", "No"), _record("c", "m/c.png", "No", "bench")]
    assert [r["id"] for r in of_split(records, "train", "records.jsonl")] == ["a", "b"]
    assert len(of_split(records, "", "records.jsonl")) == 3
    with pytest.raises(ConfigError, match=r"records.jsonl: no record of split 'val' \(the file holds bench, train\)"):
        of_split(records, "val", "records.jsonl")
    task = encoder_task(of_split(records, "train", "records.jsonl"))
    assert task.classes == {"scr-mam-dense-yesno": ["No", "Yes"]}
    assert task.media == {("m/a.png",): {"scr-mam-dense-yesno": 1}, ("m/b.png",): {"scr-mam-dense-yesno": 0}}


def test_a_corpus_training_file_gives_its_closed_single_study_records() -> None:
    """A corpus's training records mix open questions, reports and pathway conversations with the closed ones: the
    objective reads the closed single-study records and counts the rest by reason."""
    closed, other = _record("a", "m/a.png", "Yes"), _record("a2", "m/a2.png", "No")
    lone = {**_record("f", "m/f.png", "Yes"), "template_id": "one-answer"}
    open_q = {**_record("b", "m/a.png", "Yes"), "template_id": "open-findings",
              "label": {"answer": "A mass in the upper outer quadrant."}}
    pathway = {**_record("c", "m/a.png", "Yes"), "template_id": "pathway-er-treatment"}
    no_media = {**_record("d", "m/a.png", "No"), "media": []}
    mixed = {**_record("e", "m/e.png", "No"), "media": [{"kind": "image", "path": "m/e.png"},
                                                       {"kind": "volume", "path": "v/e.npz"}]}
    task = encoder_task([closed, other, lone, open_q, pathway, no_media, mixed])
    assert task.records == 2 and task.classes == {"scr-mam-dense-yesno": ["No", "Yes"]}
    assert task.media == {("m/a.png",): {"scr-mam-dense-yesno": 1}, ("m/a2.png",): {"scr-mam-dense-yesno": 0}}
    assert task.skipped == {"media of several kinds": 1, "no media": 1, "open question": 1, "pathway": 1,
                            "template with one answer": 1}  # a head would have nothing to tell apart


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
    processor = BreastGPTProcessor.from_pretrained(init)  # images at their stored size: a quicker test
    processor.image_min_pixels, processor.image_max_pixels = 64 * 64, 96 * 96
    processor.save_pretrained(init)
    return init, train, corpus


@pytest.fixture(scope="module")
def trained(tiny_set, tmp_path_factory: pytest.TempPathFactory):
    """30 steps of the encoder objective on the bright/dark set."""
    init, train_file, corpus = tiny_set
    return train(encoder_run(init, train_file, corpus, tmp_path_factory.mktemp("encoders") / "e", 30))


def test_the_loop_trains_the_encoders_and_leaves_the_language_model(tiny_set, trained, tmp_path: Path) -> None:
    """objective=encoders through `train`: the encoder groups and the heads train, nothing else; the export is the
    model without its heads, with the heads beside it; a seed gives the same run."""
    init, train_file, corpus = tiny_set
    result = trained
    assert len(result.losses) == 30 and np.mean(result.losses[-10:]) < result.losses[0]
    final = result.final_dir
    assert final == result.output_dir / "final" and json.loads((final / "manifest.json").read_text())["step"] == 30
    saved = load_file(str(final / "model.safetensors"))
    assert not any(k.startswith("heads.") or k.startswith("model.model.") for k in saved)
    before = dict(BreastGPTForConditionalGeneration.from_pretrained(init).named_parameters())
    after = dict(BreastGPTForConditionalGeneration.from_pretrained(final).named_parameters())
    assert set(before) == set(after)
    changed = {n for n in before if not torch.equal(before[n], after[n])}
    assert changed and all(n.startswith(ENCODER_PARAMS) for n in changed)
    assert any(n.startswith("model.visual.blocks.") for n in changed)
    index = json.loads((final / "encoder_heads.json").read_text())
    assert index["heads"] == [{"template": "scr-mam-dense-yesno", "kind": "image"}]
    assert index["classes"] == {"scr-mam-dense-yesno": ["No", "Yes"]}
    assert (index["studies"], index["records"], index["records_not_read"]) == (12, 12, {})
    again = train(encoder_run(init, train_file, corpus, tmp_path / "again", 5))
    assert again.losses == result.losses[:5]  # deterministic for a seed (a constant learning rate)


def test_an_interrupted_encoder_run_resumes_exactly(tiny_set, tmp_path: Path) -> None:
    """The loop's checkpoints hold the heads with the encoders: a run stopped after step 4 and resumed takes the
    same steps as one that was not stopped."""
    init, train_file, corpus = tiny_set
    straight = train(encoder_run(init, train_file, corpus, tmp_path / "a", 6, data__mirror=True))
    first = encoder_run(init, train_file, corpus, tmp_path / "b", 6, checkpoint__every_steps=2, data__mirror=True)
    train_interrupted(first, after_step=4)
    again = encoder_run(init, train_file, corpus, tmp_path / "b", 6, checkpoint__every_steps=2, data__mirror=True)
    resumed = train(again, resume="auto")
    assert resumed.losses == pytest.approx(straight.losses, abs=1e-6)
    heads_a = load_file(str(tmp_path / "a" / "final" / "encoder_heads.safetensors"))
    heads_b = load_file(str(tmp_path / "b" / "final" / "encoder_heads.safetensors"))
    assert max(float((heads_a[k] - heads_b[k]).abs().max()) for k in heads_a) <= 1e-6


def test_the_trainable_sets_split_the_model_between_encoders_and_language(tiny_set) -> None:
    init, _, _ = tiny_set
    model = BreastGPTForConditionalGeneration.from_pretrained(init)
    apply_trainable(model, ModelConfig(path=str(init), trainable="language"))
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert frozen == {n for n, _ in model.named_parameters() if n.startswith(ENCODER_PARAMS)}
    assert any(n.startswith("model.slide_encoder.") for n in frozen)
    assert any(n.startswith("model.language_model.") for n, p in model.named_parameters() if p.requires_grad)
    apply_trainable(model, ModelConfig(path=str(init), trainable="encoders"))
    assert {n for n, p in model.named_parameters() if p.requires_grad} == frozen


def test_the_objective_refuses_settings_it_cannot_honour(tiny_set, tmp_path: Path) -> None:
    init, train_file, corpus = tiny_set
    with pytest.raises(ConfigError, match="set model.trainable=encoders"):
        encoder_run(init, train_file, corpus, tmp_path / "x", 1, model__trainable="all").check()
    with pytest.raises(ConfigError, match="data.format=records"):
        encoder_run(init, train_file, corpus, tmp_path / "x", 1, data__format="swift").check()
    with pytest.raises(ConfigError, match="unknown training objective 'encoder'; known: language, encoders"):
        encoder_run(init, train_file, corpus, tmp_path / "x", 1, run__objective="encoder").check()
    language = get_recipe("tiny-debug")
    language.data.mirror = True
    with pytest.raises(ConfigError, match="data.mirror is implemented for objective=encoders only"):
        language.check()


def test_each_slide_mode_trains_its_own_route(tiny_set, tmp_path) -> None:
    """data.slide_mode=features trains the slide branch on tile features and leaves the vision tower alone (these
    records are slides only); thumbnail trains the vision tower on the thumbnails and leaves the slide branch."""
    from breastgpt.pathology.features import write_features

    init, _, corpus = tiny_set
    dim = BreastGPTForConditionalGeneration.from_pretrained(init).config.slide.feature_dim
    rng = np.random.default_rng(1)
    records = []
    for i in range(8):
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
        result = train(encoder_run(init, slides, corpus, tmp_path / mode, 3, data__slide_mode=mode,
                                   schedule__micro_batch_size=4))
        heads = json.loads((result.final_dir / "encoder_heads.json").read_text())["heads"]
        assert heads == [{"template": "tx-path-er-yesno", "kind": "slide" if mode == "features" else "image"}]
        after = dict(BreastGPTForConditionalGeneration.from_pretrained(result.final_dir).named_parameters())
        return {n.split(".")[1] for n in before if not torch.equal(before[n], after[n])}

    assert changed("features") == {"slide_encoder", "slide_projector"}
    assert changed("thumbnail") == {"visual"}


def test_mirrored_copies_carry_mirrored_labels() -> None:
    """data.mirror: each image or volume study once more, mirrored, with its classes mirrored; a template whose
    classes cannot follow a mirror is not trained on the copy, and a study left with nothing gets no copy. A slide
    study comes twice as it is, so that slides are drawn as often as the studies that have a mirrored copy."""
    side = ["left breast", "right breast"]
    records = [{**_record("a", "m/a.png", "Yes"), "template_id": "side",
                "label": {"options": side, "answer_index": 0}},
               {**_record("b", "m/b.png", "Yes"), "template_id": "side", "label": {"options": side, "answer_index": 1}},
               {**_record("c", "m/c.png", "Yes"), "template_id": "odd",
                "label": {"options": ["left breast", "no lesion"], "answer_index": 0}},
               {**_record("d", "m/d.png", "Yes"), "template_id": "odd",
                "label": {"options": ["left breast", "no lesion"], "answer_index": 1}},
               {**_record("e", "s/e.h5", "Yes", kind="slide"), "template_id": "side",
                "label": {"options": side, "answer_index": 1}}]
    task = encoder_task(records)
    plain = encoder_items(task, "features", mirror=False)
    assert [(i.record["id"], i.targets, i.mirrored) for i in plain] == [
        ("a", {"side": 0}, False), ("b", {"side": 1}, False), ("c", {"odd": 0}, False), ("d", {"odd": 1}, False),
        ("e", {"side": 1}, False)]
    mirrored = encoder_items(task, "features", mirror=True)
    assert [(i.record["id"], i.targets, i.mirrored) for i in mirrored] == [
        ("a", {"side": 0}, False), ("a", {"side": 1}, True), ("b", {"side": 1}, False), ("b", {"side": 0}, True),
        ("c", {"odd": 0}, False), ("d", {"odd": 1}, False), ("e", {"side": 1}, False), ("e", {"side": 1}, False)]
    assert [i.kind for i in mirrored].count("slide") == 2


def test_mirror_augmentation_changes_what_is_trained(tiny_set, tmp_path: Path) -> None:
    init, train_file, corpus = tiny_set
    plain = train(encoder_run(init, train_file, corpus, tmp_path / "p", 4))
    mirrored = train(encoder_run(init, train_file, corpus, tmp_path / "m", 4, data__mirror=True))
    assert mirrored.losses != plain.losses
    assert json.loads((mirrored.final_dir / "encoder_heads.json").read_text())["mirror"] is True
    assert mirrored.steps == 4


def test_a_head_no_study_of_a_step_reads_stays_as_it_is(tiny_set, tmp_path: Path, monkeypatch) -> None:
    """A second template on two of the studies: in the steps whose batch holds neither, its head gets no gradient, and
    AdamW leaves its weights and moments as they were (as in plain PyTorch and under DDP) instead of moving it on the
    momentum of earlier steps."""
    init, train_file, corpus = tiny_set
    rows = [json.loads(line) for line in train_file.read_text().splitlines()]
    for i in range(2):
        extra = {**_record(f"s{i}", f"m/{i}.png", "Yes"), "template_id": "scr-mam-side"}
        extra["label"] = {"options": ["Left", "Right"], "answer_index": i}
        rows.append(extra)
    both = tmp_path / "train.jsonl"
    both.write_text("".join(json.dumps(r) + "\n" for r in rows))
    steps, real_step = [], torch.optim.AdamW.step

    def state(optimizer, p) -> tuple[torch.Tensor, torch.Tensor | None]:
        avg = optimizer.state.get(p, {}).get("exp_avg")
        return p.detach().clone(), None if avg is None else avg.clone()

    def recording_step(self, *args, **kwargs):
        params = [p for group in self.param_groups for p in group["params"]]
        # no gradient: none at all, or one of zeros (what the loop must not hand such a parameter)
        unused = [p.grad is None or not bool(p.grad.any()) for p in params]
        before = [state(self, p) for p in params]
        out = real_step(self, *args, **kwargs)
        steps.append(list(zip(unused, before, [state(self, p) for p in params])))
        return out

    monkeypatch.setattr(torch.optim.AdamW, "step", recording_step)
    # two of the twelve studies also carry the second template; three batches of four per epoch
    train(encoder_run(init, both, corpus, tmp_path / "e", 8, schedule__micro_batch_size=4))
    assert len(steps) == 8
    coasting = 0  # a parameter with momentum from an earlier step and no gradient in this one
    for unused, (value, avg), (value_after, avg_after) in (entry for step in steps for entry in step):
        if unused and avg is not None and bool(avg.any()):
            coasting += 1
            assert torch.equal(value_after, value) and torch.equal(avg_after, avg)
    assert coasting > 0  # the set has steps without the second template's studies
    moved = [not torch.equal(after[0], before[0]) for step in steps for unused, before, after in step if not unused]
    assert moved and all(moved)


def test_score_heads_reports_held_out_accuracy_beside_the_prior(tiny_set, trained) -> None:
    init, train_file, corpus = tiny_set
    rows = [json.loads(line) for line in train_file.read_text().splitlines()]
    held_out = [{**r, "split": "bench", "modality": "mammography"} for r in rows]
    result = trained
    heads = score_heads(result.final_dir, held_out, corpus)
    assert heads["all"] == {"n_items": 12, "heads": 1.0, "prior": 0.5}  # bright = Yes is read; half are Yes
    assert heads["modalities"]["mammography"]["n_items"] == 12
    assert heads["templates"]["scr-mam-dense-yesno"]["heads"] == 1.0
    assert load_encoder_heads(result.final_dir).priors == {"scr-mam-dense-yesno": "No"}
    with pytest.raises(FileNotFoundError, match="objective=encoders"):
        load_encoder_heads(init)


def test_validation_reads_held_out_records_of_trained_heads(tiny_set, tmp_path: Path) -> None:
    """data.val: the heads' loss on closed records of another split, those of a template without a head skipped."""
    init, train_file, corpus = tiny_set
    rows = [json.loads(line) for line in train_file.read_text().splitlines()]
    val = tmp_path / "val.jsonl"
    other = {**rows[0], "id": "other", "template_id": "no-such-head"}
    val.write_text("".join(json.dumps({**r, "split": "val"}) + "\n" for r in [*rows[:8], other]))
    result = train(encoder_run(init, train_file, corpus, tmp_path / "v", 4, data__val=str(val),
                               logging__val_every_steps=2))
    assert [step for step, _ in result.val_losses] == [2, 4]
    assert all(np.isfinite(loss) for _, loss in result.val_losses)


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


def test_training_image_bounds_shape_what_trains_and_not_what_is_exported(tiny_set, tmp_path: Path) -> None:
    """data.image_min_pixels / image_max_pixels: the training reads its images within them; the exported processor
    keeps the checkpoint's bounds, which inference uses (the demo pre-trains its encoders this way)."""
    from breastgpt.train.loop import setup

    init, train_file, corpus = tiny_set
    upscaling = tmp_path / "init"
    shutil.copytree(init, upscaling)
    processor = BreastGPTProcessor.from_pretrained(upscaling)
    processor.image_min_pixels, processor.image_max_pixels = 256 * 256, 512 * 512
    processor.save_pretrained(upscaling)

    def grid(**bounds) -> list[int]:
        config = encoder_run(upscaling, train_file, corpus, tmp_path / "setup", 2, **bounds)
        return setup(config).train_set[0]["image_grid_thw"][0].tolist()

    assert grid(data__image_min_pixels=0, data__image_max_pixels=0) == [1, 20, 14]  # the checkpoint's: 320 x 224 px
    assert grid() == [1, 6, 4]  # the recipe's (stored size): 96 x 66 px -> 96 x 64
    result = train(encoder_run(upscaling, train_file, corpus, tmp_path / "run", 2))
    exported = BreastGPTProcessor.from_pretrained(result.final_dir)
    assert (exported.image_min_pixels, exported.image_max_pixels) == (256 * 256, 512 * 512)
    index = json.loads((result.final_dir / "encoder_heads.json").read_text())  # score_heads reads at the heads' size
    assert (index["image_min_pixels"], index["image_max_pixels"]) == (64 * 64, 256 * 256)


def test_training_image_bounds_are_checked(tiny_set) -> None:
    from breastgpt.train.model_setup import training_processor

    config = get_recipe("demo-encoders")
    for low, high, message in ((-1, 0, "must be >= 0"), (9216, 4096, "is above data.image_max_pixels")):
        config.data.image_min_pixels, config.data.image_max_pixels = low, high
        with pytest.raises(ConfigError, match=message):
            config.data.check()
    processor = BreastGPTProcessor.from_pretrained(tiny_set[0])
    config.data.image_min_pixels, config.data.image_max_pixels = 0, 2 * 1024 * 32 * 32
    with pytest.raises(ConfigError, match="at most 1048576"):
        training_processor(processor, config.data)
    config.data.image_max_pixels = 0
    assert training_processor(processor, config.data) is processor
