"""BreastGPT on transformers' Qwen3-VL: routing, token selection, the slide branch and positions.

We extend Qwen3-VL rather than fork it. What is overridden is only how visual embeddings are computed,
thinned and scattered into the prompt, and how (t, h, w) positions are assigned; the ViT, the LLM, the
DeepStack injection and the generation loop are transformers' own.

Routing (SPEC §3.2) is by input, never by a learned gate: ``pixel_values`` (+ ``image_grid_thw``) are 2-D
images, ``pixel_values_videos`` (+ ``video_grid_thw``) are 3-D volumes whose slices are frames, and
``slide_features`` (+ ``slide_grid``, ``slide_mask``) are whole slides as tile features.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn
from transformers.modeling_outputs import BaseModelOutputWithPast, CausalLMOutputWithPast
from transformers.modeling_utils import slice_logits_to_keep
from transformers.models.qwen3_vl.modeling_qwen3_vl import (
    Qwen3VLForConditionalGeneration,
    Qwen3VLModel,
    Qwen3VLPreTrainedModel,
)

from breastgpt.model.configuration import BreastGPTConfig, SelectionConfig
from breastgpt.model.encoder_memo import EncoderMemoError, content_key, trainable_encoder_params
from breastgpt.model.learnable_selection import LearnableConceptSelector
from breastgpt.model.longnet import LongNetEncoder
from breastgpt.model.module_groups import QWEN3VL_MODULE_GROUPS, ModuleGroup
from breastgpt.model.positions import (
    PlaceholderMismatchError,
    VisualBlock,
    check_runs,
    decode_positions,
    placeholder_runs,
    prefill_positions,
)
from breastgpt.model.selection import select_concepts, straight_through_select

KINDS = ("image", "video", "slide")
_TOKEN_NAMES = {"image": "<|image_pad|>", "video": "<|video_pad|>", "slide": "<|histo_pad|>"}
_WHAT = {"image": "image", "video": "volume frame", "slide": "slide"}


def volume_frame_budgets(num_frames: int, tokens_per_frame: int, budget: int) -> list[int]:
    """Tokens kept per frame of one volume: min(L, budget) in all, split as evenly as possible.

    Qwen3-VL wraps every frame in its own timing text and vision start/end tokens, so the number of
    placeholders per frame must be known when the prompt is written, before selection has run. We
    therefore give each frame a fixed quota (earlier frames take the remainder) and select inside it.
    Every frame keeps at least one token: a frame wrapped in start/end tokens with nothing between them would be
    a block the model cannot place, so a budget below the frame count is raised to the frame count (never
    reached with the published budget of 128 and ≤ 24 frame groups).
    """
    if num_frames * tokens_per_frame <= budget:
        return [tokens_per_frame] * num_frames
    budget = max(budget, num_frames)
    base, extra = divmod(budget, num_frames)
    return [min(tokens_per_frame, base + (1 if f < extra else 0)) for f in range(num_frames)]


@dataclass
class Candidate:
    """One visual block before selection: its main tokens, its DeepStack rows and its grid."""

    main: torch.Tensor  # [L, D] tokens of LLM width
    deepstack: Callable[[torch.Tensor | None], list[torch.Tensor]]  # rows for given indices (None: all)
    rows: torch.Tensor  # [L] grid row of each token
    cols: torch.Tensor  # [L] grid column of each token
    budget: int


@dataclass
class BreastGPTModelOutput(BaseModelOutputWithPast):
    """The language model's output, plus the learnable selection's coverage regulariser (None without it)."""

    selection_loss: torch.FloatTensor | None = None


@dataclass
class BreastGPTCausalLMOutput(CausalLMOutputWithPast):
    """``loss`` includes ``selection_loss`` (the learnable ablation's regulariser) when there are labels."""

    selection_loss: torch.FloatTensor | None = None


@dataclass
class Kept:
    """One visual block after selection."""

    main: torch.Tensor
    deepstack: list[torch.Tensor]
    block: VisualBlock


def _grid_candidates(
    main: torch.Tensor, deepstack: list[torch.Tensor], frames: int, h: int, w: int, budgets: list[int]
) -> list[Candidate]:
    per_frame = h * w
    rows = torch.arange(h, device=main.device).repeat_interleave(w)
    cols = torch.arange(w, device=main.device).repeat(h)
    cands = []
    for f in range(frames):
        sl = slice(f * per_frame, (f + 1) * per_frame)
        ds = [d[sl] for d in deepstack]
        cands.append(
            Candidate(main[sl], lambda idx, ds=ds: [d if idx is None else d[idx] for d in ds], rows, cols, budgets[f])
        )
    return cands


class BreastGPTModel(Qwen3VLModel):
    """Qwen3-VL backbone + LongNet slide branch + concept-preserving token selection."""

    # Visual tokens per medium while the encoders are frozen (`breastgpt.model.encoder_memo`); None: off.
    encoder_memo = None

    config_class = BreastGPTConfig
    config: BreastGPTConfig

    def __init__(self, config: BreastGPTConfig):
        super().__init__(config)
        slide = config.slide
        width = config.text_config.hidden_size
        self.slide_encoder = LongNetEncoder(slide.longnet)
        self.slide_projector = nn.Linear(slide.longnet.width, width)
        self.slide_deepstack_projectors = nn.ModuleList(
            nn.Linear(slide.longnet.width, width) for _ in range(slide.longnet.depth)
        )
        sel = config.selection
        # The learnable ablation (SPEC §3.5): one concept-query selector per visual kind, on tokens of LLM width.
        self.concept_selectors = nn.ModuleDict({
            kind: LearnableConceptSelector(width, sel.learnable_concepts, gumbel_temperature=sel.gumbel_temperature,
                                           coverage_weight=sel.learnable_coverage_weight)
            for kind in KINDS
        }) if sel.learnable else None
        self._selection_losses: list[torch.Tensor] = []
        self.post_init()

    # ---- encoders -------------------------------------------------------------------------------

    def _merge(self) -> int:
        return int(self.config.vision_config.spatial_merge_size)

    def image_candidates(self, pixel_values: torch.Tensor, image_grid_thw: torch.Tensor) -> list[Candidate]:
        out = self.get_image_features(pixel_values, image_grid_thw, return_dict=True)
        k = self.config.selection.image_budget
        cands: list[Candidate] = []
        for i, (t, h, w) in enumerate(image_grid_thw.tolist()):
            h, w = h // self._merge(), w // self._merge()
            ds = [layer[i] for layer in out.deepstack_features]
            cands += _grid_candidates(out.pooler_output[i], ds, 1, h, w, [min(k, h * w)])
        return cands

    def video_candidates(self, pixel_values_videos: torch.Tensor, video_grid_thw: torch.Tensor) -> list[Candidate]:
        out = self.get_video_features(pixel_values_videos, video_grid_thw, return_dict=True)
        k = self.config.selection.volume_budget
        cands: list[Candidate] = []
        for i, (t, h, w) in enumerate(video_grid_thw.tolist()):
            h, w = h // self._merge(), w // self._merge()
            ds = [layer[i] for layer in out.deepstack_features]
            cands += _grid_candidates(out.pooler_output[i], ds, t, h, w, volume_frame_budgets(t, h * w, k))
        return cands

    def slide_candidates(
        self, slide_features: torch.Tensor, slide_grid: torch.Tensor, slide_mask: torch.Tensor | None
    ) -> list[Candidate]:
        """Tile features ``[S, N, F]`` + tile grid ``[S, N, 2]`` (col, row) -> one candidate per slide."""
        if slide_features.ndim != 3 or slide_grid.shape[:2] != slide_features.shape[:2]:
            raise ValueError(
                f"slide_features must be [S, N, F] with slide_grid [S, N, 2]; got {tuple(slide_features.shape)} "
                f"and {tuple(slide_grid.shape)}. Batch slides with BreastGPTProcessor.pad_batch."
            )
        if slide_mask is None:
            slide_mask = torch.ones(slide_features.shape[:2], dtype=torch.bool, device=slide_features.device)
        slide_mask = slide_mask.bool()
        dtype = self.slide_projector.weight.dtype
        layers = self.slide_encoder(slide_features.to(dtype), slide_grid.to(dtype), slide_mask)
        k = self.config.selection.slide_budget
        cands = []
        for s in range(slide_features.shape[0]):
            real = slide_mask[s]
            per_layer = [layer[s][real] for layer in layers]
            grid = slide_grid[s][real].long()
            grid = grid - grid.min(dim=0).values if grid.numel() else grid
            main = self.slide_projector(per_layer[-1])

            def deepstack(idx, per_layer=per_layer):
                return [proj(h if idx is None else h[idx]) for proj, h in zip(self.slide_deepstack_projectors, per_layer)]

            cands.append(Candidate(main, deepstack, grid[:, 1], grid[:, 0], min(k, main.shape[0])))
        return cands

    # ---- selection ------------------------------------------------------------------------------

    def select(self, cand: Candidate, kind: str, text_tokens: torch.Tensor | None) -> Kept:
        if self.concept_selectors is not None:
            return self._select_learned(cand, kind)
        sel = self.config.selection
        idx = self._select_indices(cand.main, cand.budget, text_tokens, sel)
        if self.training and torch.is_grad_enabled():
            main = straight_through_select(cand.main, idx, soft_temperature=sel.soft_temperature)
        else:
            main = cand.main[idx]
        if sel.deepstack_reuse_main_indices:
            deepstack = cand.deepstack(idx)
        else:  # the reference's behaviour: every DeepStack set picks its own tokens
            deepstack = [d[self._select_indices(d, cand.budget, text_tokens, sel)] for d in cand.deepstack(None)]
        return Kept(main, deepstack, VisualBlock(kind, cand.rows[idx], cand.cols[idx]))

    def _select_learned(self, cand: Candidate, kind: str) -> Kept:
        """The learnable ablation: value exactly V[idx] (the gate is 1.0), the scorer learns through the gate."""
        out = self.concept_selectors[kind](cand.main, cand.budget)
        self._selection_losses.append(out.aux_loss)
        idx = out.indices
        return Kept(cand.main[idx] * out.gate[:, None], cand.deepstack(idx),
                    VisualBlock(kind, cand.rows[idx], cand.cols[idx]))

    @staticmethod
    def _select_indices(
        tokens: torch.Tensor, budget: int, text_tokens: torch.Tensor | None, sel: SelectionConfig
    ) -> torch.Tensor:
        return select_concepts(
            tokens.detach(),
            budget,
            temperature=sel.temperature,
            text_tokens=None if text_tokens is None else text_tokens.detach(),
            text_temperature=sel.text_temperature,
            coverage_weight=sel.coverage_weight,
            chunk_size=sel.chunk_size,
        ).to(tokens.device)

    def prompt_mask(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, labels: torch.Tensor | None
    ) -> torch.Tensor:
        """Tokens that may condition selection: the prompt only, never answer tokens (SPEC §3.5 step 4).

        With labels, everything from the first supervised token on is excluded, so neither the answer
        nor any later turn can leak into which visual tokens are kept.
        """
        mask = torch.ones_like(input_ids, dtype=torch.bool) if attention_mask is None else attention_mask.bool()
        for tid in (*self.token_ids().values(), self.config.vision_start_token_id, self.config.vision_end_token_id):
            mask &= input_ids != tid
        if labels is not None:
            supervised = labels != -100
            first = torch.where(supervised.any(-1), supervised.int().argmax(-1), labels.shape[-1])
            mask &= torch.arange(labels.shape[-1], device=labels.device)[None, :] < first[:, None]
        return mask

    def token_ids(self) -> dict[str, int]:
        c = self.config
        return {"image": c.image_token_id, "video": c.video_token_id, "slide": c.histo_token_id}

    # ---- assembling the sequence ----------------------------------------------------------------

    def visual_blocks(
        self,
        input_ids: torch.Tensor,
        inputs_embeds: torch.Tensor,
        cands: dict[str, list[Candidate]],
        prompt: torch.Tensor | None,
    ) -> dict[str, list[Kept]]:
        kept: dict[str, list[Kept]] = {}
        for kind, clist in cands.items():
            runs = self._runs(input_ids, kind, len(clist))
            kept[kind] = []
            for run, cand in zip(runs, clist):
                text = None if prompt is None else inputs_embeds[run.batch][prompt[run.batch]]
                kept[kind].append(self.select(cand, kind, text))
            check_runs(runs, [k.block for k in kept[kind]], _TOKEN_NAMES[kind], _WHAT[kind])
        return kept

    def _runs(self, input_ids: torch.Tensor, kind: str, blocks: int) -> list:
        runs = placeholder_runs(input_ids, self.token_ids()[kind])
        if len(runs) != blocks:
            raise_count_mismatch(kind, len(runs), blocks)
        return runs

    # ---- frozen encoders: visual tokens once per medium (breastgpt.model.encoder_memo) ----------------

    @torch.no_grad()
    def memoised_blocks(
        self, pixel_values, image_grid_thw, pixel_values_videos, video_grid_thw, slide_features, slide_grid, slide_mask
    ) -> dict[str, list[Kept]]:
        """What `candidates` + `select` give, from ``encoder_memo`` where the medium was seen before."""
        trainable = trainable_encoder_params(self, self.encoder_memo.encoder_prefixes)
        if self.concept_selectors is not None:
            raise EncoderMemoError("encoder_memo is set but selection is learnable (selection.learnable=true): its "
                                   "picks change as it trains and with its Gumbel noise, so they cannot be memoised.")
        if trainable:
            raise EncoderMemoError(
                f"encoder_memo is set but {len(trainable)} encoder parameter(s) train (e.g. {trainable[0]}): "
                "memoised visual tokens would go stale. Call breastgpt.model.encoder_memo.disable_encoder_memo first."
            )
        kept: dict[str, list[Kept]] = {}
        if pixel_values is not None:
            _require(image_grid_thw, "image_grid_thw", "pixel_values")
            chunks = pixel_values.split(image_grid_thw.prod(-1).tolist())
            keys = [content_key("image", c, g) for c, g in zip(chunks, image_grid_thw)]
            kept["image"] = self._from_memo(keys, lambda miss: [[c] for c in self.image_candidates(
                torch.cat([chunks[i] for i in miss]), image_grid_thw[miss])], "image")
        if pixel_values_videos is not None:
            _require(video_grid_thw, "video_grid_thw", "pixel_values_videos")
            chunks = pixel_values_videos.split(video_grid_thw.prod(-1).tolist())
            keys = [content_key("video", c, g) for c, g in zip(chunks, video_grid_thw)]

            def volumes(miss: list[int]) -> list[list[Candidate]]:
                frames = self.video_candidates(torch.cat([chunks[i] for i in miss]), video_grid_thw[miss])
                counts = [int(video_grid_thw[i][0]) for i in miss]
                starts = [sum(counts[:j]) for j in range(len(counts))]
                return [frames[a:a + n] for a, n in zip(starts, counts)]

            kept["video"] = self._from_memo(keys, volumes, "video")
        if slide_features is not None:
            _require(slide_grid, "slide_grid", "slide_features")
            mask = (torch.ones(slide_features.shape[:2], dtype=torch.bool, device=slide_features.device)
                    if slide_mask is None else slide_mask.bool())
            keys = [content_key("slide", f[m], g[m]) for f, g, m in zip(slide_features, slide_grid, mask)]
            kept["slide"] = self._from_memo(keys, lambda miss: [[c] for c in self.slide_candidates(
                slide_features[miss], slide_grid[miss], mask[miss])], "slide")
        return kept

    def _from_memo(self, keys: list[tuple], compute: Callable[[list[int]], list[list[Candidate]]],
                   kind: str) -> list[Kept]:
        found = [self.encoder_memo.get(k) for k in keys]
        miss = [i for i, f in enumerate(found) if f is None]
        if miss:
            for i, cands in zip(miss, compute(miss)):
                found[i] = [self.select(c, kind, None) for c in cands]
                self.encoder_memo.put(keys[i], found[i])
        return [k for blocks in found for k in blocks]

    def scatter(
        self, input_ids: torch.Tensor, inputs_embeds: torch.Tensor, kept: dict[str, list[Kept]]
    ) -> tuple[torch.Tensor, torch.Tensor | None, list[torch.Tensor] | None]:
        """Put kept tokens on their placeholders; build the DeepStack sets in sequence order."""
        masks = {kind: input_ids == self.token_ids()[kind] for kind in kept}
        for kind, items in kept.items():
            feats = torch.cat([k.main for k in items]).to(inputs_embeds.device, inputs_embeds.dtype)
            inputs_embeds = inputs_embeds.masked_scatter(masks[kind].unsqueeze(-1), feats)
        if not kept:
            return inputs_embeds, None, None
        visual = torch.stack(list(masks.values())).any(0)
        n_sets = len(next(iter(kept.values()))[0].deepstack)
        sets = []
        for j in range(n_sets):
            joint = inputs_embeds.new_zeros(int(visual.sum()), inputs_embeds.shape[-1])
            for kind, items in kept.items():
                joint[masks[kind][visual]] = torch.cat([k.deepstack[j] for k in items]).to(joint.dtype)
            sets.append(joint)
        return inputs_embeds, visual, sets

    def positions(
        self,
        input_ids: torch.Tensor | None,
        inputs_embeds: torch.Tensor,
        attention_mask: torch.Tensor | None,
        past_key_values,
        kept: dict[str, list[Kept]],
    ) -> torch.Tensor | None:
        past_len = 0 if past_key_values is None else past_key_values.get_seq_length()
        if past_len == 0 or self.rope_deltas is None:
            if input_ids is None:
                self.rope_deltas = None
                return None  # text-only embeddings: the LLM's default 1-D positions are right
            blocks = {kind: [k.block for k in items] for kind, items in kept.items()}
            pos, self.rope_deltas = prefill_positions(
                input_ids, attention_mask, {k: self.token_ids()[k] for k in blocks}, blocks
            )
            return pos
        bsz, seq = inputs_embeds.shape[:2]
        return decode_positions(attention_mask, seq, past_len, bsz, self.rope_deltas, inputs_embeds.device)

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        past_key_values=None,
        inputs_embeds: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        pixel_values_videos: torch.Tensor | None = None,
        image_grid_thw: torch.LongTensor | None = None,
        video_grid_thw: torch.LongTensor | None = None,
        slide_features: torch.Tensor | None = None,
        slide_grid: torch.Tensor | None = None,
        slide_mask: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        mm_token_type_ids: torch.Tensor | None = None,
        **kwargs,
    ) -> BaseModelOutputWithPast:
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("BreastGPTModel: pass exactly one of input_ids or inputs_embeds")
        media = (pixel_values, image_grid_thw, pixel_values_videos, video_grid_thw, slide_features, slide_grid,
                 slide_mask)
        self._selection_losses = []
        memo = self.encoder_memo is not None and not self._text_conditioning()
        found = self.memoised_blocks(*media) if memo else self.candidates(*media)
        if found and input_ids is None:
            raise ValueError("BreastGPTModel: visual inputs need input_ids (placeholders locate the visual tokens)")
        if inputs_embeds is None:
            inputs_embeds = self.get_input_embeddings()(input_ids)
        kept: dict[str, list[Kept]] = {}
        visual_mask, deepstack = None, None
        if found and memo:
            kept = found
            for kind, items in kept.items():
                check_runs(self._runs(input_ids, kind, len(items)), [k.block for k in items], _TOKEN_NAMES[kind],
                           _WHAT[kind])
        elif found:
            prompt = self.prompt_mask(input_ids, attention_mask, labels) if self._text_conditioning() else None
            kept = self.visual_blocks(input_ids, inputs_embeds, found, prompt)
        if kept:
            inputs_embeds, visual_mask, deepstack = self.scatter(input_ids, inputs_embeds, kept)
        if position_ids is None:
            position_ids = self.positions(input_ids, inputs_embeds, attention_mask, past_key_values, kept)
        out = self.language_model(
            input_ids=None,
            position_ids=position_ids,
            attention_mask=attention_mask,
            past_key_values=past_key_values,
            inputs_embeds=inputs_embeds,
            visual_pos_masks=visual_mask,
            deepstack_visual_embeds=deepstack,
            **kwargs,
        )
        losses, self._selection_losses = self._selection_losses, []
        return BreastGPTModelOutput(
            last_hidden_state=out.last_hidden_state,
            past_key_values=out.past_key_values,
            hidden_states=out.hidden_states,
            attentions=out.attentions,
            # mean over the batch's visual blocks, so the regulariser's weight does not grow with the frame count
            selection_loss=torch.stack(losses).mean() if losses else None,
        )

    def candidates(
        self, pixel_values, image_grid_thw, pixel_values_videos, video_grid_thw, slide_features, slide_grid, slide_mask
    ) -> dict[str, list[Candidate]]:
        cands: dict[str, list[Candidate]] = {}
        if pixel_values is not None:
            _require(image_grid_thw, "image_grid_thw", "pixel_values")
            cands["image"] = self.image_candidates(pixel_values, image_grid_thw)
        if pixel_values_videos is not None:
            _require(video_grid_thw, "video_grid_thw", "pixel_values_videos")
            cands["video"] = self.video_candidates(pixel_values_videos, video_grid_thw)
        if slide_features is not None:
            _require(slide_grid, "slide_grid", "slide_features")
            cands["slide"] = self.slide_candidates(slide_features, slide_grid, slide_mask)
        return cands

    def _text_conditioning(self) -> bool:
        return self.config.selection.text_conditioning


