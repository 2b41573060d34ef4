"""Build a BreastGPT checkpoint from a local Qwen3-VL checkpoint folder (nothing is fetched).

Steps: add ``<|histo_pad|>`` to the tokenizer (on a spare embedding row when Qwen's vocabulary has one,
so the embedding keeps its size), initialise its embedding from ``<|image_pad|>``, copy every Qwen3-VL
weight into BreastGPT, initialise the slide branch, and write safetensors + config + tokenizer + processor
files + ``manifest.json`` (input sha256s, output sha256s, code version) atomically with
`breastgpt.artifacts.atomic_dir`: a temporary sibling folder renamed into place only when complete. `model verify`
checks it with `breastgpt.artifacts.artifact_problems`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from breastgpt.artifacts import MANIFEST_NAME, CheckpointError, Manifest, atomic_dir, hash_tree
from breastgpt.model.configuration import HISTO_TOKEN, BreastGPTConfig
from breastgpt.model.flavours import published
from breastgpt.model.modeling import BreastGPTForConditionalGeneration
from breastgpt.model.module_groups import QWEN3VL_MODULE_GROUPS
from breastgpt.model.processing import BreastGPTProcessor

MANIFEST = MANIFEST_NAME
# Parameters a Qwen3-VL checkpoint lacks, initialised here: the groups BreastGPT adds to Qwen3-VL's (the slide
# branch, and the learnable selectors).
NEW_PARAMS = tuple(p for g in BreastGPTForConditionalGeneration.module_groups if g not in QWEN3VL_MODULE_GROUPS
                   for p in g.prefixes())
_SHAPE_FIELDS = {
    "text_config": ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                    "num_key_value_heads", "head_dim"),
    "vision_config": ("depth", "hidden_size", "intermediate_size", "num_heads", "out_hidden_size",
                      "deepstack_visual_indexes"),
}


@dataclass(frozen=True)
class InitResult:
    out_dir: Path
    histo_token_id: int
    vocab_size: int
    vocab_size_kept: bool
    parameters: int
    slide_parameters: int


def _read_base_config(base: Path) -> dict[str, Any]:
    path = base / "config.json"
    if not path.is_file():
        raise CheckpointError(f"{path}: not found; --base must be a local Qwen3-VL checkpoint folder")
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path}: not valid JSON ({exc}); re-download the checkpoint") from exc
    if cfg.get("model_type") != "qwen3_vl":
        raise CheckpointError(
            f"{path}: model_type is {cfg.get('model_type')!r}, expected 'qwen3_vl' (Qwen3-VL-4B/8B-Instruct)"
        )
    if not any(base.glob("*.safetensors")):
        raise CheckpointError(f"{base}: no *.safetensors weights; only safetensors checkpoints are loaded")
    return cfg


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, (list, tuple)) else value


def _check_size(base_cfg: BreastGPTConfig, size: str | None, where: Path) -> None:
    if size is None:
        return
    want = published(size)
    for sub, fields in _SHAPE_FIELDS.items():
        for name in fields:
            got, exp = _plain(getattr(getattr(base_cfg, sub), name)), _plain(getattr(getattr(want, sub), name))
            if got != exp:
                raise CheckpointError(
                    f"{where}/config.json: {sub}.{name}={got} but the {size} flavour has {exp}; pass the right --size"
                )


def _breastgpt_config(base_cfg: dict[str, Any], histo_id: int, vocab_size: int, overrides: dict[str, Any]) -> BreastGPTConfig:
    text = dict(base_cfg["text_config"])
    text["vocab_size"] = vocab_size
    vision = dict(base_cfg["vision_config"])
    vision["model_type"] = "qwen3_vl_vision"
    keep = ("image_token_id", "video_token_id", "vision_start_token_id", "vision_end_token_id", "tie_word_embeddings")
    kwargs = {k: base_cfg[k] for k in keep if k in base_cfg}
    kwargs.update(text_config=text, vision_config=vision, histo_token_id=histo_id, **overrides)
    return BreastGPTConfig(**kwargs)


def _add_histo_token(tokenizer, vocab_size: int) -> tuple[int, int]:
    if HISTO_TOKEN not in tokenizer.get_vocab():
        tokenizer.add_special_tokens({"additional_special_tokens": [HISTO_TOKEN]}, replace_extra_special_tokens=False)
    histo_id = tokenizer.convert_tokens_to_ids(HISTO_TOKEN)
    return histo_id, max(vocab_size, histo_id + 1)


@torch.no_grad()
def _init_histo_rows(model: BreastGPTForConditionalGeneration, histo_id: int) -> None:
    src = model.config.image_token_id
    emb = model.get_input_embeddings().weight
    emb[histo_id] = emb[src]
    head = model.get_output_embeddings().weight
    if head.data_ptr() != emb.data_ptr():
        head[histo_id] = head[src]


def _load_model(base: Path, config: BreastGPTConfig, seed: int) -> BreastGPTForConditionalGeneration:
    torch.manual_seed(seed)
    model, info = BreastGPTForConditionalGeneration.from_pretrained(
        base, config=config, local_files_only=True, output_loading_info=True, dtype="auto",
        ignore_mismatched_sizes=False,
    )
    missing = [k for k in info["missing_keys"] if not k.startswith(NEW_PARAMS)]
    if missing or info["unexpected_keys"] or info.get("mismatched_keys"):
        raise CheckpointError(
            f"{base}: weights do not match Qwen3-VL's layout (missing {missing[:5]}, unexpected "
            f"{sorted(info['unexpected_keys'])[:5]}, mismatched {list(info.get('mismatched_keys') or [])[:5]}); "
            "is this a Qwen3-VL-Instruct checkpoint?"
        )
    return model


def init_checkpoint(
    base: Path,
    out: Path,
    size: str | None = None,
    seed: int = 0,
    overwrite: bool = False,
    progress: Callable[[str], None] = lambda msg: None,
    config_overrides: dict[str, Any] | None = None,
) -> InitResult:
    """Create a BreastGPT checkpoint at ``out`` from the Qwen3-VL checkpoint at ``base``."""
    from transformers import AutoProcessor

    base, out = Path(base), Path(out)
    if out.exists() and not overwrite:
        raise CheckpointError(f"{out}: already exists; choose a new --out or pass --overwrite")
    base_json = _read_base_config(base)
    progress("hashing base checkpoint")
    inputs = hash_tree(base)
    qwen_proc = AutoProcessor.from_pretrained(base, local_files_only=True)
    histo_id, vocab_size = _add_histo_token(qwen_proc.tokenizer, int(base_json["text_config"]["vocab_size"]))
    config = _breastgpt_config(base_json, histo_id, int(base_json["text_config"]["vocab_size"]),
                               config_overrides or {})
    _check_size(config, size, base)
    progress("loading Qwen3-VL weights into BreastGPT")
    model = _load_model(base, config, seed)
    if vocab_size != config.text_config.vocab_size:  # no spare row: grow by one
        model.resize_token_embeddings(vocab_size)
    _init_histo_rows(model, histo_id)
    processor = BreastGPTProcessor(
        image_processor=qwen_proc.image_processor, tokenizer=qwen_proc.tokenizer,
        video_processor=qwen_proc.video_processor, chat_template=qwen_proc.chat_template,
        image_budget=config.selection.image_budget, volume_budget=config.selection.volume_budget,
        slide_budget=config.selection.slide_budget, slide_feature_dim=config.slide.feature_dim,
    )
    progress("writing checkpoint")
    with atomic_dir(out, overwrite=overwrite) as tmp:
        _save(tmp, model, processor, inputs, base, seed)
    n_slide = sum(p.numel() for n, p in model.named_parameters() if n.startswith("model.slide_"))
    return InitResult(out, histo_id, model.config.text_config.vocab_size,
                      vocab_size == int(base_json["text_config"]["vocab_size"]),
                      sum(p.numel() for p in model.parameters()), n_slide)


def _save(tmp: Path, model, processor, inputs: dict[str, str], base: Path, seed: int) -> None:
    model.save_pretrained(tmp)
    processor.save_pretrained(tmp)
    Manifest.of_folder(tmp, kind="breastgpt-checkpoint", base={"path": str(base.resolve()), "files": inputs},
                       seed=seed, histo_token_id=model.config.histo_token_id,
                       config=model.config.to_dict()).write(tmp / MANIFEST)


__all__ = ["CheckpointError", "InitResult", "init_checkpoint"]
