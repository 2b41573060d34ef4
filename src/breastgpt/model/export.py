"""Export a BreastGPT checkpoint as a plain Qwen3-VL folder that any Qwen3-VL tool loads.

What is kept: every Qwen3-VL weight (ViT, merger, DeepStack mergers, language model, LM head) unchanged, the
Qwen3-VL part of the config, the tokenizer (``<|histo_pad|>`` stays in the vocabulary, unused) and the image and
video processors. What is left out: the slide branch (LongNet, projectors), the learnable selectors when present,
and the BreastGPT-only config fields — listed in the folder's ``manifest.json`` and ``README.md``.

A plain Qwen3-VL has no token-selection step: it feeds the LLM every merged visual token. Its outputs therefore
equal BreastGPT's exactly when BreastGPT's selection keeps every token (budgets at least the number of visual
tokens, e.g. a small image or budgets raised in ``selection_config``); with the published budgets (image 64,
volume 128) they differ, and no setting of a plain Qwen3-VL reproduces the selection.

Weights are copied shard by shard with safetensors (one shard in memory at a time), so an 8B export needs about
one shard of memory, not the model's.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from safetensors import safe_open
from safetensors.torch import save_file

from breastgpt.artifacts import CheckpointError, Manifest, atomic_dir, hash_tree
from breastgpt.model.init_checkpoint import MANIFEST, NEW_PARAMS

FORMATS = ("qwen3-vl",)
# Config fields a Qwen3-VL config does not have.
BREASTGPT_CONFIG_FIELDS = ("slide_config", "selection_config", "histo_token_id")
_INDEX = "model.safetensors.index.json"
_COPIED = ("generation_config.json",)


@dataclass(frozen=True)
class ExportResult:
    out_dir: Path
    tensors_kept: int
    tensors_left_out: int
    parameters_left_out: int


def export_qwen3_vl(checkpoint: str | Path, out: str | Path, *, overwrite: bool = False) -> ExportResult:
    """Write ``out``: the Qwen3-VL part of the BreastGPT checkpoint at ``checkpoint``, verified and with a manifest."""
    checkpoint, out = Path(checkpoint), Path(out)
    if out.exists() and not overwrite:
        raise CheckpointError(f"{out}: already exists; choose a new --out or pass --overwrite")
    if out.resolve() == checkpoint.resolve():
        raise CheckpointError(f"{out}: the export cannot replace the checkpoint it reads")
    config = _read_breastgpt_config(checkpoint)
    qwen_config = qwen3_vl_config(config)
    with atomic_dir(out, overwrite=overwrite) as tmp:
        kept, dropped = _copy_weights(checkpoint, tmp)
        _check_keys(qwen_config, kept)
        qwen_config.save_pretrained(tmp)
        _save_processor(checkpoint, tmp)
        for name in _COPIED:
            if (checkpoint / name).is_file():
                shutil.copy2(checkpoint / name, tmp / name)
        _write_readme(tmp, dropped)
        _write_manifest(tmp, checkpoint, dropped)
    return ExportResult(out, len(kept), len(dropped), sum(dropped.values()))


def qwen3_vl_config(config):
    """The Qwen3-VL config inside a BreastGPT config (BreastGPT-only fields removed)."""
    from transformers import Qwen3VLConfig

    data = config.to_dict()
    for name in (*BREASTGPT_CONFIG_FIELDS, "model_type", "transformers_version", "_name_or_path"):
        data.pop(name, None)
    data["architectures"] = ["Qwen3VLForConditionalGeneration"]
    return Qwen3VLConfig(**data)


def _read_breastgpt_config(checkpoint: Path):
    from breastgpt.model.configuration import BreastGPTConfig

    path = checkpoint / "config.json"
    if not path.is_file():
        raise CheckpointError(f"{path}: not found; pass a BreastGPT checkpoint folder (`model init` or `train`)")
    model_type = json.loads(path.read_text(encoding="utf-8")).get("model_type")
    if model_type != "breastgpt":
        raise CheckpointError(f"{path}: model_type is {model_type!r}, expected 'breastgpt'")
    return BreastGPTConfig.from_pretrained(checkpoint, local_files_only=True)


def is_breastgpt_only(name: str) -> bool:
    return name.startswith(NEW_PARAMS)


def _shards(checkpoint: Path) -> list[Path]:
    shards = sorted(checkpoint.glob("*.safetensors"))
    if not shards:
        raise CheckpointError(f"{checkpoint}: no *.safetensors weights")
    return shards


def _copy_weights(checkpoint: Path, out: Path) -> tuple[list[str], dict[str, int]]:
    """Copy each shard without the BreastGPT-only tensors; rewrite the shard index to match."""
    kept: list[str] = []
    dropped: dict[str, int] = {}
    weight_map: dict[str, str] = {}
    total = 0
    for shard in _shards(checkpoint):
        tensors = {}
        with safe_open(str(shard), framework="pt") as handle:
            for name in handle.keys():
                if is_breastgpt_only(name):
                    dropped[name] = _numel(handle, name)
                    continue
                tensors[name] = handle.get_tensor(name)
        if tensors:
            save_file(tensors, str(out / shard.name), metadata={"format": "pt"})
            weight_map.update(dict.fromkeys(tensors, shard.name))
            total += sum(t.numel() * t.element_size() for t in tensors.values())
        kept += list(tensors)
    if (checkpoint / _INDEX).is_file():
        index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
        (out / _INDEX).write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")
    return kept, dropped


def _numel(handle, name: str) -> int:
    count = 1
    for size in handle.get_slice(name).get_shape():
        count *= int(size)
    return count


def _check_keys(qwen_config, kept: list[str]) -> None:
    """The kept tensors are exactly what Qwen3VLForConditionalGeneration expects (built on the meta device: no
    memory), so a plain load reports no missing and no unexpected weights."""
    import torch
    from transformers import Qwen3VLForConditionalGeneration

    with torch.device("meta"):
        model = Qwen3VLForConditionalGeneration(qwen_config)
    expected = set(model.state_dict())
    if getattr(qwen_config, "tie_word_embeddings", False):
        expected.discard("lm_head.weight")  # tied to the input embedding: not saved
    missing, unexpected = sorted(expected - set(kept)), sorted(set(kept) - expected)
    if missing or unexpected:
        raise CheckpointError(f"the export would not load as plain Qwen3-VL: missing {missing[:5]}, "
                              f"unexpected {unexpected[:5]}")


def _save_processor(checkpoint: Path, out: Path) -> None:
    from transformers import Qwen3VLProcessor

    from breastgpt.model.processing import BreastGPTProcessor

    source = BreastGPTProcessor.from_pretrained(checkpoint, local_files_only=True)
    Qwen3VLProcessor(image_processor=source.image_processor, tokenizer=source.tokenizer,
                     video_processor=source.video_processor, chat_template=source.chat_template).save_pretrained(out)


def _write_manifest(out: Path, checkpoint: Path, dropped: dict[str, int]) -> None:
    Manifest.of_folder(
        out,
        kind="qwen3-vl-export",
        format="qwen3-vl",
        source={"path": str(checkpoint.resolve()), "files": hash_tree(checkpoint)},
        left_out={
            "tensors": dict(sorted(dropped.items())),
            "parameters": sum(dropped.values()),
            "config_fields": list(BREASTGPT_CONFIG_FIELDS),
            "reason": "slide branch (LongNet + projectors) and learnable selectors: not part of Qwen3-VL",
        },
        token_selection="not reproduced: a plain Qwen3-VL feeds every visual token; outputs equal BreastGPT's "
                        "only where BreastGPT's selection keeps every token",
    ).write(out / MANIFEST)


def _write_readme(out: Path, dropped: dict[str, int]) -> None:
    text = f"""# Qwen3-VL export of a BreastGPT checkpoint

