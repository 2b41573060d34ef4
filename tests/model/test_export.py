"""A BreastGPT checkpoint outside the project: transformers' Auto classes load it after `import breastgpt`, and
`model export --format qwen3-vl` writes a folder that plain transformers Qwen3-VL loads with the same outputs."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from breastgpt.model import cli
from tests.model.conftest import conversation, make_image, make_volume

runner = CliRunner()
# Budgets above the tiny inputs' token counts: selection keeps every token, the one setting a plain Qwen3-VL
# can reproduce.
KEEP_ALL = dict(image_budget=4096, volume_budget=4096, slide_budget=16)


def _save(folder: Path, **budgets) -> Path:
    from breastgpt.model import BreastGPTForConditionalGeneration
    from breastgpt.model.flavours import tiny, tiny_processor

    torch.manual_seed(0)
    BreastGPTForConditionalGeneration(tiny(selection_config=budgets)).save_pretrained(folder)
    tiny_processor(**budgets).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("export")
    checkpoint = _save(root / "ck", **KEEP_ALL)
    res = runner.invoke(cli.app, ["export", str(checkpoint), "--format", "qwen3-vl", "--out", str(root / "q"),
                                  "--json"])
    assert res.exit_code == 0, res.output
    return checkpoint, root / "q"


AUTO_LOAD = """
import sys
if sys.argv[2] == "transformers-first":
    import transformers
import breastgpt
assert sys.argv[2] == "transformers-first" or "torch" not in sys.modules, "import breastgpt must stay light"
from transformers import AutoConfig, AutoModel, AutoModelForImageTextToText, AutoProcessor
path = sys.argv[1]
print(type(AutoConfig.from_pretrained(path)).__name__, type(AutoModelForImageTextToText.from_pretrained(path)).__name__,
      type(AutoModel.from_pretrained(path)).__name__, type(AutoProcessor.from_pretrained(path)).__name__)
"""


@pytest.mark.parametrize("order", ["breastgpt-first", "transformers-first"])
def test_auto_classes_load_a_checkpoint_after_import_breastgpt(exported, order):
    # A fresh interpreter: the registration must come from `import breastgpt` alone, not from this test session;
    # transformers imported before or after it.
    checkpoint, _ = exported
    out = subprocess.run([sys.executable, "-c", AUTO_LOAD, str(checkpoint), order], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split()[-4:] == ["BreastGPTConfig", "BreastGPTForConditionalGeneration", "BreastGPTModel",
                                       "BreastGPTProcessor"]


PLAIN_LOAD = """
import json, sys
from transformers import AutoModelForImageTextToText, AutoProcessor, Qwen3VLForConditionalGeneration
path = sys.argv[1]
model, info = Qwen3VLForConditionalGeneration.from_pretrained(path, output_loading_info=True)
print(json.dumps({"info": {k: sorted(map(str, v)) for k, v in info.items()}, "breastgpt": "breastgpt" in sys.modules,
                  "auto": type(AutoModelForImageTextToText.from_pretrained(path)).__name__,
                  "processor": type(AutoProcessor.from_pretrained(path)).__name__,
                  "slide": [n for n in model.state_dict() if "slide" in n]}))
