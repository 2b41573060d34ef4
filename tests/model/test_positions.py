"""Positions: exact values on a hand-built sequence; disjoint and monotone; decode continues them."""

from __future__ import annotations

import pytest
import torch

from breastgpt.model.positions import (
    PlaceholderMismatchError,
    VisualBlock,
    check_runs,
    decode_positions,
    placeholder_runs,
    prefill_positions,
)

IMG = 9


def _block(rows, cols):
    return VisualBlock("image", torch.tensor(rows), torch.tensor(cols))


def test_kept_grid_coordinates_and_text_after_the_block():
    # text text [img img img] text ; kept tokens at grid (0,1), (1,0), (2,3)
    ids = torch.tensor([[1, 2, IMG, IMG, IMG, 3]])
    pos, delta = prefill_positions(ids, None, {"image": IMG}, {"image": [_block([0, 1, 2], [1, 0, 3])]})
    assert pos[0, 0].tolist() == [0, 1, 2, 3, 4, 5]  # plain index row (causal mask)
    assert pos[1, 0].tolist() == [0, 1, 2, 2, 2, 6]  # t
    assert pos[2, 0].tolist() == [0, 1, 2, 3, 4, 6]  # h = 2 + row
    assert pos[3, 0].tolist() == [0, 1, 3, 2, 5, 6]  # w = 2 + col; text resumes at max(5) + 1
    assert delta.tolist() == [[6 + 1 - 6]]


def test_left_padding_is_ignored_and_deltas_continue_in_decoding():
    ids = torch.tensor([[0, 0, 1, IMG, IMG, 2], [1, 2, 3, IMG, IMG, 4]])
    mask = torch.tensor([[0, 0, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1]])
    blocks = [_block([0, 3], [0, 4]), _block([1, 1], [0, 1])]
    pos, delta = prefill_positions(ids, mask, {"image": IMG}, {"image": blocks})
    assert pos[3, 0].tolist() == [0, 0, 0, 1, 5, 6]
    assert pos[3, 1].tolist() == [0, 1, 2, 3, 4, 5]
    assert pos[2, 1].tolist() == [0, 1, 2, 4, 4, 5]
    assert delta.tolist() == [[7 - 4], [6 - 6]]
    full_mask = torch.cat([mask, torch.ones(2, 1, dtype=torch.long)], dim=1)
    nxt = decode_positions(full_mask, 1, 6, 2, delta, torch.device("cpu"))
    assert nxt[:, :, 0].tolist() == [[4, 6], [7, 6], [7, 6], [7, 6]]


def test_positions_are_disjoint_and_monotone_across_blocks():
    ids = torch.tensor([[1] + [IMG] * 4 + [2, 3] + [IMG] * 4 + [4]])
    blocks = [_block([0, 0, 5, 5], [0, 7, 0, 7]), _block([0, 1, 2, 3], [3, 2, 1, 0])]
    pos, _ = prefill_positions(ids, None, {"image": IMG}, {"image": blocks})
    mrope = pos[1:, 0]
    starts = [0, 1, 5, 6, 7, 11]  # segment boundaries
    seg_max = [int(mrope[:, a:b].max()) for a, b in zip(starts[:-1], starts[1:])]
    seg_min = [int(mrope[:, a:b].min()) for a, b in zip(starts[:-1], starts[1:])]
    assert all(lo > hi for lo, hi in zip(seg_min[1:], seg_max[:-1]))


def test_placeholder_runs_and_checks():
    ids = torch.tensor([[IMG, IMG, 1, IMG], [2, 2, 2, 2], [IMG, 1, 1, 1]])
    runs = placeholder_runs(ids, IMG)
    assert [(r.batch, r.start, r.length) for r in runs] == [(0, 0, 2), (0, 3, 1), (2, 0, 1)]
    with pytest.raises(PlaceholderMismatchError, match="block 1 .* has 1 <x> tokens but the model keeps 2"):
        check_runs(runs, [_block([0, 0], [0, 1]), _block([0, 0], [0, 1]), _block([0], [0])], "<x>", "image")
    with pytest.raises(PlaceholderMismatchError, match="3 run"):
        check_runs(runs, [_block([0], [0])], "<x>", "image")