Research software output, not a medical device.

This folder is a plain Qwen3-VL checkpoint (`model_type: qwen3_vl`): `transformers`'
`Qwen3VLForConditionalGeneration` and `AutoProcessor` load it with no remote code, and so can tools that take a
Qwen3-VL folder.

Left out ({len(dropped)} tensors, {sum(dropped.values()):,} parameters; names in `manifest.json`):

- the whole-slide (gigapixel) branch: LongNet slide encoder and its projectors. This model cannot read slides
  or tile features; `<|histo_pad|>` stays in the tokenizer but means nothing to it.
- the learnable token selectors, when the checkpoint had them;
- the config fields {", ".join(f"`{name}`" for name in BREASTGPT_CONFIG_FIELDS)}.

Token selection is not reproduced. BreastGPT keeps at most a budget of visual tokens per image (64) and per volume
(128) chosen by concept-preserving selection; a plain Qwen3-VL gives the language model every visual token. Its
outputs on images and volumes equal BreastGPT's only where BreastGPT's selection keeps every token; otherwise the
model sees more tokens than it was trained with and its answers may differ. Volumes are Qwen3-VL videos whose
frames are the slices, as BreastGPT prepares them (`breastgpt ask --volume` does the windowing and resampling).
"""
    (out / "README.md").write_text(text, encoding="utf-8")


__all__ = ["FORMATS", "ExportResult", "export_qwen3_vl", "is_breastgpt_only", "qwen3_vl_config"]
