"""End-to-end training on the synthetic corpus (CPU): golden losses, exact resume, NaN stop, no pickle."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.train.conftest import tiny_config, train_interrupted
from tests.train.golden import GOLDEN, TOLERANCE, run_golden

from breastgpt.train import checkpoint as ckpt
from breastgpt.train import loop, objectives
from breastgpt.train.data import supervised_tokens
from breastgpt.train.loop import NonFiniteLossError, train


def pickle_files(root: Path) -> list[Path]:
    """Files that are pickles (protocol 2-5 magic) or torch.save zips (which hold data.pkl)."""
    found = []
    for path in Path(root).rglob("*"):
        if not path.is_file():
            continue
        head = path.read_bytes()[:4096]
        if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
            found.append(path)
        elif head[:2] == b"PK" and b".pkl" in path.read_bytes():
            found.append(path)
    return found


@pytest.fixture(scope="module")
def golden_run(tmp_path_factory):
    return run_golden(tmp_path_factory.mktemp("golden") / "run", checkpoint_every=10)


def test_tiny_debug_matches_golden_losses_and_learns(golden_run):
    golden = json.loads(GOLDEN.read_text())["losses"]
    assert len(golden_run.losses) == len(golden) == 20
    diffs = [abs(a - b) for a, b in zip(golden_run.losses, golden)]
    assert max(diffs) <= TOLERANCE, f"loss curve drifted from {GOLDEN}: max |diff| {max(diffs)}"
    assert golden_run.losses[-1] < 0.5 * golden_run.losses[0]


def test_run_writes_logs_checkpoints_final_and_no_pickle(golden_run):
    out = golden_run.output_dir
    lines = [json.loads(l) for l in (out / "logs" / "metrics.jsonl").read_text().splitlines()]
    assert [l["step"] for l in lines] == list(range(1, 21))
    assert lines[0]["train/loss"] == pytest.approx(golden_run.losses[0], abs=1e-12)
    assert [p.name for p in ckpt.list_checkpoints(out / "checkpoints")] == ["step-00000010", "step-00000020"]
    assert (out / "checkpoints" / "latest").read_text().strip() == "step-00000020"
    manifest = ckpt.verify_checkpoint(out / "checkpoints" / "step-00000020")
    assert set(manifest["files"]) >= {"model.safetensors", "optimizer.json", "optimizer.safetensors",
                                      "scheduler.json", "rng-rank0.json", "trainer_state.json"}
    assert manifest["config"]["name"] == "tiny-debug" and len(manifest["data_manifest_sha256"]) == 64
    assert (out / "final" / "model.safetensors").is_file() and (out / "final" / "manifest.json").is_file()
    assert pickle_files(out) == []


def test_pickle_scanner_finds_torch_save(tmp_path):
    torch.save({"a": torch.ones(2)}, tmp_path / "x.bin")
    (tmp_path / "y.pkl").write_bytes(__import__("pickle").dumps({"a": 1}, protocol=4))
    assert sorted(p.name for p in pickle_files(tmp_path)) == ["x.bin", "y.pkl"]


def test_resume_from_step_10_equals_straight_run(golden_run, tmp_path):
    config = tiny_config(tmp_path / "resumed", steps=20)
    config.data.synthetic_records = 24  # same data as the golden run
    shutil.copytree(golden_run.output_dir / "synthetic", tmp_path / "resumed" / "synthetic")
    result = train(config, resume=str(golden_run.output_dir / "checkpoints" / "step-00000010"))
    assert result.losses[10:] == golden_run.losses[10:]
    a = load_file(str(golden_run.output_dir / "final" / "model.safetensors"))
    b = load_file(str(tmp_path / "resumed" / "final" / "model.safetensors"))
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_with_cosine_warmup_and_accumulation(tmp_path):
    def config(out):
        c = tiny_config(out, steps=6, schedule__scheduler="cosine", schedule__warmup_ratio=0.34,
                        schedule__grad_accum=2, schedule__micro_batch_size=1)
        c.checkpoint.every_steps = 3
        return c

    straight = train(config(tmp_path / "a"))
    first = config(tmp_path / "b")
    first.schedule.max_steps = 6
    train_interrupted(first, after_step=3)  # same config; the process "dies" after step 3
    resumed = train(config(tmp_path / "b"), resume="auto")
    assert len(resumed.losses) == 6
    assert max(abs(x - y) for x, y in zip(resumed.losses, straight.losses)) <= 1e-6
    sa = load_file(str(tmp_path / "a" / "final" / "model.safetensors"))
    sb = load_file(str(tmp_path / "b" / "final" / "model.safetensors"))
    assert max(float((sa[k] - sb[k]).abs().max()) for k in sa) <= 1e-6


def test_nan_loss_stops_before_optimizer_step(tmp_path, monkeypatch):
    config = tiny_config(tmp_path / "nan", steps=4)
    real = objectives.forward_loss_sum
    calls = {"n": 0}

    def poisoned(model, batch):
        calls["n"] += 1
        loss = real(model, batch)
        return loss * float("nan") if calls["n"] == 3 else loss

    monkeypatch.setattr(objectives, "forward_loss_sum", poisoned)
    with pytest.raises(NonFiniteLossError, match=r"non-finite loss \(nan\) at step 3.*before the optimizer step"):
        train(config)
    assert calls["n"] == 3


def test_nan_stop_leaves_weights_unchanged(tmp_path, monkeypatch):
    config = tiny_config(tmp_path / "nan2", steps=3)
    run = loop.setup(config)
    loop.train_step(run)
    before = {n: p.detach().clone() for n, p in run.model.named_parameters()}
    monkeypatch.setattr(objectives, "forward_loss_sum", lambda m, b: torch.tensor(float("inf"), requires_grad=True))
    with pytest.raises(NonFiniteLossError, match=r"non-finite loss \(inf\)"):
        loop.train_step(run)
    assert all(torch.equal(before[n], p) for n, p in run.model.named_parameters())
    assert run.optimizer.state_dict()["state"][0]["step"] == 1  # one step taken, not two


def test_a_run_from_a_checkpoint_trains_in_training_mode(tmp_path, monkeypatch):
    """from_pretrained hands back an eval-mode model; the loop must switch it to training mode, or gradient
    checkpointing and the selection's straight-through estimator (both keyed on .training) are silently off."""
    first = train(tiny_config(tmp_path / "first", steps=1))
    modes = []
    real = objectives.forward_loss_sum

    def spy(model, batch):
        modes.append(loop_model_training(model))
        return real(model, batch)

    monkeypatch.setattr(objectives, "forward_loss_sum", spy)
    config = tiny_config(tmp_path / "second", steps=2, model__path=str(first.output_dir / "final"), model__flavour="")
    train(config)
    assert modes == [True, True]


