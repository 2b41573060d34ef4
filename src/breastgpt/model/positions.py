"""Multi-axis (t, h, w) RoPE positions for sequences whose visual blocks were thinned by token selection.

Every visual block (one image, one volume frame, one slide) keeps the grid coordinates of the tokens it
kept; the text after the block starts one past the largest position the block used. Visual and text
positions are therefore disjoint and monotone (SPEC §3.5), unlike the reference, where the following text
restarted right after the k kept tokens and collided with the slide's grid positions.

Row 0 of the returned ``[4, B, S]`` tensor is the plain index of each real token (what transformers uses
to build the causal mask); rows 1..3 are the (t, h, w) RoPE positions Qwen3-VL consumes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


class PlaceholderMismatchError(ValueError):
    """The placeholder tokens in ``input_ids`` disagree with the visual inputs after selection."""


@dataclass(frozen=True)
class VisualBlock:
    """Grid coordinates (row, col) of the tokens one visual block kept, in sequence order."""

    kind: str
    rows: torch.Tensor
    cols: torch.Tensor

    @property
    def length(self) -> int:
        return int(self.rows.numel())


@dataclass(frozen=True)
class PlaceholderRun:
    """A maximal run of one placeholder token inside one sample."""

    batch: int
    start: int
    length: int


def placeholder_runs(input_ids: torch.Tensor, token_id: int) -> list[PlaceholderRun]:
    """Runs of ``token_id`` in batch-major, left-to-right order (the order visual inputs are given in)."""
    runs: list[PlaceholderRun] = []
    is_tok = (input_ids == token_id).to(torch.int8)
    for b in range(input_ids.shape[0]):
        row = is_tok[b]
        if not bool(row.any()):
            continue
        edges = torch.diff(row, prepend=row.new_zeros(1), append=row.new_zeros(1))
        starts = torch.nonzero(edges == 1).flatten().tolist()
        ends = torch.nonzero(edges == -1).flatten().tolist()
        runs.extend(PlaceholderRun(b, s, e - s) for s, e in zip(starts, ends))
    return runs


def check_runs(runs: list[PlaceholderRun], blocks: list[VisualBlock], token: str, what: str) -> None:
    """Raise a precise error unless each placeholder run holds exactly the tokens its block kept."""
    if len(runs) != len(blocks):
        raise PlaceholderMismatchError(
            f"input_ids hold {len(runs)} run(s) of {token} but {len(blocks)} {what} block(s) were given; build the "
            "prompt with BreastGPTProcessor so each visual input gets exactly one placeholder run."
        )
    for i, (run, block) in enumerate(zip(runs, blocks)):
        if run.length != block.length:
            raise PlaceholderMismatchError(
                f"{what} block {i} (sample {run.batch}, position {run.start}) has {run.length} {token} tokens but "
                f"the model keeps {block.length} after selection (min(L, budget)); re-encode the prompt with "
                "BreastGPTProcessor configured with this model's selection budgets."
            )


def _token_kinds(ids: torch.Tensor, token_ids: dict[str, int]) -> list[str | None]:
    kinds: list[str | None] = [None] * ids.numel()
    for kind, tid in token_ids.items():
        for i in torch.nonzero(ids == tid).flatten().tolist():
            kinds[i] = kind
    return kinds


def _segments(kinds: list[str | None]) -> list[tuple[str | None, int]]:
    segs: list[tuple[str | None, int]] = []
    for kind in kinds:
        if segs and segs[-1][0] == kind:
            segs[-1] = (kind, segs[-1][1] + 1)
        else:
            segs.append((kind, 1))
    return segs


def _sample_positions(
    ids: torch.Tensor, token_ids: dict[str, int], queues: dict[str, list[VisualBlock]]
) -> torch.Tensor:
    parts: list[torch.Tensor] = []
    cur = 0
    for kind, n in _segments(_token_kinds(ids, token_ids)):
        if kind is None:
            parts.append((torch.arange(n) + cur).view(1, -1).expand(3, -1))
            cur += n
            continue
        block = queues[kind].pop(0)
        t = torch.full((n,), cur, dtype=torch.long)
        pos = torch.stack([t, block.rows.cpu().long() + cur, block.cols.cpu().long() + cur])
        parts.append(pos)
        cur = int(pos.max()) + 1
    return torch.cat(parts, dim=1) if parts else torch.zeros(3, 0, dtype=torch.long)


def prefill_positions(
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None,
    token_ids: dict[str, int],
    blocks: dict[str, list[VisualBlock]],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Positions ``[4, B, S]`` and RoPE deltas ``[B, 1]`` for a prompt whose blocks are already checked.

    ``blocks[kind]`` lists that kind's blocks in batch-major sequence order; each block's length must
    equal its placeholder run (see ``check_runs``). Padding positions get 0.
    """
    bsz, seq = input_ids.shape
    mask = torch.ones_like(input_ids, dtype=torch.bool) if attention_mask is None else attention_mask.bool()
    out = torch.zeros(4, bsz, seq, dtype=torch.long)
    deltas = torch.zeros(bsz, 1, dtype=torch.long)
    queues = {kind: list(blist) for kind, blist in blocks.items()}
    ids_cpu, mask_cpu = input_ids.cpu(), mask.cpu()
    for b in range(bsz):
        real = mask_cpu[b]
        pos = _sample_positions(ids_cpu[b][real], token_ids, queues)
        n_real = int(real.sum())
        out[0, b, real] = torch.arange(n_real)
        out[1:, b, real] = pos
        deltas[b, 0] = (int(pos.max()) + 1 - n_real) if n_real else 0
    return out.to(input_ids.device), deltas.to(input_ids.device)


def decode_positions(
    attention_mask: torch.Tensor | None,
    seq_len: int,
    past_len: int,
    batch_size: int,
    rope_deltas: torch.Tensor,
    device: torch.device,
) -> torch.Tensor:
    """Positions ``[4, B, seq_len]`` for tokens appended after a prefill whose deltas are known."""
    if attention_mask is not None:
        text = attention_mask.long().cumsum(-1) - 1
        text = text.masked_fill(attention_mask == 0, 0)[:, -seq_len:]
    else:
        text = torch.arange(past_len, past_len + seq_len, device=device).view(1, -1).expand(batch_size, -1)
    text = text.to(device)
    deltas = rope_deltas.to(device)
    if deltas.shape[0] != batch_size:
        deltas = deltas.repeat_interleave(batch_size // deltas.shape[0], dim=0)
    mrope = (text + deltas).unsqueeze(0).expand(3, -1, -1)
    return torch.cat([text.unsqueeze(0), mrope], dim=0)


__all__ = [
    "PlaceholderMismatchError",
    "PlaceholderRun",
    "VisualBlock",
    "check_runs",
    "decode_positions",
    "placeholder_runs",
    "prefill_positions",
]
