"""Named model flavours: ``tiny`` (tests; builds in milliseconds), ``demo`` (`breastgpt demo`: trains on a laptop
CPU in minutes), ``4b`` and ``8b`` (published shapes).

The 4B/8B shapes are Qwen3-VL-4B/8B-Instruct's published ``config.json`` values (SPEC §3.1); the slide
branch and selection take this package's defaults. ``tiny`` comes with a byte-level tokenizer that holds
Qwen's special tokens, so a whole chain (processor -> model -> generate) runs offline with no hub files.
``demo`` pairs with a small BPE tokenizer trained on the corpus text (``demo_tokenizer``): with one token per
byte a small LLM spends its capacity on spelling option words, with merges it need not
(docs/notes/2026-12-demo-research.md).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from breastgpt.model.configuration import HISTO_TOKEN, BreastGPTConfig

# Qwen's special tokens in Qwen's order (ids 151643.. in the real vocabulary).
QWEN_SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)
QWEN_FIRST_SPECIAL_ID = 151643
QWEN_VOCAB_SIZE = 151936
# Qwen's tokenizer holds 151669 entries (ids 0..151668); the embedding has 151936 rows, so the first
# added token, <|histo_pad|>, lands on a spare row and the embedding keeps its size.
QWEN_HISTO_ID = 151669

TINY_BYTE_TOKENS = 256
TINY_VOCAB_SIZE = 320  # spare rows past the tokenizer, like Qwen's


def _qwen_ids(first: int) -> dict[str, int]:
    names = {t: first + i for i, t in enumerate(QWEN_SPECIAL_TOKENS)}
    return {
        "vision_start_token_id": names["<|vision_start|>"],
        "vision_end_token_id": names["<|vision_end|>"],
        "image_token_id": names["<|image_pad|>"],
        "video_token_id": names["<|video_pad|>"],
    }


def _rope(theta: float, section: list[int]) -> dict[str, Any]:
    return {"rope_type": "default", "rope_theta": theta, "mrope_section": section, "mrope_interleaved": True}


def tiny(**overrides: Any) -> BreastGPTConfig:
    """< 1 M parameters, selection budgets 8/12/16; token ids match ``tiny_tokenizer()``."""
    ids = _qwen_ids(TINY_BYTE_TOKENS)
    kwargs: dict[str, Any] = dict(
        text_config=dict(
            vocab_size=TINY_VOCAB_SIZE,
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=3,  # > the 2 DeepStack taps: set j is added after layer j (configuration.py)
            num_attention_heads=4,
            num_key_value_heads=2,
            head_dim=16,
            max_position_embeddings=4096,
            rope_parameters=_rope(5_000_000.0, [2, 3, 3]),
            pad_token_id=TINY_BYTE_TOKENS,
        ),
        vision_config=dict(
            depth=2,
            hidden_size=32,
            intermediate_size=64,
            num_heads=2,
            out_hidden_size=64,
            num_position_embeddings=64,
            deepstack_visual_indexes=[0, 1],
        ),
        slide_config=dict(
            feature_dim=16,
            encoder_id="synthetic",
            positional=True,
            longnet=dict(width=32, depth=2, heads=2, ffn=64, segments=[[4, 1], [8, 2]], input_dim=16,
                         positional="sincos2d"),
        ),
        # small budgets keep tests fast while still exercising selection (inputs larger than k)
        selection_config=dict(image_budget=8, volume_budget=12, slide_budget=16),
        histo_token_id=TINY_BYTE_TOKENS + len(QWEN_SPECIAL_TOKENS),
        tie_word_embeddings=False,
        **ids,
    )
    kwargs.update(overrides)
    return BreastGPTConfig(**kwargs)


DEMO_VOCAB_SIZE = 1024
DEMO_FEATURE_DIM = 86  # the `stain-texture-v1` tile encoder (no weights to download)


def demo(**overrides: Any) -> BreastGPTConfig:
    """~1.0 M parameters: LLM 2 x 128, ViT 2 x 64, LongNet 1 x 64; ids match ``demo_tokenizer()`` (specials first).

    RoPE base 10,000, not Qwen3-VL's 5,000,000: with 32-dimensional heads that base leaves only the first few
    frequency pairs turning over a few hundred tokens, so a model trained from scratch can hardly tell the latest
    question of a conversation from earlier ones, nor the token after an option label from any other (copying an
    option needs that). Trained `breastgpt demo` models with the published base answered one yes/no template
    with another template's majority answer even on their training images (docs/notes/2026-12-demo-research.md).
    """
    kwargs: dict[str, Any] = dict(
        text_config=dict(
            vocab_size=DEMO_VOCAB_SIZE, hidden_size=128, intermediate_size=256, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, head_dim=32, max_position_embeddings=4096,
            rope_parameters=_rope(10_000.0, [4, 6, 6]), pad_token_id=0,
        ),
        # One DeepStack tap (and so one LongNet layer): Qwen3-VL adds set j after LLM layer j, and a second set
        # after the last of 2 layers never reached the output (its merger and projector stayed at their init).
        vision_config=dict(depth=2, hidden_size=64, intermediate_size=128, num_heads=2, out_hidden_size=128,
                           num_position_embeddings=64, deepstack_visual_indexes=[0]),
        slide_config=dict(
            feature_dim=DEMO_FEATURE_DIM, encoder_id="stain-texture-v1", positional=True,
            longnet=dict(width=64, depth=1, heads=2, ffn=128, segments=[[64, 1], [128, 2]],
                         input_dim=DEMO_FEATURE_DIM, positional="sincos2d"),
        ),
        selection_config=dict(image_budget=16, volume_budget=32, slide_budget=8),
        histo_token_id=len(QWEN_SPECIAL_TOKENS),
        tie_word_embeddings=False,
        **_qwen_ids(0),
    )
    kwargs.update(overrides)
    return BreastGPTConfig(**kwargs)


def demo_tokenizer(texts: Iterable[str], vocab_size: int = DEMO_VOCAB_SIZE):
    """A byte-level BPE tokenizer trained on ``texts``, Qwen's special tokens and ``<|histo_pad|>`` at ids 0..14.

    Training is deterministic for the same texts in the same order, so a demo re-run rebuilds the same
    tokenizer. Any text still encodes (the 256 byte symbols are in the alphabet).
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = [*QWEN_SPECIAL_TOKENS, HISTO_TOKEN]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, clean_up_tokenization_spaces=False)
    fast.add_special_tokens({"additional_special_tokens": specials})
    fast.pad_token, fast.eos_token = "<|endoftext|>", "<|im_end|>"
    if len(fast) > vocab_size:
        raise ValueError(f"the trained tokenizer holds {len(fast)} entries, more than the {vocab_size} embedding rows")
    return fast