def loop_model_training(model) -> bool:
    inner = getattr(model, "module", model)
    return bool(inner.training) and all(m.training for m in inner.modules())


def test_frozen_encoders_train_with_the_memo_and_the_same_losses(tmp_path):
    """model.trainable=language attaches the encoder memo (breastgpt.model.encoder_memo); it changes no loss."""
    losses, stats = {}, {}
    for mib in (64, 0):
        run = loop.setup(tiny_config(tmp_path / f"memo{mib}", steps=8, model__trainable="language",
                                     model__encoder_memo_mib=mib))
        memo = run.accelerator.unwrap_model(run.model).model.encoder_memo
        assert (memo is not None) == (mib > 0)
        losses[mib] = [loop.train_step(run)[0] for _ in range(8)]  # 12 records, 2 per step: a second epoch
        stats[mib] = memo.stats if memo is not None else None
    assert stats[64].misses == 9 and stats[64].hits >= 3  # 9 records have an image (every 4th is text-only)
    assert losses[64] == pytest.approx(losses[0], rel=1e-5)
    everything = loop.setup(tiny_config(tmp_path / "all", steps=1))
    assert everything.accelerator.unwrap_model(everything.model).model.encoder_memo is None


@pytest.mark.parametrize("arch", ["breastgpt", "qwen3vl"])
def test_right_padded_batches_need_no_attention_mask(tmp_path, arch):
    """Real tokens never see right padding under causal attention: dropping the mask changes no loss (BreastGPT's
    positions and plain Qwen3-VL's, the demo comparator's, do not depend on padding after the real tokens)."""
    from breastgpt.train.data import collate

    run = loop.setup(tiny_config(tmp_path / "pad", steps=1, model__arch=arch))
    items = [run.train_set[i] for i in range(4)]
    batch = collate(items, run.processor)
    mask = batch["attention_mask"]
    assert not bool(mask.all())  # the samples differ in length: there is padding to drop
    assert "attention_mask" not in objectives.without_right_padding_mask(batch)
    run.model.eval()
    with torch.no_grad():
        masked = run.model(**objectives.to_device(batch, "cpu"), use_cache=False).loss
        unmasked = objectives.forward_loss_sum(run.model, objectives.to_device(batch, "cpu"))
        unmasked = unmasked / supervised_tokens(batch["labels"])
    assert float(unmasked) == pytest.approx(float(masked), rel=1e-5)
    left = dict(batch, attention_mask=mask.flip(-1))  # padding before real tokens: the mask must stay
    assert objectives.without_right_padding_mask(left)["attention_mask"] is left["attention_mask"]


def test_the_learnable_selection_ablation_trains_through_the_loop(tmp_path):
    """A checkpoint with selection.learnable=true (as `model init --learnable-selection` writes) trains with the
    loop (the encoder memo stays off) and its image selector learns from the loss and the coverage regulariser."""
    from breastgpt.model import BreastGPTForConditionalGeneration
    from breastgpt.model.flavours import tiny, tiny_processor

    sel = {**tiny().selection_config, "learnable": True, "learnable_concepts": 4}
    torch.manual_seed(0)
    BreastGPTForConditionalGeneration(tiny(selection_config=sel)).save_pretrained(tmp_path / "ablation")
    tiny_processor().save_pretrained(tmp_path / "ablation")
    run = loop.setup(tiny_config(tmp_path / "run", steps=3, model__path=str(tmp_path / "ablation"),
                                 model__flavour=""))
    model = run.accelerator.unwrap_model(run.model)
    assert model.model.encoder_memo is None
    before = {n: p.detach().clone() for n, p in model.named_parameters() if "concept_selectors" in n}
    losses = [loop.train_step(run)[0] for _ in range(3)]
    assert all(torch.isfinite(torch.tensor(losses)))
    changed = [n for n, p in model.named_parameters() if n in before and not torch.equal(p, before[n])]
    # the tiny-debug corpus holds images only: the image selector learns, the others see no input
    assert {n.split(".")[2] for n in changed} == {"image"}, changed
