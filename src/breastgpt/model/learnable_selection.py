"""The learnable token-selection ablation (SPEC §3.5): concept queries, Gumbel top-k, coverage regulariser.

The paper's alternative to the training-free selection in `breastgpt.model.selection`; it scored lower there
(70.64 closed / 85.95 open vs 75.66 / 89.92) and is kept for reproducing that ablation. Turned on with
``selection.learnable=true`` (``breastgpt model init --learnable-selection``); the model then holds one
selector per visual kind (`BreastGPTModel.concept_selectors`). docs/token_selection.md, "Learnable ablation".
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn


@dataclass
class LearnedSelection:
    indices: Tensor  # [k] sorted ascending
    gate: Tensor  # [k]: 1.0 in value, carries the score gradient (multiply the kept tokens by it)
    aux_loss: Tensor  # coverage regulariser, already weighted


class LearnableConceptSelector(nn.Module):
    """The paper's learnable variant (SPEC §3.5, an ablation): concept queries score tokens by cross-attention.

    ``num_concepts`` learned queries attend over the block's tokens (softmax over tokens, per concept); a
    token's score is the strongest attention any concept gives it. The k best scores are kept (sorted
    ascending); in training, Gumbel noise is added to the log-scores first (Gumbel top-k, a sample without
    replacement in proportion to the scores). The kept tokens are multiplied by ``gate``, which is exactly
    1.0 in value and carries d(score) in the backward, so the forward value stays V[idx] and the scorer
    learns from the loss. The coverage regulariser penalises concepts that attend to the same tokens
    (mean pairwise overlap of their attention maps, times ``coverage_weight``).

    The queries are an ``nn.Embedding`` (not a bare Parameter) so that transformers initialises them like
    every other embedding when a checkpoint that lacks them is loaded.
    """

    def __init__(self, dim: int, num_concepts: int = 32, *, gumbel_temperature: float = 1.0,
                 coverage_weight: float = 0.01) -> None:
        super().__init__()
        self.queries = nn.Embedding(num_concepts, dim)
        nn.init.normal_(self.queries.weight, std=dim**-0.5)
        self.key = nn.Linear(dim, dim, bias=False)
        self.gumbel_temperature = gumbel_temperature
        self.coverage_weight = coverage_weight

    def forward(self, tokens: Tensor, k: int, generator: torch.Generator | None = None) -> LearnedSelection:
        length = tokens.shape[0]
        keys = self.key(tokens.to(self.key.weight.dtype))
        logits = (self.queries.weight @ keys.T).float() * tokens.shape[1] ** -0.5  # [C, L]
        attention = torch.softmax(logits, dim=1)
        scores = attention.max(dim=0).values
        aux = self._coverage_loss(attention)
        if length <= k:
            idx = torch.arange(length, device=tokens.device)
            return LearnedSelection(idx, torch.ones(length, device=tokens.device, dtype=tokens.dtype), aux)
        ranked = torch.log(scores.detach().clamp_min(1e-30))
        if self.training:
            u = torch.rand(length, generator=generator, device=tokens.device).clamp(1e-20, 1 - 1e-7)
            ranked = ranked - self.gumbel_temperature * torch.log(-torch.log(u))
        idx = torch.sort(torch.topk(ranked, k).indices).values
        kept = scores[idx]
        # kept - kept.detach() is exactly 0 (1.0 + kept - kept.detach() is not: 1.0 + kept rounds)
        return LearnedSelection(idx, (1.0 + (kept - kept.detach())).to(tokens.dtype), aux)

    def _coverage_loss(self, attention: Tensor) -> Tensor:
        c = attention.shape[0]
        overlap = attention @ attention.T
        off_diagonal = overlap.sum() - overlap.diagonal().sum()
        return self.coverage_weight * off_diagonal / max(c * (c - 1), 1)
