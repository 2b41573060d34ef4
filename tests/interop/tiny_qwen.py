"""A tiny random BreastGPT checkpoint with Qwen's token-id layout (special tokens at 151643.., a 151,936-row
embedding), for tools that hard-code Qwen's ids (ms-swift's `qwen3_vl` template expands `<|image_pad|>` =
151655 and `<|video_pad|>` = 151656). The byte-level vocabulary of `tiny_tokenizer` fills ids 0..255; unused
filler entries (never produced: the tokenizer has no merges) fill the rest up to Qwen's first special id."""

from __future__ import annotations

from pathlib import Path

import torch


def qwen_id_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from breastgpt.model.configuration import HISTO_TOKEN
    from breastgpt.model.flavours import QWEN_FIRST_SPECIAL_ID, QWEN_SPECIAL_TOKENS

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {ch: i for i, ch in enumerate(alphabet)}
    vocab.update({f"<|filler_{i}|>": i for i in range(len(alphabet), QWEN_FIRST_SPECIAL_ID)})
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, clean_up_tokenization_spaces=False)
    fast.add_special_tokens({"additional_special_tokens": [*QWEN_SPECIAL_TOKENS, HISTO_TOKEN]})
    fast.pad_token, fast.eos_token = "<|endoftext|>", "<|im_end|>"
    assert fast.convert_tokens_to_ids("<|image_pad|>") == 151655
    return fast


def save_qwen_id_checkpoint(folder: Path) -> Path:
    from breastgpt.model import BreastGPTForConditionalGeneration
    from breastgpt.model.configuration import HISTO_TOKEN
    from breastgpt.model.flavours import QWEN_FIRST_SPECIAL_ID, QWEN_VOCAB_SIZE, tiny
    from breastgpt.model.processing import BreastGPTProcessor, qwen_image_processor, qwen_video_processor

    tokenizer = qwen_id_tokenizer()
    config = tiny()
    config.text_config.vocab_size = QWEN_VOCAB_SIZE
    config.text_config.pad_token_id = QWEN_FIRST_SPECIAL_ID
    config.vision_start_token_id, config.vision_end_token_id = 151652, 151653
    config.image_token_id, config.video_token_id = 151655, 151656
    config.histo_token_id = tokenizer.convert_tokens_to_ids(HISTO_TOKEN)
    torch.manual_seed(0)
    BreastGPTForConditionalGeneration(config).save_pretrained(folder)
    BreastGPTProcessor(image_processor=qwen_image_processor(), tokenizer=tokenizer,
                       video_processor=qwen_video_processor(), image_min_pixels=64 * 64,
                       image_budget=config.selection.image_budget, volume_budget=config.selection.volume_budget,
                       slide_budget=config.selection.slide_budget,
                       slide_feature_dim=config.slide.feature_dim).save_pretrained(folder)
    return folder