def _require(value, name: str, owner: str) -> None:
    if value is None:
        raise ValueError(f"BreastGPTModel: {owner} was given without {name}; the processor returns both together.")


def raise_count_mismatch(kind: str, runs: int, blocks: int) -> None:
    raise PlaceholderMismatchError(
        f"input_ids hold {runs} run(s) of {_TOKEN_NAMES[kind]} but {blocks} {_WHAT[kind]} block(s) were given; "
        "build the prompt with BreastGPTProcessor so each visual input gets its placeholder run."
    )


def next_token_labels(labels: torch.Tensor) -> torch.Tensor:
    """The label each position predicts (labels shifted left by one, -100 after the last), as causal LM losses use."""
    return nn.functional.pad(labels[..., 1:], (0, 1), value=-100)


def supervised_positions(labels: torch.Tensor) -> torch.Tensor:
    """Boolean (batch, seq) mask of the positions whose next token is supervised: the ``logits_to_keep`` that
    makes the forward compute logits and loss for those positions only (same loss as the full-logits one)."""
    return next_token_labels(labels) != -100


def _is_mask(value) -> bool:
    return isinstance(value, torch.Tensor) and value.ndim == 2 and value.dtype == torch.bool


class BreastGPTForConditionalGeneration(Qwen3VLForConditionalGeneration):
    """Causal LM head over ``BreastGPTModel``; ``generate()`` encodes visual inputs once, at prefill."""

    config_class = BreastGPTConfig
    config: BreastGPTConfig
    # The one list of this model's parts; training's trainable sets derive from it (breastgpt.model.module_groups).
    module_groups: tuple[ModuleGroup, ...] = (
        *QWEN3VL_MODULE_GROUPS,
        ModuleGroup("slide_encoder", ("model.slide_encoder",), encoder=True, warmup=True),  # LongNet
        ModuleGroup("slide_projectors", ("model.slide_projector", "model.slide_deepstack_projectors"), encoder=True,
                    warmup=True),
        # the learnable selection ablation; absent (None) otherwise
        ModuleGroup("concept_selectors", ("model.concept_selectors",), encoder=True, warmup=True),
    )
    _SLIDE_KEYS = ("slide_features", "slide_grid", "slide_mask")
    # With labels and a boolean (batch, seq) ``logits_to_keep`` mask, the loss is taken over the kept positions
    # only (each predicting the next label) and ``logits`` holds just those rows, (n_kept, vocab). Training
    # keeps the supervised positions (`supervised_positions`): answer tokens are a small share of a multimodal
    # conversation, so this skips most of the LM-head product and the log-softmax over the vocabulary (a
    # quarter of a CPU demo step) and never materialises batch x seq x vocab logits (151k-wide for Qwen3-VL).
    loss_on_kept_logits = True

    def __init__(self, config: BreastGPTConfig):
        Qwen3VLPreTrainedModel.__init__(self, config)
        self.model = BreastGPTModel(config)
        self.lm_head = nn.Linear(config.text_config.hidden_size, config.text_config.vocab_size, bias=False)
        self.post_init()

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        past_key_values=None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        pixel_values: torch.Tensor | None = None,
        pixel_values_videos: torch.Tensor | None = None,
        image_grid_thw: torch.LongTensor | None = None,
        video_grid_thw: torch.LongTensor | None = None,
        slide_features: torch.Tensor | None = None,
        slide_grid: torch.Tensor | None = None,
        slide_mask: torch.Tensor | None = None,
        mm_token_type_ids: torch.Tensor | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        **kwargs,
    ) -> BreastGPTCausalLMOutput:
        outputs = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            past_key_values=past_key_values,
            inputs_embeds=inputs_embeds,
            pixel_values=pixel_values,
            pixel_values_videos=pixel_values_videos,
            image_grid_thw=image_grid_thw,
            video_grid_thw=video_grid_thw,
            slide_features=slide_features,
            slide_grid=slide_grid,
            slide_mask=slide_mask,
            labels=labels,
            **kwargs,
        )
        hidden = slice_logits_to_keep(outputs.last_hidden_state, logits_to_keep)
        logits = self.lm_head(hidden)
        loss = None
        if labels is not None and _is_mask(logits_to_keep):
            targets = next_token_labels(labels)[logits_to_keep]
            if len(targets) != len(logits) or bool((targets == -100).any()):
                raise ValueError("BreastGPTForConditionalGeneration: a boolean logits_to_keep with labels must keep "
                                 "exactly the supervised positions; build it with supervised_positions(labels).")
            loss = (nn.functional.cross_entropy(logits.float(), targets) if len(targets)
                    else logits.float().sum() * 0.0)
        elif labels is not None:
            loss = self.loss_function(logits=logits, labels=labels, vocab_size=self.config.text_config.vocab_size)
        if loss is not None and outputs.selection_loss is not None:
            loss = loss + outputs.selection_loss.to(loss.dtype)
        return BreastGPTCausalLMOutput(
            loss=loss,
            logits=logits,
            past_key_values=outputs.past_key_values,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
            selection_loss=outputs.selection_loss,
        )

    def _prepare_position_ids_for_generation(self, inputs_tensor, model_kwargs):
        # Positions depend on which tokens selection keeps, known only once the encoders ran at prefill;
        # the model computes them there and derives decoding positions from the stored deltas.
        self.model.rope_deltas = None
        return None

    def prepare_inputs_for_generation(self, *args, is_first_iteration: bool = False, **kwargs):
        inputs = super().prepare_inputs_for_generation(*args, is_first_iteration=is_first_iteration, **kwargs)
        if not is_first_iteration and kwargs.get("use_cache", True):
            for key in (*self._SLIDE_KEYS, "pixel_values", "pixel_values_videos"):
                inputs.pop(key, None)  # no encoder passes while decoding (the reference ran them every step)
        return inputs

    def _expand_inputs_for_generation(self, expand_size=1, is_encoder_decoder=False, input_ids=None, **model_kwargs):
        visual = ("pixel_values", "pixel_values_videos", *self._SLIDE_KEYS)
        if expand_size > 1 and any(model_kwargs.get(k) is not None for k in visual):
            raise ValueError(
                "BreastGPT generate(): beam search / num_return_sequences > 1 with visual inputs is not supported "
                "(visual tensors are per input, not per sample); repeat the sample in the batch instead."
            )
        return super()._expand_inputs_for_generation(expand_size, is_encoder_decoder, input_ids, **model_kwargs)


def register_breastgpt() -> None:
    """Register the config, model and processor with the transformers Auto classes (idempotent)."""
    from transformers import AutoConfig, AutoModel, AutoModelForImageTextToText, AutoProcessor

    from breastgpt.model.processing import BreastGPTProcessor

    AutoConfig.register("breastgpt", BreastGPTConfig, exist_ok=True)
    AutoModel.register(BreastGPTConfig, BreastGPTModel, exist_ok=True)
    AutoModelForImageTextToText.register(BreastGPTConfig, BreastGPTForConditionalGeneration, exist_ok=True)
    AutoProcessor.register(BreastGPTConfig, BreastGPTProcessor, exist_ok=True)


__all__ = [
    "BreastGPTCausalLMOutput",
    "BreastGPTForConditionalGeneration",
    "BreastGPTModel",
    "BreastGPTModelOutput",
    "Candidate",
    "register_breastgpt",
    "supervised_positions",
    "volume_frame_budgets",
]
