"""Data path: records/ms-swift -> processor tensors, assistant-only labels, budgets, packing, the batch plan."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch


from breastgpt.model import BreastGPTForConditionalGeneration
from breastgpt.model.flavours import tiny, tiny_processor
from breastgpt.train.config import DataConfig
from breastgpt.train.data import (DataError, MediaLoader, Sample, TrainDataset, collate, encode_sample, pack,
                                  read_samples, supervised_tokens)
from breastgpt.train.objectives import forward_loss_sum
from breastgpt.train.sampler import BatchPlan, DataPosition, epoch_plan
from breastgpt.train.synthetic import synthetic_records


@pytest.fixture(scope="module")
def processor():
    return tiny_processor(image_budget=3, volume_budget=12, slide_budget=16, slide_feature_dim=16)


def test_labels_are_assistant_tokens_only_exactly(processor, tmp_path):
    sample = Sample("s", [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "OK"}])
    enc = encode_sample(sample, processor, MediaLoader(tmp_path, tmp_path))
    tok = processor.tokenizer
    ids = enc["input_ids"].tolist()
    im_start, im_end = tok.convert_tokens_to_ids("<|im_start|>"), tok.convert_tokens_to_ids("<|im_end|>")
    nl = tok.encode("\n", add_special_tokens=False)
    user = [im_start, *tok.encode("user\nHi", add_special_tokens=False), im_end, *nl]
    asst_head = [im_start, *tok.encode("assistant\n", add_special_tokens=False)]
    ok = tok.encode("OK", add_special_tokens=False)
    assert ids == user + asst_head + ok + [im_end] + nl
    expected = [-100] * (len(user) + len(asst_head)) + ok + [im_end] + [-100] * len(nl)
    assert enc["labels"].tolist() == expected
    assert supervised_tokens(enc["labels"][None]) == len(ok) + 1


def test_record_stage_becomes_system_prompt(processor, tmp_path):
    with_stage = Sample("s", [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "OK"}],
                        stage="treatment")
    text = processor.tokenizer.decode(encode_sample(with_stage, processor, MediaLoader(tmp_path, tmp_path))["input_ids"])
    assert text.startswith("<|im_start|>system\nYou are BreastGPT") and "Clinical stage: treatment planning" in text


def test_records_with_images_get_budgeted_placeholders(processor, tmp_path):
    path = synthetic_records(tmp_path, 4, seed=1, image_size=96, text_only_every=0)
    samples = read_samples(path, "records")
    enc = encode_sample(samples[0], processor, MediaLoader(tmp_path, tmp_path))
    pad = processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    # 96x96 -> 6x6 patches of 16 -> 3x3 merged = 9 tokens, capped at the budget of 3
    assert int((enc["input_ids"] == pad).sum()) == 3
    assert enc["image_grid_thw"][0].tolist() == [1, 6, 6]


def test_swift_rows_volume_and_slide(processor, tmp_path):
    vol = np.random.default_rng(0).integers(0, 255, (3, 32, 32), dtype=np.uint8)  # odd depth -> padded to 4
    np.savez_compressed(tmp_path / "v.npz", array=vol)
    from breastgpt.pathology.features import write_features

    coords = np.stack([np.arange(20) % 5, np.arange(20) // 5], 1) * 1024
    write_features(tmp_path / "s.h5", coords, np.ones((20, 16), np.float32), {"footprint_level0": [1024, 1024]},
                   thumbnail=np.full((40, 60, 3), 200, np.uint8))
    row = {"messages": [{"role": "user", "content": "<video><slide> What?"}, {"role": "assistant", "content": "No."}],
           "videos": ["v.npz"], "slides": ["s.h5"]}
    (tmp_path / "swift.jsonl").write_text(json.dumps(row) + "\n")
    (sample,) = read_samples(tmp_path / "swift.jsonl", "swift")
    assert sample.media == [("volume", "v.npz"), ("slide", "s.h5")]
    enc = encode_sample(sample, processor, MediaLoader(tmp_path, tmp_path, "features", 16))
    ids = enc["input_ids"]
    assert int((ids == processor.tokenizer.convert_tokens_to_ids("<|histo_pad|>")).sum()) == 16
    assert int((ids == processor.tokenizer.convert_tokens_to_ids("<|video_pad|>")).sum()) == 2  # 2 frames x 1 token
    assert enc["slide_grid"][0][:6].tolist() == [[0, 0], [1, 0], [2, 0], [3, 0], [4, 0], [0, 1]]
    thumb = encode_sample(sample, processor, MediaLoader(tmp_path, tmp_path, "thumbnail", 16))
    assert len(thumb["slide_features"]) == 0 and len(thumb["pixel_values"]) == 1


def test_swift_placeholder_mismatch_is_an_error(tmp_path):
    row = {"messages": [{"role": "user", "content": "<image><image>"}, {"role": "assistant", "content": "x"}],
           "images": ["a.png"]}
    (tmp_path / "bad.jsonl").write_text(json.dumps(row) + "\n")
    with pytest.raises(DataError, match="bad.jsonl:1: more <image> placeholders than media"):
        read_samples(tmp_path / "bad.jsonl", "swift")


def test_overlong_samples_are_dropped_or_refused(processor, tmp_path):
    samples = [Sample(f"s{i}", [{"role": "user", "content": "x" * n}, {"role": "assistant", "content": "y"}])
               for i, n in enumerate((10, 400))]
    loader = MediaLoader(tmp_path, tmp_path)
    ds = TrainDataset(samples, processor, loader, DataConfig(train="x", max_length=300))
    assert [s.id for s in ds.samples] == ["s0"] and ds.dropped == ["s1"]
    with pytest.raises(DataError, match="s1: 4.. tokens > data.max_length=300"):
        TrainDataset(samples, processor, loader, DataConfig(train="x", max_length=300, overlong="error"))


def test_packing_gives_the_unpacked_loss(processor, tmp_path):
    loader = MediaLoader(tmp_path, tmp_path)
    texts = [("Hello there", "Fine."), ("What is BI-RADS 4?", "Suspicious."), ("Hi", "Yes, it is.")]
    encs = [encode_sample(Sample(str(i), [{"role": "user", "content": q}, {"role": "assistant", "content": a}]),
                          processor, loader) for i, (q, a) in enumerate(texts)]
    torch.manual_seed(0)
    model = BreastGPTForConditionalGeneration(tiny()).eval()
    packed = pack([dict(e) for e in encs], processor.tokenizer.pad_token_id, max_length=10_000)
    assert packed["input_ids"].shape[0] == 1
    with torch.no_grad():
        total_packed = float(forward_loss_sum(model, packed))
        total = sum(float(forward_loss_sum(model, processor.pad_batch([e], padding_side="right"))) for e in encs)
    assert total_packed == pytest.approx(total, rel=1e-5)


def test_packing_refuses_visual_inputs(processor, tmp_path):
    path = synthetic_records(tmp_path, 1, text_only_every=0)
    enc = encode_sample(read_samples(path, "records")[0], processor, MediaLoader(tmp_path, tmp_path))
    enc["sample_id"] = "a"
    with pytest.raises(DataError, match="packing supports text-only samples"):
        collate([enc], processor, packing=True, max_length=1000)


def test_plan_is_deterministic_grouped_and_resumable():
    lengths = [5, 50, 6, 49, 7, 48, 8, 47]
    a = epoch_plan(lengths, 2, seed=3, epoch=0, group_by_length=True, mega_batch_factor=4)
    assert a == epoch_plan(lengths, 2, seed=3, epoch=0, group_by_length=True, mega_batch_factor=4)
    assert a != epoch_plan(lengths, 2, seed=3, epoch=1, group_by_length=True, mega_batch_factor=4)
    assert sorted(i for b in a for i in b) == list(range(8))
    assert all(abs(lengths[b[0]] - lengths[b[1]]) <= 2 for b in a)  # long with long, short with short
    one = BatchPlan(lengths, 2, 1, 0, seed=3)
    ranks = [BatchPlan(lengths, 1, 2, r, seed=3) for r in range(2)]
    for _ in range(6):  # crosses the epoch boundary
        assert one.next_local() == ranks[0].next_local() + ranks[1].next_local()
    assert one.state_dict()["epoch"] == 1 and one.position == DataPosition(1, 2)
    fresh = BatchPlan(lengths, 2, 1, 0, seed=3)
    fresh.load_state_dict(one.state_dict())
    assert fresh.next_local() == one.next_local()
    with pytest.raises(ValueError, match="global_micro_batch=2, this run has 4"):
        BatchPlan(lengths, 4, 1, 0, seed=3).load_state_dict(fresh.state_dict())


def test_media_memo_serves_equal_copies_and_rereads_a_changed_file(tmp_path):
    from PIL import Image

    path = tmp_path / "a.png"
    Image.fromarray(np.full((32, 48), 100, np.uint8)).save(path)
    loader = MediaLoader(tmp_path, tmp_path, memo_bytes=1 << 20)
    first = loader.part("image", "a.png")["image"]
    first[:] = 0  # a caller altering its copy cannot reach the memo
    second = loader.part("image", "a.png")["image"]
    assert second.shape == (32, 48, 3) and int(second.min()) == 100 and second.flags.writeable
    assert len(loader._memo) == 1
    Image.fromarray(np.full((32, 48), 7, np.uint8)).save(path)
    import os

    os.utime(path, ns=(1, 1))  # a rewrite with another mtime (and here the same size) is read again
    assert int(loader.part("image", "a.png")["image"].max()) == 7
    tiny_memo = MediaLoader(tmp_path, tmp_path, memo_bytes=10)  # smaller than one image: cleared, still correct
    assert int(tiny_memo.part("image", "a.png")["image"].max()) == 7 and len(tiny_memo._memo) == 1
    assert DataConfig(train="x", media_memo_mib=0).check() is None
    from breastgpt.train.config import ConfigError

    with pytest.raises(ConfigError, match="media_memo_mib"):
        DataConfig(train="x", media_memo_mib=-1).check()


def test_media_memo_keeps_slide_features_and_thumbnails(tmp_path):
    from breastgpt.pathology.features import write_features

    coords = np.stack([np.arange(6) % 3, np.arange(6) // 3], 1) * 512
    feats = np.arange(6 * 4, dtype=np.float32).reshape(6, 4)
    write_features(tmp_path / "s.h5", coords, feats, {"footprint_level0": [512, 512]},
                   thumbnail=np.full((8, 12, 3), 9, np.uint8))
    loader = MediaLoader(tmp_path, tmp_path, "features", 4, memo_bytes=1 << 20)
    first = loader.part("slide", "s.h5")
    first["features"][:] = -1  # the caller's copy, not the memo's
    second = loader.part("slide", "s.h5")
    assert np.array_equal(second["features"], feats) and np.array_equal(second["coords"], coords)
    assert second["tile_size"] == 512.0 and second["features"].flags.writeable and len(loader._memo) == 1
    assert loader._memo_held == feats.nbytes + coords.nbytes
    thumbs = MediaLoader(tmp_path, tmp_path, "thumbnail", None, memo_bytes=1 << 20)
    assert thumbs.part("slide", "s.h5")["image"].shape == (8, 12, 3)
    assert int(thumbs.part("slide", "s.h5")["image"].max()) == 9 and len(thumbs._memo) == 1


def test_a_records_file_of_every_split_trains_on_its_training_split(tmp_path):
    """A corpus's records.jsonl holds every split: data.train_split (default "train") keeps the bench records out."""
    import json

    from breastgpt.train.data import DataError, read_samples
    from breastgpt.train.synthetic import synthetic_records

    path = synthetic_records(tmp_path, 8, seed=0)
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    path.write_text("".join(json.dumps({**r, "split": "bench" if i % 2 else "train"}) + "\n"
                            for i, r in enumerate(rows)))
    assert [s.id for s in read_samples(path, "records", "train")] == [r["id"] for r in rows[::2]]
    assert len(read_samples(path, "records", "")) == 8
    with pytest.raises(DataError, match=r"no record of split 'val' \(the file holds bench, train\)") as caught:
        read_samples(path, "records", "val")
    # one split error type: what catches a bad split setting (corpus.splits.SplitError, a ConfigError) catches this
    from breastgpt.config import ConfigError
    from breastgpt.corpus.splits import SplitError
    from breastgpt.train.data import MissingSplitError

    assert isinstance(caught.value, MissingSplitError) and isinstance(caught.value, SplitError)
    assert isinstance(caught.value, ConfigError)
