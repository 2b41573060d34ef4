"""Concept-preserving token selection: equal to a dense greedy written here, straight-through gradients."""

from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from breastgpt.model import selection
from breastgpt.model.selection import (
    select_concepts,
    select_concepts_with_stats,
    straight_through_select,
)

# The documented tie rule (docs/token_selection.md): gains within max(1e-9·best, 1e-13) of the best are
# ties and go to the lowest index.
RTOL, ATOL = 1e-9, 1e-13


@pytest.fixture(autouse=True)
def one_thread():
    # Many tiny matmuls: on a shared 2-core machine, thread hand-offs cost more than the arithmetic.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


STREAM = {"matrix_budget_bytes": 0}  # never hold the matrix: the streaming (linear-memory) path


def dense_greedy_reference(
    tokens: torch.Tensor,
    k: int,
    *,
    temperature: float = 0.2,
    text_tokens: torch.Tensor | None = None,
    text_temperature: float = 0.02,
    coverage_weight: float = 0.5,
    row_block: int = 2048,
) -> torch.Tensor:
    """SPEC §3.5 written out with the whole L×L matrix in float64 (only `row_block` rows of scratch)."""
    n = tokens.shape[0]
    if n <= k:
        return torch.arange(n)
    v = torch.nn.functional.normalize(tokens.double(), dim=1)
    coverage = torch.softmax(v @ v.T / temperature, dim=1) / n
    if text_tokens is not None:
        t = torch.nn.functional.normalize(text_tokens.double(), dim=1)
        prompt = torch.softmax(t @ v.T / text_temperature, dim=1) / t.shape[0]
        coverage = torch.cat([prompt, coverage_weight * coverage])
    best_cover = torch.zeros(coverage.shape[0], dtype=torch.float64)
    taken = torch.zeros(n, dtype=torch.bool)
    for _ in range(k):
        gains = torch.zeros(n, dtype=torch.float64)
        for r in range(0, coverage.shape[0], row_block):
            block = coverage[r : r + row_block] - best_cover[r : r + row_block, None]
            gains += block.clamp_(min=0).sum(0)
        gains[taken] = -torch.inf
        top = gains.max().item()
        pick = int(torch.nonzero(gains >= top - max(RTOL * top, ATOL))[0])
        taken[pick] = True
        best_cover = torch.maximum(best_cover, coverage[:, pick])
    return torch.nonzero(taken).squeeze(1)


