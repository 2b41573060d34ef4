"""LoRA adapters save and merge (merged model generates what the adapter model does); the comparator trains."""

from __future__ import annotations

import json

import pytest
import torch

from tests.train.conftest import tiny_config

from breastgpt.train.loop import train


def test_lora_adapter_saves_and_merged_model_generates_the_same(tmp_path):
    from peft import PeftModel

    from breastgpt.model import BreastGPTForConditionalGeneration
    from breastgpt.model.flavours import tiny_processor
    from breastgpt.train.config import ModelConfig
    from breastgpt.train.model_setup import build_model

    config = tiny_config(tmp_path / "lora", steps=3, model__trainable="lora", optim__lr=5e-2)
    config.model.lora.dropout = 0.0
    result = train(config)
    adapter = result.final_dir / "adapter"
    assert (adapter / "adapter_model.safetensors").is_file() and (adapter / "adapter_config.json").is_file()
    saved = json.loads((adapter / "adapter_config.json").read_text())
    assert saved["r"] == 16 and {"model.slide_encoder", "model.visual.deepstack_merger_list.1"} <= set(
        saved["modules_to_save"])

    base = build_model(ModelConfig(flavour="tiny", init_seed=0))  # the same seeded base weights
    with_adapter = PeftModel.from_pretrained(base, str(adapter)).eval()
    lora_b = [p for n, p in with_adapter.named_parameters() if "lora_B" in n]
    assert lora_b and any(float(p.abs().max()) > 0 for p in lora_b)  # training moved the adapters
    merged = BreastGPTForConditionalGeneration.from_pretrained(str(result.final_dir)).eval()
    proc = tiny_processor()
    batch = proc.pad_batch([proc.encode([{"role": "user", "content": "Is the image dark?"}], stage="screening",
                                        add_generation_prompt=True)])
    kw = dict(max_new_tokens=12, do_sample=False)
    with torch.no_grad():
        a = with_adapter.generate(**batch, **kw)
        b = merged.generate(**batch, **kw)
        la = with_adapter(**batch).logits
        lb = merged(**batch).logits
    assert torch.equal(a, b)
    assert float((la - lb).abs().max()) < 1e-4


def test_comparator_trains_plain_qwen3vl_with_slide_thumbnails(tmp_path):
    import numpy as np

    from breastgpt.corpus.records import MediaRef, Provenance, Record, write_records_jsonl
    from breastgpt.pathology.features import write_features

    write_features(tmp_path / "features" / "s1.h5", np.zeros((4, 2), np.int64), np.ones((4, 16), np.float32),
                   {"footprint_level0": [512, 512]}, thumbnail=np.full((64, 96, 3), 180, np.uint8))
    rec = Record(id="r1", source="synthetic", patient_key="p", study_key="s", stage="treatment",
                 modality="pathology", kind="slide", task_family="open_vqa", template_id="t",
                 answer_provenance=Provenance("label"), split="train",
                 messages=[{"role": "user", "content": "<slide>\nSubtype?"}, {"role": "assistant", "content": "Luminal A."}],
                 label={"answer": "Luminal A.", "key_findings": []},
                 media=[MediaRef(path="features/s1.h5", sha256="0" * 64, kind="slide")])
    write_records_jsonl(tmp_path / "records.jsonl", [rec, rec])
    config = tiny_config(tmp_path / "cmp", steps=2, model__arch="qwen3vl", data__slide_mode="thumbnail",
                         data__train=str(tmp_path / "records.jsonl"))
    config.data.synthetic_records = 0
    result = train(config)
    assert len(result.losses) == 2 and all(l == l for l in result.losses)
    saved = json.loads((result.final_dir / "config.json").read_text())
    assert saved["model_type"] == "qwen3_vl" and "slide_config" not in saved
    # a 64x96 thumbnail -> 4x6 patches -> 2x3 = 6 merged tokens, all kept (no selection)
    from breastgpt.train.data import MediaLoader, encode_sample, read_samples
    from breastgpt.train.model_setup import build_processor

    proc = build_processor(config.model, __import__("breastgpt.train.model_setup", fromlist=["x"]).build_model(config.model))
    enc = encode_sample(read_samples(tmp_path / "records.jsonl", "records")[0], proc,
                        MediaLoader(tmp_path, tmp_path, "thumbnail"))
    assert int((enc["input_ids"] == proc.tokenizer.convert_tokens_to_ids("<|image_pad|>")).sum()) == 6