def _published(size: str) -> dict[str, Any]:
    if size == "8b":
        text = dict(hidden_size=4096, intermediate_size=12288)
        vision = dict(depth=27, hidden_size=1152, intermediate_size=4304, out_hidden_size=4096,
                      deepstack_visual_indexes=[8, 16, 24])
        tie = False
    elif size == "4b":
        text = dict(hidden_size=2560, intermediate_size=9728)
        vision = dict(depth=24, hidden_size=1024, intermediate_size=4096, out_hidden_size=2560,
                      deepstack_visual_indexes=[5, 11, 17])
        tie = True
    else:
        raise ValueError(f"unknown flavour {size!r}; choose one of {sorted(FLAVOURS)}")
    text.update(vocab_size=QWEN_VOCAB_SIZE, num_hidden_layers=36, num_attention_heads=32, num_key_value_heads=8,
                head_dim=128, max_position_embeddings=262144, rms_norm_eps=1e-6,
                rope_parameters=_rope(5_000_000.0, [24, 20, 20]))
    vision.update(num_heads=16, patch_size=16, temporal_patch_size=2, spatial_merge_size=2,
                  num_position_embeddings=2304, hidden_act="gelu_pytorch_tanh")
    return dict(text_config=text, vision_config=vision, tie_word_embeddings=tie, histo_token_id=QWEN_HISTO_ID,
                **_qwen_ids(QWEN_FIRST_SPECIAL_ID))


def published(size: str, **overrides: Any) -> BreastGPTConfig:
    """The 4B or 8B configuration (Qwen3-VL-{4B,8B}-Instruct backbone + default slide branch)."""
    kwargs = _published(size)
    kwargs.update(overrides)
    return BreastGPTConfig(**kwargs)


FLAVOURS = {"tiny": tiny, "demo": demo, "4b": lambda **kw: published("4b", **kw), "8b": lambda **kw: published("8b", **kw)}


def build_config(name: str, **overrides: Any) -> BreastGPTConfig:
    if name not in FLAVOURS:
        raise ValueError(f"unknown flavour {name!r}; choose one of {sorted(FLAVOURS)}")
    return FLAVOURS[name](**overrides)


def tiny_tokenizer(with_histo: bool = True):
    """Byte-level tokenizer (no merges) with Qwen's special tokens at ids 256.. (and ``<|histo_pad|>``).

    Any text encodes (one token per UTF-8 byte), so it stands in for Qwen's tokenizer offline.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {ch: i for i, ch in enumerate(alphabet)}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    specials = list(QWEN_SPECIAL_TOKENS) + ([HISTO_TOKEN] if with_histo else [])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, clean_up_tokenization_spaces=False)
    fast.add_special_tokens({"additional_special_tokens": specials})
    fast.pad_token = "<|endoftext|>"
    fast.eos_token = "<|im_end|>"
    return fast


def tiny_processor(**kwargs: Any):
    """A BreastGPTProcessor over ``tiny_tokenizer()`` and Qwen3-VL's image/video processors."""
    from breastgpt.model.processing import BreastGPTProcessor, qwen_image_processor, qwen_video_processor

    sel, slide = tiny().selection, tiny().slide
    kwargs.setdefault("image_min_pixels", 64 * 64)
    kwargs.setdefault("image_budget", sel.image_budget)
    kwargs.setdefault("volume_budget", sel.volume_budget)
    kwargs.setdefault("slide_budget", sel.slide_budget)
    kwargs.setdefault("slide_feature_dim", slide.feature_dim)
    return BreastGPTProcessor(
        image_processor=qwen_image_processor(),
        tokenizer=tiny_tokenizer(),
        video_processor=qwen_video_processor(),
        **kwargs,
    )


__all__ = [
    "DEMO_VOCAB_SIZE",
    "FLAVOURS",
    "QWEN_HISTO_ID",
    "QWEN_SPECIAL_TOKENS",
    "build_config",
    "demo",
    "demo_tokenizer",
    "published",
    "tiny",
    "tiny_processor",
    "tiny_tokenizer",
]