"""


def test_export_loads_as_plain_qwen3_vl_with_no_missing_or_unexpected_weights(exported):
    # A fresh interpreter that never imports breastgpt: what a user of plain transformers gets.
    _, out = exported
    assert json.loads((out / "config.json").read_text())["model_type"] == "qwen3_vl"
    run = subprocess.run([sys.executable, "-c", PLAIN_LOAD, str(out)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    got = json.loads(run.stdout.strip().splitlines()[-1])
    assert got["info"] == {"error_msgs": [], "missing_keys": [], "mismatched_keys": [], "unexpected_keys": []}
    assert not got["breastgpt"] and not got["slide"]
    assert (got["auto"], got["processor"]) == ("Qwen3VLForConditionalGeneration", "Qwen3VLProcessor")


def test_export_states_what_was_left_out(exported):
    from breastgpt.artifacts import artifact_problems

    checkpoint, out = exported
    manifest = json.loads((out / "manifest.json").read_text())
    slide = [n for n in json.loads((checkpoint / "model.safetensors.index.json").read_text())["weight_map"]
             if n.startswith("model.slide_")] if (checkpoint / "model.safetensors.index.json").is_file() else None
    left = manifest["left_out"]["tensors"]
    assert left and all(name.startswith("model.slide_") for name in left)
    assert slide is None or sorted(slide) == sorted(left)
    assert manifest["left_out"]["parameters"] == sum(left.values()) > 0
    assert manifest["kind"] == "qwen3-vl-export" and "not reproduced" in manifest["token_selection"]
    readme = (out / "README.md").read_text()
    assert "slide" in readme and "Token selection is not reproduced" in readme
    assert artifact_problems(out, exhaustive=True) == []


def _same_inputs(processor, qwen_processor, part: dict) -> dict:
    enc = processor.encode(conversation(part, answer=None), add_generation_prompt=True)
    batch = processor.pad_batch([enc])
    batch.pop("labels", None)
    # Qwen3-VL locates image / video tokens through mm_token_type_ids, which its own processor builds
    batch["mm_token_type_ids"] = torch.tensor(qwen_processor.create_mm_token_type_ids(batch["input_ids"].tolist()))
    return batch


@pytest.mark.parametrize("part", [{"type": "image", "image": make_image()}, {"type": "volume", "volume": make_volume()}],
                         ids=["image", "volume"])
def test_export_logits_equal_breastgpt_when_selection_keeps_every_token(exported, part):
    from transformers import AutoProcessor, Qwen3VLForConditionalGeneration

    from breastgpt.model import BreastGPTForConditionalGeneration, BreastGPTProcessor
    from breastgpt.model.flavours import tiny

    checkpoint, out = exported
    ours = BreastGPTForConditionalGeneration.from_pretrained(checkpoint).eval()
    plain = Qwen3VLForConditionalGeneration.from_pretrained(out).eval()
    processor = BreastGPTProcessor.from_pretrained(checkpoint)
    batch = _same_inputs(processor, AutoProcessor.from_pretrained(out), part)
    image = part["type"] == "image"
    visual = batch["input_ids"] == (ours.config.image_token_id if image else ours.config.video_token_id)
    default = tiny().selection
    # more tokens than the tiny flavour's own budgets keep: with those, selection would have thinned them
    assert int(visual.sum()) > (default.image_budget if image else default.volume_budget)
    with torch.no_grad():
        expected = ours(**{k: v for k, v in batch.items() if k != "mm_token_type_ids"}).logits
        got = plain(**batch).logits
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)


def test_plain_qwen3_vl_processor_gives_the_same_image_inputs_and_logits(exported):
    from transformers import AutoProcessor, Qwen3VLForConditionalGeneration

    from breastgpt.model import BreastGPTForConditionalGeneration, BreastGPTProcessor

    checkpoint, out = exported
    processor, qwen_processor = BreastGPTProcessor.from_pretrained(checkpoint), AutoProcessor.from_pretrained(out)
    image = make_image()
    enc = processor.encode(conversation({"type": "image", "image": image}, answer=None), add_generation_prompt=True)
    text = re.sub(r"(<\|image_pad\|>)+", "<|image_pad|>", processor.tokenizer.decode(enc["input_ids"]))
    theirs = qwen_processor(text=[text], images=[image], return_tensors="pt")
    assert theirs["input_ids"][0].tolist() == list(enc["input_ids"])
    batch = processor.pad_batch([enc])
    batch.pop("labels", None)
    with torch.no_grad():
        expected = BreastGPTForConditionalGeneration.from_pretrained(checkpoint).eval()(**batch).logits
        got = Qwen3VLForConditionalGeneration.from_pretrained(out).eval()(**theirs).logits
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)


def test_export_refuses_a_folder_that_is_not_breastgpt_and_an_existing_out(exported, tmp_path):
    checkpoint, out = exported
    res = runner.invoke(cli.app, ["export", str(out), "--out", str(tmp_path / "again")])
    assert res.exit_code == 2 and "expected 'breastgpt'" in " ".join(res.output.split())
    res = runner.invoke(cli.app, ["export", str(checkpoint), "--out", str(out)])
    assert res.exit_code == 2 and "already exists" in res.output
    res = runner.invoke(cli.app, ["export", str(checkpoint), "--out", str(tmp_path / "x"), "--format", "gguf"])
    assert res.exit_code != 0 and not (tmp_path / "x").exists()


def test_sharded_learnable_checkpoint_exports_without_selectors_and_with_a_matching_index(tmp_path):
    from transformers import Qwen3VLForConditionalGeneration

    from breastgpt.model import BreastGPTForConditionalGeneration
    from breastgpt.model.export import export_qwen3_vl
    from breastgpt.model.flavours import tiny, tiny_processor

    torch.manual_seed(0)
    model = BreastGPTForConditionalGeneration(tiny(selection_config={"learnable": True}))
    model.save_pretrained(tmp_path / "ck", max_shard_size="300KB")
    tiny_processor().save_pretrained(tmp_path / "ck")
    assert len(list((tmp_path / "ck").glob("*.safetensors"))) > 1
    result = export_qwen3_vl(tmp_path / "ck", tmp_path / "q")
    left = json.loads((tmp_path / "q" / "manifest.json").read_text())["left_out"]["tensors"]
    assert any(n.startswith("model.concept_selectors.") for n in left) and result.tensors_left_out == len(left)
    index = json.loads((tmp_path / "q" / "model.safetensors.index.json").read_text())["weight_map"]
    assert not set(index) & set(left) and set(index.values()) <= {p.name for p in (tmp_path / "q").glob("*.safetensors")}
    _, info = Qwen3VLForConditionalGeneration.from_pretrained(tmp_path / "q", output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