def _random_case(seed: int):
    g = torch.Generator().manual_seed(seed)
    n = int(torch.randint(2, 90, (1,), generator=g))
    d = int(torch.randint(2, 24, (1,), generator=g))
    style = seed % 5
    if style == 0:  # isotropic
        x = torch.randn(n, d, generator=g)
    elif style == 1:  # clusters, like tissue types
        centres = torch.randn(4, d, generator=g) * 3
        x = centres[torch.randint(0, 4, (n,), generator=g)] + 0.3 * torch.randn(n, d, generator=g)
    elif style == 2:  # exact duplicates: ties must go to the lowest index
        base = torch.randn(max(1, n // 3), d, generator=g)
        x = base[torch.randint(0, base.shape[0], (n,), generator=g)]
    elif style == 3:  # duplicates at different scales (same direction) plus a zero token
        base = torch.randn(max(1, n // 4), d, generator=g)
        x = base[torch.randint(0, base.shape[0], (n,), generator=g)] * torch.rand(n, 1, generator=g).add(0.5)
        x[0] = 0
    else:  # low precision input, many near-ties
        x = torch.randn(n, d, generator=g).to(torch.bfloat16).round().float()
    kind = seed % 4
    k = {0: int(torch.randint(1, n + 5, (1,), generator=g)), 1: 1, 2: max(1, n - 1), 3: n + 3}[kind]
    text = torch.randn(int(torch.randint(1, 6, (1,), generator=g)), d, generator=g) if seed % 3 == 0 else None
    return x, k, text


@pytest.mark.parametrize("block", [0, 1, 2, 3])
def test_matches_dense_reference_on_200_random_cases(block):
    for seed in range(block * 50, block * 50 + 50):
        x, k, text = _random_case(seed)
        ref = dense_greedy_reference(x, k, text_tokens=text)
        # Streaming with tiny tiles: the lazy path, and most cases cross tile borders.
        lazy = select_concepts(x, k, text_tokens=text, chunk_size=32, tile_columns=16, **STREAM)
        assert torch.equal(lazy, ref), f"seed {seed} (lazy): {lazy.tolist()} != {ref.tolist()}"
        # The stored matrix, built from tiny tiles and from one tile, with exact and static-size row sets.
        for kw in ({"tile_columns": 3}, {}, {"static_shapes": True}):
            stored, stats = select_concepts_with_stats(x, k, text_tokens=text, **kw)
            assert torch.equal(stored, ref), f"seed {seed} (stored {kw}): {stored.tolist()} != {ref.tolist()}"
            assert stats.stored_matrix or x.shape[0] <= k
        assert lazy.shape[0] == min(x.shape[0], k)


def test_tiny_tiles_do_not_change_the_answer():
    for seed in (7, 12, 21, 33):
        x, k, text = _random_case(seed)
        for kw in (STREAM, {}):
            ours = select_concepts(x, k, text_tokens=text, chunk_size=6, tile_columns=3, **kw)
            assert torch.equal(ours, dense_greedy_reference(x, k, text_tokens=text)), f"seed {seed} {kw}"


def test_blocks_converted_on_the_fly_agree(monkeypatch):
    # Large problems do not keep float64 copies of the tokens; force that path on small ones.
    monkeypatch.setattr(selection, "_CACHE_BYTES", 0)
    for seed in (0, 3, 6, 9, 13, 42, 45):
        x, k, text = _random_case(seed)
        for kw in (STREAM, {}):
            ours = select_concepts(x, k, text_tokens=text, chunk_size=8, tile_columns=8, **kw)
            assert torch.equal(ours, dense_greedy_reference(x, k, text_tokens=text)), f"seed {seed} {kw}"


def test_sorted_ascending_and_length_le_k_keeps_all():
    x = torch.randn(5, 3)
    assert select_concepts(x, 5).tolist() == [0, 1, 2, 3, 4]
    assert select_concepts(x, 9).tolist() == [0, 1, 2, 3, 4]
    out = select_concepts(torch.randn(40, 6), 7)
    assert out.tolist() == sorted(out.tolist()) and out.dtype == torch.long


def test_exact_duplicates_resolve_to_lowest_index():
    a, b = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    x = torch.stack([b, a, a, a, b])  # two directions, each duplicated
    assert select_concepts(x, 1).tolist() == [1]  # a covers 3 tokens, first copy of a is index 1
    assert select_concepts(x, 2).tolist() == [0, 1]
    assert select_concepts(x, 2, chunk_size=2, tile_columns=1).tolist() == [0, 1]
    assert select_concepts(x, 2, chunk_size=2, tile_columns=1, **STREAM).tolist() == [0, 1]
    assert select_concepts(x, 2, static_shapes=True).tolist() == [0, 1]


def test_k_equals_one_is_the_largest_column_sum():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(30, 5, generator=g)
    v = torch.nn.functional.normalize(x.double(), dim=1)
    col = torch.softmax(v @ v.T / 0.2, dim=1).sum(0)
    assert select_concepts(x, 1).tolist() == [int(col.argmax())]
    assert select_concepts(x, 1, chunk_size=4, tile_columns=4).tolist() == [int(col.argmax())]
    assert select_concepts(x, 1, chunk_size=4, tile_columns=4, **STREAM).tolist() == [int(col.argmax())]


def test_larger_case_with_default_tiles_and_text():
    g = torch.Generator().manual_seed(11)
    centres = torch.randn(12, 32, generator=g)
    x = centres[torch.randint(0, 12, (700,), generator=g)] + 0.5 * torch.randn(700, 32, generator=g)
    text = torch.randn(7, 32, generator=g)
    for kw in ({}, {"text_tokens": text}):
        reference = dense_greedy_reference(x, 40, **kw)
        idx, stats = select_concepts_with_stats(x, 40, **kw)
        assert stats.stored_matrix and torch.equal(idx, reference)
        idx, stats = select_concepts_with_stats(x, 40, **kw, **STREAM)
        assert not stats.stored_matrix and stats.refresh_rounds > 0 and torch.equal(idx, reference)


def test_incremental_refreshes_are_used_and_agree():
    g = torch.Generator().manual_seed(5)
    x = torch.randn(600, 16, generator=g)  # isotropic: every gain moves every step, the hard case
    idx, stats = select_concepts_with_stats(x, 25, chunk_size=128, tile_columns=64, **STREAM)
    assert stats.incremental_evaluations > 0 and stats.incremental_rows > 0
    assert torch.equal(idx, dense_greedy_reference(x, 25))


@pytest.mark.parametrize("factor", [0.0, float("inf")])
def test_sweeps_always_or_never_give_the_same_indices(monkeypatch, factor):
    # 0: every step that needs more than its first batch of refreshes recomputes all gains in a sweep;
    # inf: never, every stale candidate is refreshed one by one.
    monkeypatch.setattr(selection, "_SWEEP_FACTOR", factor)
    g = torch.Generator().manual_seed(8)
    centres = torch.randn(6, 12, generator=g)
    x = centres[torch.randint(0, 6, (400,), generator=g)] + 0.8 * torch.randn(400, 12, generator=g)
    text = torch.randn(3, 12, generator=g)
    for kw in ({}, {"text_tokens": text}):
        idx, stats = select_concepts_with_stats(x, 30, chunk_size=64, tile_columns=32, **kw, **STREAM)
        assert (stats.sweeps > 0) == (factor == 0.0)
        assert torch.equal(idx, dense_greedy_reference(x, 30, **kw))


def test_the_matrix_is_stored_exactly_while_it_fits_the_budget():
    x = torch.randn(300, 8, generator=torch.Generator().manual_seed(2))
    text = torch.randn(3, 8, generator=torch.Generator().manual_seed(3))
    need = (3 + 300 + 1) * 300 * 8  # prompt rows, visual rows and the spare row, float64
    _, fits = select_concepts_with_stats(x, 20, text_tokens=text, matrix_budget_bytes=need)
    _, over = select_concepts_with_stats(x, 20, text_tokens=text, matrix_budget_bytes=need - 1)
    assert fits.stored_matrix and fits.steps == 20 and 0 < fits.rows_updated
    assert not over.stored_matrix and over.refresh_rounds > 0


def test_static_row_sets_rerun_a_window_that_overflows_and_agree(monkeypatch):
    # Windows of one step each: a capacity taken from a step with few raised rows is too small for the next.
    monkeypatch.setattr(selection, "_WINDOWS", tuple(range(1, 60)))
    g = torch.Generator().manual_seed(4)
    x = torch.randn(500, 6, generator=g)
    idx, stats = select_concepts_with_stats(x, 60, static_shapes=True)
    assert stats.window_reruns > 0
    assert torch.equal(idx, dense_greedy_reference(x, 60))


class _HostReads(TorchDispatchMode):
    """Counts the ops that make the host wait for the device: scalar reads and data-dependent shapes."""

    SYNCING = {torch.ops.aten._local_scalar_dense.default, torch.ops.aten.nonzero.default,
               torch.ops.aten.is_nonzero.default, torch.ops.aten.equal.default}

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.count += func in self.SYNCING
        return func(*args, **(kwargs or {}))


def test_static_row_sets_read_the_device_at_most_ten_times_per_selection():
    g = torch.Generator().manual_seed(6)
    centres = torch.randn(16, 32, generator=g)
    x = centres[torch.randint(0, 16, (1500,), generator=g)] + 0.6 * torch.randn(1500, 32, generator=g)
    text = torch.randn(4, 32, generator=g)
    with _HostReads() as static:
        idx, stats = select_concepts_with_stats(x, 128, text_tokens=text, static_shapes=True)
    with _HostReads() as exact:
        same, _ = select_concepts_with_stats(x, 128, text_tokens=text, static_shapes=False)
    assert static.count <= 10, (static.count, stats)
    assert exact.count > 128  # exact row sets read every step: fine on CPU, a stall per step on a GPU
    assert torch.equal(idx, same) and torch.equal(idx, dense_greedy_reference(x, 128, text_tokens=text))


class _LargestTensor(TorchDispatchMode):
    """Records the element count of the largest tensor any torch op returns."""

    def __init__(self) -> None:
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        sizes = [t.numel() for t in tree_flatten(out)[0] if isinstance(t, torch.Tensor)]
        self.largest = max([self.largest, *sizes])
        return out


def test_no_tensor_grows_with_the_square_of_the_token_count():
    n = 4000
    x = torch.randn(n, 4, generator=torch.Generator().manual_seed(n))
    with _LargestTensor() as probe:
        select_concepts(x, 4, tile_columns=512, **STREAM)
    # Tiles (512² in the sweeps, at most _TILE_ENTRIES in refreshes) and O(L) vectors; L² = 16M entries.
    assert probe.largest <= max(selection._TILE_ENTRIES, 512 * 512, 2 * n * 4)
    assert probe.largest <= n * n / 8


def test_bad_inputs_name_the_problem():
    with pytest.raises(ValueError, match="budget k"):
        select_concepts(torch.randn(4, 2), 0)
    with pytest.raises(ValueError, match=r"\[L, D\]"):
        select_concepts(torch.randn(4), 2)
    with pytest.raises(ValueError, match="NaN"):
        select_concepts(torch.tensor([[1.0, float("nan")], [0.0, 1.0], [1.0, 1.0]]), 1)
    with pytest.raises(ValueError, match="text_tokens"):
        select_concepts(torch.randn(4, 2), 1, text_tokens=torch.randn(3, 5))
    with pytest.raises(ValueError, match="temperatures"):
        select_concepts(torch.randn(4, 2), 1, temperature=1e-4)


def test_bfloat16_tokens_select_as_their_float32_values():
    x = torch.randn(120, 16, generator=torch.Generator().manual_seed(4)).to(torch.bfloat16)
    for kw in ({}, {"chunk_size": 32, "tile_columns": 16, **STREAM}):
        assert torch.equal(select_concepts(x, 10, **kw), select_concepts(x.float(), 10, **kw))
        assert torch.equal(select_concepts(x, 10, **kw), dense_greedy_reference(x.float(), 10))


@pytest.mark.parametrize("cache_bytes", [None, 0])
def test_float64_tokens_are_left_untouched_and_select_as_float32_does(monkeypatch, cache_bytes):
    if cache_bytes is not None:  # large problems convert block by block, from slices of the caller's tensor
        monkeypatch.setattr(selection, "_CACHE_BYTES", cache_bytes)
    g = torch.Generator().manual_seed(8)
    x = (torch.randn(300, 24, generator=g) * 3).double()
    text = torch.randn(5, 24, generator=g).double()
    before, text_before = x.clone(), text.clone()
    for kw in ({}, {"text_tokens": text}, {"chunk_size": 32, "tile_columns": 16, **STREAM},
               {"text_tokens": text, **STREAM}):
        ours = select_concepts(x, 20, **kw)
        assert torch.equal(x, before) and torch.equal(text, text_before), kw
        reference = dense_greedy_reference(x, 20, text_tokens=kw.get("text_tokens"))
        assert torch.equal(ours, reference), kw


def test_no_autograd_graph():
    x = torch.randn(20, 4, requires_grad=True)
    out = select_concepts(x, 5)
    assert not out.requires_grad and out.grad_fn is None


# ---- straight-through -----------------------------------------------------------------------------------


def test_straight_through_value_is_exact_and_gradient_matches_dense_soft_selection():
    g = torch.Generator().manual_seed(0)
    v = torch.randn(9, 4, generator=g, dtype=torch.float64, requires_grad=True)
    idx = torch.tensor([1, 4, 7])
    w_out = torch.randn(3, 4, generator=g, dtype=torch.float64)
    out = straight_through_select(v, idx, soft_temperature=0.7, block_rows=2)
    assert torch.equal(out.detach(), v.detach()[idx])
    (out * w_out).sum().backward()
    ours = v.grad.clone()

    v.grad = None
    unit = v / v.norm(dim=1, keepdim=True)
    weights = torch.softmax((unit @ unit.T)[idx] / 0.7, dim=1)  # the explicit L×L form, on a small case
    ((weights @ v) * w_out).sum().backward()
    assert torch.isfinite(ours).all() and ours.abs().sum() > 0
    assert torch.allclose(ours, v.grad, atol=1e-12, rtol=0)


def test_keeping_every_token_passes_the_exact_gradient():
    """L ≤ k: the selection is the identity, so the gradient is exact, not the soft estimate (which would blur
    each token's gradient over all tokens of its block)."""
    g = torch.Generator().manual_seed(1)
    v = torch.randn(5, 3, generator=g, dtype=torch.float64, requires_grad=True)
    w_out = torch.randn(5, 3, generator=g, dtype=torch.float64)
    idx = select_concepts(v.detach(), 8)
    assert idx.tolist() == [0, 1, 2, 3, 4]
    (straight_through_select(v, idx) * w_out).sum().backward()
    assert torch.equal(v.grad, w_out)
    v.grad = None  # a proper subset still takes the soft path: its gradient reaches tokens that were not kept
    (straight_through_select(v, torch.tensor([0, 2])) * w_out[:2]).sum().backward()
    assert (v.grad[[1, 3, 4]] != 0).any()


def test_straight_through_float32_and_no_grad_paths():
    v = torch.randn(50, 8, requires_grad=True)
    idx = select_concepts(v, 6)
    out = straight_through_select(v, idx)
    assert torch.equal(out.detach(), v.detach()[idx])
    out.pow(2).sum().backward()
    assert torch.isfinite(v.grad).all() and (v.grad != 0).any()
    with torch.no_grad():
        assert straight_through_select(v, idx).grad_fn is None
    with pytest.raises(ValueError, match="soft_temperature"):
        straight_through_select(v, idx, soft_temperature=0)
