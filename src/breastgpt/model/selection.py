"""Concept-preserving token selection (SPEC §3.5) with memory linear in the number of tokens.

`select_concepts` returns the indices the dense greedy facility-location selection returns. M is the coverage
matrix (rows: prompt tokens, then visual tokens; columns: candidate visual tokens), M[i, j] =
exp(β_i·(v̂_i·v̂_j) + γ_i) in float64. Two paths give the same indices:

* **Stored matrix** (when float64 M fits `matrix_budget_bytes`, default `MATRIX_BUDGET_BYTES`): one symmetric
  sweep writes M and its row normalisers; each greedy step then updates every gain from the rows whose
  coverage rose only (gain_j -= Σ_i min(max(M[i, j] - cover_i, 0), raise_i)), a few times the work of the
  Gram matrix itself. On an accelerator the step keeps its bookkeeping on the device (static-size row sets,
  one host synchronisation per window of steps; `_WINDOWS`).
* **Streaming** (above the budget): M is never held; every entry is recomputed when needed from the input
  tokens and two numbers per row, with memory linear in L:

1. Row normalisers and first gains. The visual similarities are symmetric, so one sweep over the upper
   triangle of square tiles gives every row's softmax normaliser, and a second sweep gives every column
   sum of M (each candidate's first-step gain). Prompt rows use an online log-sum-exp.
2. Lazy greedy (Minoux). A candidate's gain only shrinks as coverage grows (submodularity), so its last
   exact gain bounds its current one. Each step refreshes stale candidates, best bound first in batches
   that double, until no stale bound can reach the best fresh gain minus the tie tolerance. A refresh is
   exact: either summed afresh over all rows, or the old gain minus the exact loss on the rows raised
   since it was computed (snapshots of the coverage vector say which rows those are and what they held).
   When the stale candidates that must be refreshed would cost more than one more symmetric sweep, every
   gain is recomputed in a sweep instead.
3. The pick is the largest fresh gain; gains within `TIE_RTOL`·best or `TIE_ATOL` of it are ties and go
   to the lowest index, exactly as in the dense greedy.


docs/token_selection.md gives the exactness argument, the memory accounting and measured costs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

# Ties: two gains are equal when they differ by less than this. Rounding in two differently ordered float64
# computations of one gain is ~1e-15 relative, so exact ties (duplicated tokens) always resolve to the
# lowest index, and a genuine gap must be ~1e-9 relative before it decides a pick.
TIE_RTOL = 1e-9
TIE_ATOL = 1e-13
# Rounding allowance for gains kept up to date incrementally rather than summed afresh (relative to the
# largest first-step gain, per step); it only widens the set of candidates that get refreshed.
_DRIFT = 1e-12
_MIN_TEMPERATURE = 0.005
_HUGE = 1.0e308
_CHECK_BLOCK_ELEMENTS = 2**22
_FIRST_BATCH = 16
# A float64 block of row vectors is capped at this size, so that D = 4096 does not multiply the memory.
_ROW_BLOCK_BYTES = 16 * 2**20
# Problems whose float64 unit vectors (twice: plain and scaled) fit in this are converted once, not per block.
_CACHE_BYTES = 32 * 2**20
# Rows × candidates of one block of M in a refresh (8 MiB of float64).
_TILE_ENTRIES = 2**20
# Above this fraction of changed rows, a refresh sums over all rows instead (no gather, no drift).
_FULL_REFRESH_FRACTION = 0.5
# A sweep (every gain, symmetric tiles: L²/2 products) replaces one-by-one refreshes that would need more
# than this many times as many row×candidate products.
_SWEEP_FACTOR = 1.0
# Snapshots no stale candidate refers to any more are dropped once there are more than this many.
_SNAPSHOTS_KEPT = 8
# The stored-matrix path is used while float64 M ([prompt + visual + 1 rows] × L) fits in this many bytes:
# L = 20,000 needs 3.2 GB. Above it the streaming path needs ~0.1 GB at L = 20,000 (docs/token_selection.md).
MATRIX_BUDGET_BYTES = 4 * 2**30
# Steps between host synchronisations on an accelerator: [0, 1), [1, 4), [4, 16), [16, 64), [64, k). A window
# whose changed rows overflow its static row capacity is re-run once with every row, so a selection makes at most
# 2 × 5 = 10 synchronisations.
_WINDOWS = (1, 4, 16, 64)


@dataclass
class SelectionStats:
    """What the lazy greedy did: for benchmarks and the docs, not for decisions."""

    full_evaluations: int = 0  # candidate gains summed afresh over all rows
    incremental_evaluations: int = 0  # candidate gains updated over the changed rows only
    incremental_rows: int = 0  # (row, candidate) pairs in those updates
    refresh_rounds: int = 0
    steps: int = 0
    snapshots_peak: int = 0
    sweeps: int = 0  # all gains recomputed in one symmetric sweep (when cheaper than refreshing one by one)
    stored_matrix: bool = False  # M was held (it fitted the budget); the fields below describe that path
    rows_updated: int = 0  # (row) updates over all steps: rows whose coverage rose (or the static capacity)
    window_reruns: int = 0  # static-shape windows re-run because their changed rows overflowed the capacity


@torch.no_grad()
def select_concepts(
    tokens: Tensor,
    k: int,
    *,
    temperature: float = 0.2,
    text_tokens: Tensor | None = None,
    text_temperature: float = 0.02,
    coverage_weight: float = 0.5,
    chunk_size: int = 4096,
    tile_columns: int = 1024,
    matrix_budget_bytes: int = MATRIX_BUDGET_BYTES,
    static_shapes: bool | None = None,
) -> Tensor:
    """Indices (sorted ascending, on `tokens.device`) of the k tokens greedy facility location keeps.

    tokens [L, D]; text_tokens [m, D] (the prompt only, never answer tokens) adds text rows P above
    coverage_weight·Q. While float64 M fits `matrix_budget_bytes` it is held (fast path); above it, work is done
    in float64 blocks of at most `chunk_size` rows (fewer for wide tokens) × `tile_columns` candidates, and square
    `tile_columns` tiles for the sweeps, with memory linear in L. The tokens are never modified.
    static_shapes: see `select_concepts_with_stats` (None: automatic by device).
    """
    indices, _ = select_concepts_with_stats(
        tokens,
        k,
        temperature=temperature,
        text_tokens=text_tokens,
        text_temperature=text_temperature,
        coverage_weight=coverage_weight,
        chunk_size=chunk_size,
        tile_columns=tile_columns,
        matrix_budget_bytes=matrix_budget_bytes,
        static_shapes=static_shapes,
    )
    return indices


@torch.no_grad()
def select_concepts_with_stats(
    tokens: Tensor,
    k: int,
    *,
    temperature: float = 0.2,
    text_tokens: Tensor | None = None,
    text_temperature: float = 0.02,
    coverage_weight: float = 0.5,
    chunk_size: int = 4096,
    tile_columns: int = 1024,
    matrix_budget_bytes: int = MATRIX_BUDGET_BYTES,
    static_shapes: bool | None = None,
) -> tuple[Tensor, SelectionStats]:
    """`select_concepts` plus counters describing the work done.

    static_shapes: how the stored-matrix path finds the rows whose coverage rose — True: fixed-capacity row sets
    and one host synchronisation per window of steps (the default on accelerators); False: the exact rows each
    step (the default on CPU, where reading a tensor is not a synchronisation). Both give the same indices.
    """
    _check_inputs(tokens, k, text_tokens, temperature, text_temperature, coverage_weight, chunk_size, tile_columns)
    length = tokens.shape[0]
    if length <= k:
        return torch.arange(length, device=tokens.device), SelectionStats()
    text = None if text_tokens is None else text_tokens.detach().to(tokens.device)
    rows = length + (0 if text is None else text.shape[0]) + 1
    store = rows * length * 8 <= matrix_budget_bytes
    cov = _Coverage(tokens.detach(), text, temperature, text_temperature, coverage_weight, chunk_size, tile_columns,
                    store_matrix=store)
    if store:
        static = tokens.device.type != "cpu" if static_shapes is None else bool(static_shapes)
        stored = _StoredGreedy(cov, int(k))
        return torch.sort(stored.run(static)).values, stored.stats
    greedy = _LazyGreedy(cov)
    chosen = greedy.run(int(k))
    return torch.sort(chosen).values, greedy.stats


def _check_inputs(tokens, k, text, temperature, text_temperature, weight, chunk_size, tile_columns) -> None:
    if not isinstance(tokens, Tensor) or tokens.dim() != 2 or tokens.shape[0] == 0:
        shape = tuple(tokens.shape) if isinstance(tokens, Tensor) else type(tokens).__name__
        raise ValueError(f"select_concepts: tokens must be a non-empty [L, D] tensor, got {shape}")
    if int(k) < 1:
        raise ValueError(f"select_concepts: budget k must be >= 1, got {k}")
    if min(temperature, text_temperature) < _MIN_TEMPERATURE:
        raise ValueError(
            f"select_concepts: temperatures must be >= {_MIN_TEMPERATURE} (got {temperature}, {text_temperature}); "
            "smaller ones underflow the fixed-shift normaliser"
        )
    if weight <= 0 or chunk_size < 1 or tile_columns < 1:
        raise ValueError("select_concepts: coverage_weight must be > 0 and chunk_size, tile_columns >= 1")
    if not _all_finite(tokens):
        raise ValueError("select_concepts: tokens contain NaN or Inf; check the encoder output")
    if text is not None:
        if text.dim() != 2 or text.shape[0] == 0 or text.shape[1] != tokens.shape[1]:
            raise ValueError(
                f"select_concepts: text_tokens must be [m>0, {tokens.shape[1]}], got {tuple(text.shape)}; "
                "pass None for selection without text conditioning"
            )
        if not _all_finite(text):
            raise ValueError("select_concepts: text_tokens contain NaN or Inf")


def _all_finite(x: Tensor) -> bool:
    # Block by block: isfinite on the whole input builds temporaries several times its size.
    rows = max(1, _CHECK_BLOCK_ELEMENTS // max(x.shape[1], 1))
    return bool(torch.stack([torch.isfinite(x[sl]).all() for sl in _spans(x.shape[0], rows)]).all())


def _inverse_norms(x: Tensor, block_rows: int) -> Tensor:
    # Block by block: a float64 copy of all the tokens would be the largest buffer of the whole selection.
    blocks = _spans(x.shape[0], block_rows)
    norms = torch.cat([torch.linalg.vector_norm(x[sl].to(torch.float64), dim=1) for sl in blocks])
    # A zero token stays a zero vector (cosine 0 with everything), as F.normalize does.
    return 1.0 / norms.clamp_min(1e-12)


def _spans(n: int, size: int):
    for start in range(0, n, size):
        yield slice(start, min(start + size, n))


class _Coverage:
    """The coverage matrix M = [P; w·Q] (or Q alone), computed block by block and never stored.

    Global row ids: 0..m-1 are text rows, m..m+L-1 visual rows (visual row m+i belongs to token i).
    M[i, j] = exp(beta_i · (unit_i · unit_j) + gamma_i); the tokens stay in the caller's dtype and are
    normalised to float64 one block at a time.
    """

    def __init__(self, tokens, text, temperature, text_temperature, weight, chunk_size, tile_columns, *,
                 store_matrix: bool = False):
        self.tokens, self.text = tokens, text
        self.L, self.m = tokens.shape[0], 0 if text is None else text.shape[0]
        self.device = tokens.device
        self.tau, self.text_tau = float(temperature), float(text_temperature)
        self.tile = int(tile_columns)
        self.chunk = max(1, min(int(chunk_size), _ROW_BLOCK_BYTES // (8 * tokens.shape[1])))
        self.inv_norm = _inverse_norms(tokens, self.chunk)
        self.text_inv_norm = None if text is None else _inverse_norms(text, self.chunk)
        self._no_rows = torch.zeros(0, dtype=torch.long, device=self.device)  # text rows only
        self._build_caches()
        weight = float(weight) if text is not None else 1.0
        # The stored matrix gets one spare all-zero row: static-size row sets pad with its index.
        self.matrix = None
        if store_matrix:
            self.matrix = torch.empty(self.m + self.L + 1, self.L, dtype=torch.float64, device=self.device)
            self.matrix[-1].zero_()
        z = self._visual_normalisers(self.matrix)
        self.visual_scale = (weight / self.L) / z  # row i of M: visual_scale[i] · exp((cos - 1)/tau)
        gamma = [torch.log(self.visual_scale) - 1.0 / self.tau]
        if text is not None:
            shift, text_z = self._text_normalisers()
            gamma.insert(0, -shift / self.text_tau - torch.log(text_z * self.m))
        self.gamma = torch.cat(gamma)
        if self.matrix is not None:
            self._finish_matrix()

    # ---- blocks of unit vectors ---------------------------------------------------------------------

    # copy=True in the three converters below: for float64 tokens `.to(float64)` is the caller's tensor itself (a
    # slice is a view of it), and the in-place scaling would rewrite the caller's tokens.
    def units(self, sel) -> Tensor:
        """float64 unit vectors of visual tokens `sel` (a slice or index tensor)."""
        if self.unit_cache is not None:
            return self.unit_cache[sel]
        return self.tokens[sel].to(torch.float64, copy=True).mul_(self.inv_norm[sel, None])

    def _scaled_units(self, sel) -> Tensor:
        """Visual unit vectors divided by tau: the row side of a visual block."""
        return self.tokens[sel].to(torch.float64, copy=True).mul_((self.inv_norm[sel] / self.tau)[:, None])

    def _text_scaled(self, sel) -> Tensor:
        return self.text[sel].to(torch.float64, copy=True).mul_((self.text_inv_norm[sel] / self.text_tau)[:, None])

    def _build_caches(self) -> None:
        """Small problems keep their float64 vectors (<= _CACHE_BYTES), which saves per-step conversions."""
        self.unit_cache = self.row_cache = None
        if 2 * (self.m + self.L) * self.tokens.shape[1] * 8 > _CACHE_BYTES:
            return
        self.unit_cache = self.units(slice(None))
        rows = [self.unit_cache / self.tau]
        if self.m:
            rows.insert(0, self._text_scaled(slice(None)))
        self.row_cache = torch.cat(rows)

    def row_blocks(self, visual_rows: Tensor | None = None, columns: int = 1):
        """(global row ids, units scaled by beta, gamma) for every text row and the given visual rows.

        `visual_rows` None means all of them; text rows always come first (a prompt is short, and an
        unchanged row contributes exactly zero to an incremental refresh). Blocks are sized so that a
        block against `columns` candidates stays within `_TILE_ENTRIES`.
        """
        size = max(1, min(self.chunk, _TILE_ENTRIES // max(columns, 1)))
        if self.row_cache is not None:
            rows = visual_rows
            if rows is not None and self.m:
                rows = torch.cat([torch.arange(self.m, device=self.device), rows + self.m])
            for sl in _spans(self.m + self.L if rows is None else rows.shape[0], size):
                picked = sl if rows is None else rows[sl]
                yield picked, self.row_cache[picked], self.gamma[picked]
            return
        for sl in _spans(self.m, size):
            yield sl, self._text_scaled(sl), self.gamma[sl]
        if visual_rows is None:
            for sl in _spans(self.L, size):
                rows = slice(self.m + sl.start, self.m + sl.stop)
                yield rows, self._scaled_units(sl), self.gamma[rows]
        else:
            for sl in _spans(visual_rows.shape[0], size):
                idx = visual_rows[sl]
                yield idx + self.m, self._scaled_units(idx), self.gamma[idx + self.m]

    @staticmethod
    def entries(scaled_rows: Tensor, gamma: Tensor, columns: Tensor) -> Tensor:
        """M[rows, columns] from a row block (units scaled by beta) and column unit vectors."""
        return torch.addmm(gamma[:, None], scaled_rows, columns.T).exp_()

    # ---- normalisers and first-step gains -------------------------------------------------------------

    def _symmetric_tiles(self):
        """(row span, column span, E) for each square tile of visual pairs on or above the diagonal.

        E = exp((cos - 1)/tau) is symmetric, so an off-diagonal tile also stands for its transpose. The side
        is `tile_columns`, or less where a side's float64 vectors would exceed a row block (wide tokens).
        """
        side = min(self.tile, self.chunk)
        for rs in _spans(self.L, side):
            rows = self._scaled_units(rs)
            for cs in _spans(self.L, side):
                if cs.start < rs.start:
                    continue
                yield rs, cs, torch.mm(rows, self.units(cs).T).sub_(1.0 / self.tau).exp_()

    def _visual_normalisers(self, store: Tensor | None = None) -> Tensor:
        """Row sums of E; with `store`, E is also written into its visual rows (both halves of each tile)."""
        z = torch.zeros(self.L, dtype=torch.float64, device=self.device)
        m = self.m
        for rs, cs, e in self._symmetric_tiles():
            z[rs] += e.sum(1)
            if store is not None:
                store[m + rs.start : m + rs.stop, cs] = e
            if cs != rs:
                z[cs] += e.sum(0)
                if store is not None:
                    store[m + cs.start : m + cs.stop, rs] = e.T
        return z

    def _finish_matrix(self) -> None:
        """Scale the stored visual rows by their normalisers and write the prompt rows."""
        m = self.m
        for sl in _spans(self.L, max(1, _TILE_ENTRIES // self.L)):
            self.matrix[m + sl.start : m + sl.stop].mul_(self.visual_scale[sl, None])
        for cs in _spans(self.L, self.tile) if m else ():
            cols = self.units(cs)
            for rows, scaled, gamma in self.row_blocks(self._no_rows, cols.shape[0]):
                self.matrix[rows, cs] = self.entries(scaled, gamma, cols)

    def _text_normalisers(self) -> tuple[Tensor, Tensor]:
        # Text cosines need not reach 1, so each text row is shifted by its own maximum (online log-sum-exp).
        text = self.text.to(torch.float64) * self.text_inv_norm[:, None]
        shift = torch.full((self.m,), -math.inf, dtype=torch.float64, device=self.device)
        z = torch.zeros(self.m, dtype=torch.float64, device=self.device)
        for cs in _spans(self.L, self.tile):
            s = text @ self.units(cs).T
            new_shift = torch.maximum(shift, s.max(1).values)
            z = z * torch.exp((shift - new_shift) / self.text_tau)
            z += s.sub_(new_shift[:, None]).mul_(1.0 / self.text_tau).exp_().sum(1)
            shift = new_shift
        return shift, z

    def all_gains(self, cover: Tensor | None = None) -> Tensor:
        """Σ_i max(M[i, j] - cover_i, 0) for every candidate j; cover None (nothing covered): column sums.

        One sweep over the symmetric tiles: tile E[A, B] gives rows A × columns B (row scale a_A) and, read
        transposed, rows B × columns A (row scale a_B).
        """
        gains = torch.zeros(self.L, dtype=torch.float64, device=self.device)
        a = self.visual_scale
        c = None if cover is None else cover[self.m :]
        for rs, cs, e in self._symmetric_tiles():
            if c is None:
                gains[cs] += a[rs] @ e
                if cs != rs:
                    gains[rs] += e @ a[cs]
                continue
            gains[cs] += torch.addcmul(-c[rs, None], a[rs, None], e).clamp_(min=0).sum(0)
            if cs != rs:
                gains[rs] += torch.addcmul(-c[None, cs], a[None, cs], e).clamp_(min=0).sum(1)
        for cs in _spans(self.L, self.tile) if self.m else ():
            cols = self.units(cs)
            for rows, scaled, gamma in self.row_blocks(self._no_rows, cols.shape[0]):
                e = self.entries(scaled, gamma, cols)
                gains[cs] += (e if cover is None else e.sub_(cover[rows, None]).clamp_(min=0)).sum(0)
        return gains

    def column(self, j: int) -> Tensor:
        """M[:, j] over all rows."""
        col = self.units(slice(j, j + 1))
        return torch.cat([self.entries(scaled, gamma, col)[:, 0] for _, scaled, gamma in self.row_blocks()])


class _StoredGreedy:
    """Greedy facility location on the stored matrix: every gain kept exact by per-step updates.

    When a pick raises row i's coverage by r_i, candidate j loses min(max(M[i, j] - cover_i, 0), r_i): only rows
    with r_i > 0 change any gain, and they are few after the first steps (the first pick raises every row).
    """

    def __init__(self, cov: _Coverage, k: int) -> None:
        self.cov, self.k, self.M = cov, k, cov.matrix
        dev, rows = cov.device, cov.matrix.shape[0]
        self.stats = SelectionStats(steps=k, stored_matrix=True)
        self.gains = self.M.sum(0)
        self.cover = torch.zeros(rows, dtype=torch.float64, device=dev)
        self.taken = torch.zeros(cov.L, dtype=torch.bool, device=dev)
        self.picks = torch.zeros(k, dtype=torch.long, device=dev)
        self.spare = rows - 1  # the all-zero row that pads static-size row sets
        self.block = max(1, _TILE_ENTRIES // cov.L)

    def run(self, static_shapes: bool) -> Tensor:
        if not static_shapes:
            for step in range(self.k):
                self.stats.rows_updated += int(self._step(step, None))
            return self.picks
        capacity, start = self.M.shape[0], 0
        for stop in [*(w for w in _WINDOWS if w < self.k), self.k]:
            saved = (self.gains.clone(), self.cover.clone(), self.taken.clone())
            counts = torch.stack([self._step(step, capacity) for step in range(start, stop)])
            worst = int(counts.max())  # the window's one host synchronisation
            if worst > capacity:  # a later step of the window saw a truncated row set: re-run it with every row
                self.stats.window_reruns += 1
                self.gains, self.cover, self.taken = saved
                capacity = self.M.shape[0]
                counts = torch.stack([self._step(step, capacity) for step in range(start, stop)])
                worst = int(counts.max())
            self.stats.rows_updated += capacity * (stop - start)
            capacity, start = max(worst, 1), stop
        return self.picks

    def _step(self, step: int, capacity: int | None) -> Tensor:
        """One pick; returns the number of rows whose coverage rose (a 0-d tensor, not read here)."""
        gains = self.gains.masked_fill(self.taken, -math.inf)
        best = gains.max()
        # Ties as the dense greedy breaks them: the lowest index within the tolerance band (argmax: first max).
        pick = (gains >= best - torch.clamp(best * TIE_RTOL, min=TIE_ATOL)).to(torch.uint8).argmax().view(1)
        self.picks[step : step + 1] = pick
        self.taken.index_fill_(0, pick, True)
        column = self.M.index_select(1, pick).squeeze(1)
        raised = (column - self.cover).clamp_(min=0)
        changed = raised > 0
        if capacity is None:
            rows = torch.nonzero(changed).squeeze(1)
        else:
            rows = torch.nonzero_static(changed, size=capacity, fill_value=self.spare).squeeze(1)
        for sl in _spans(rows.shape[0], self.block):
            r = rows[sl]
            excess = self.M.index_select(0, r).sub_(self.cover[r, None]).clamp_(min=0)
            self.gains -= torch.minimum(excess, raised[r, None], out=excess).sum(0)
        torch.maximum(self.cover, column, out=self.cover)
        return changed.sum()


class _LazyGreedy:
    """Greedy facility location on exact gains, refreshed lazily (see the module docstring).

    `gain[j]` is j's exact gain for the coverage after `fresh_at[j]` picks, hence an upper bound on its
    current gain; picked candidates hold -inf.
    """

    def __init__(self, cov: _Coverage) -> None:
        self.cov = cov
        self.stats = SelectionStats()
        dev = cov.device
        self.gain = cov.all_gains()
        self.scale = float(self.gain.max())
        self.fresh_at = torch.zeros(cov.L, dtype=torch.long, device=dev)
        self.cover = torch.zeros(cov.m + cov.L, dtype=torch.float64, device=dev)
        self.raised_at = torch.zeros(cov.m + cov.L, dtype=torch.long, device=dev)  # picks made when last raised
        self.snapshots = {0: self.cover.clone()}  # step -> coverage after that many picks
        self.changed: list[int] = [cov.L]  # [s]: visual rows raised since s picks, for the current step

    def run(self, k: int) -> Tensor:
        picks = []
        for step in range(k):
            pick = self._decide(step, self._settle(step))
            self._take(pick, step)
            self._forget_snapshots()
            picks.append(pick)
        self.stats.steps = k
        return torch.tensor(picks, dtype=torch.long, device=self.cov.device)

    @staticmethod
    def _tolerance(best: float) -> float:
        return max(TIE_RTOL * best, TIE_ATOL)

    def _best_fresh(self, step: int) -> float:
        return float(torch.where(self.fresh_at == step, self.gain, -math.inf).max())

    def _settle(self, step: int) -> float:
        """Refresh stale candidates, best bound first, until none can reach the best fresh gain's tie band.

        Returns the best fresh gain, which is then the best gain of all.
        """
        # Nothing is fresh at the start of a step, except at step 0 where every gain is.
        batch, best = _FIRST_BATCH, float(self.gain.max()) if step == 0 else -math.inf
        while True:
            # With nothing fresh yet every open candidate is stale; a finite floor keeps the picked (-inf) out.
            floor = best - self._tolerance(best) - _DRIFT * self.scale * (step + 1) if best > -math.inf else -_HUGE
            stale = torch.nonzero((self.fresh_at < step) & (self.gain >= floor)).squeeze(1)
            if stale.numel() == 0:
                return best
            if best > -math.inf and self._sweep_is_cheaper(stale):
                self._sweep(step)
                return self._best_fresh(step)
            everything = stale.numel() <= batch
            if not everything:
                stale = stale[torch.topk(self.gain[stale], batch, sorted=False).indices]
            self._refresh(stale, step)
            best = max(best, float(self.gain[stale].max()))
            if everything:  # nothing stale is left to check
                return best
            batch *= 2

    def _sweep_is_cheaper(self, stale: Tensor) -> bool:
        """Would refreshing `stale` one by one cost more row×candidate products than one symmetric sweep?"""
        changed = torch.tensor(self.changed, dtype=torch.float64, device=self.cov.device)
        rows = changed[self.fresh_at[stale]]
        rows = torch.where(rows > _FULL_REFRESH_FRACTION * self.cov.L, self.cov.L, rows)
        return float(rows.sum()) > _SWEEP_FACTOR * self.cov.L * self.cov.L / 2

    def _sweep(self, step: int) -> None:
        self.stats.sweeps += 1
        self._snapshot(step)
        gain = self.cov.all_gains(self.cover)
        self.gain = gain.masked_fill_(self.gain == -math.inf, -math.inf)
        self.fresh_at.fill_(step)

    def _decide(self, step: int, best: float) -> int:
        """Every fresh gain within the tolerance of the best is a tie, and the lowest index wins."""
        tied = (self.fresh_at == step) & (self.gain >= best - self._tolerance(best))
        return int(torch.nonzero(tied)[0, 0])

    def _take(self, pick: int, step: int) -> None:
        column = self.cov.column(pick)
        self.raised_at[column > self.cover] = step + 1
        torch.maximum(self.cover, column, out=self.cover)
        self.gain[pick] = -math.inf
        # Rows raised since s picks, for s = 0..step+1: one histogram of the last raise, read from the top.
        counts = torch.bincount(self.raised_at[self.cov.m :], minlength=step + 2)[: step + 2]
        self.changed = (self.cov.L - torch.cumsum(counts, 0)).tolist()

    def _snapshot(self, step: int) -> None:
        if step not in self.snapshots:
            self.snapshots[step] = self.cover.clone()
            self.stats.snapshots_peak = max(self.stats.snapshots_peak, len(self.snapshots))

    def _forget_snapshots(self) -> None:
        if len(self.snapshots) > _SNAPSHOTS_KEPT:
            live = set(torch.unique(self.fresh_at[self.gain > -math.inf]).tolist())
            self.snapshots = {s: c for s, c in self.snapshots.items() if s in live}

    # ---- exact refreshes ------------------------------------------------------------------------------

    def _refresh(self, cand: Tensor, step: int) -> None:
        """Make the gains of `cand` exact for the coverage after `step` picks.

        A candidate last exact at step s only lost gain on the rows raised since s. Candidates are grouped
        by how many rows that is (powers of two), so one matrix product per group serves them all; those
        for which more than half the rows changed are summed afresh over all rows.
        """
        self.stats.refresh_rounds += 1
        self._snapshot(step)
        groups: dict[int, list[int]] = {}
        since = self.fresh_at[cand].tolist()
        for position, s in enumerate(since):
            rows = self.changed[s]
            band = -1 if s == 0 or rows > _FULL_REFRESH_FRACTION * self.cov.L else max(rows, 1).bit_length()
            groups.setdefault(band, []).append(position)
        for band, positions in groups.items():
            members = cand[positions] if len(positions) < cand.numel() else cand
            if band < 0:
                self.gain[members] = self._summed_gains(members)
                continue
            oldest = min(since[p] for p in positions)
            rows = torch.nonzero(self.raised_at[self.cov.m :] > oldest).squeeze(1)
            self.stats.incremental_evaluations += len(positions)
            self.stats.incremental_rows += len(positions) * (rows.numel() + self.cov.m)
            self.gain[members] -= self._losses(members, [since[p] for p in positions], rows)
        self.fresh_at[cand] = step

    def _summed_gains(self, cand: Tensor) -> Tensor:
        """Σ_i max(M[i, j] - cover_i, 0) over all rows, for each candidate j."""
        self.stats.full_evaluations += cand.numel()
        out = torch.zeros(cand.numel(), dtype=torch.float64, device=self.cov.device)
        for cs in _spans(cand.numel(), self.cov.tile):
            cols = self.cov.units(cand[cs])
            for rows, scaled, gamma in self.cov.row_blocks(None, cols.shape[0]):
                e = self.cov.entries(scaled, gamma, cols)
                out[cs] += e.sub_(self.cover[rows, None]).clamp_(min=0).sum(0)
        return out

    def _losses(self, cand: Tensor, since: list[int], rows: Tensor) -> Tensor:
        """Exact gain each candidate lost since its step `since`, given every visual row raised since then.

        Row i's share: max(0, M - then_i) - max(0, M - now_i) = clip(M - then_i, 0, now_i - then_i); it is
        zero on rows that did not change, so one set of rows serves candidates of different ages.
        """
        steps = sorted(set(since))
        snapshots = [self.snapshots[s] for s in steps]
        which = torch.tensor([steps.index(s) for s in since], device=self.cov.device) if len(steps) > 1 else None
        out = torch.zeros(cand.numel(), dtype=torch.float64, device=self.cov.device)
        for cs in _spans(cand.numel(), self.cov.tile):
            cols = self.cov.units(cand[cs])
            for global_rows, scaled, gamma in self.cov.row_blocks(rows, cols.shape[0]):
                if which is None:
                    then = snapshots[0][global_rows, None]
                else:  # [rows, candidates]: each candidate's coverage as it was when its gain was exact
                    then = torch.stack([snap[global_rows] for snap in snapshots], 1)[:, which[cs]]
                e = self.cov.entries(scaled, gamma, cols).sub_(then).clamp_(min=0)
                out[cs] += torch.minimum(e, self.cover[global_rows, None] - then, out=e).sum(0)
        return out


# ---- training: straight-through estimator ------------------------------------------------------------


def straight_through_select(tokens: Tensor, indices: Tensor, *, soft_temperature: float = 1.0,
                            block_rows: int = 64) -> Tensor:
    """tokens[indices] in the forward pass; gradients flow through the soft selection W·V.

    W = row-softmax((ṽ ṽᵀ)[indices] / soft_temperature) with ṽ the L2-normalised tokens; W is built
    `block_rows` selected rows at a time, so it never needs more than k×L memory.
    """
    if tokens.dim() != 2 or indices.dim() != 1:
        raise ValueError(f"straight_through_select: need tokens [L, D] and indices [k], got "
                         f"{tuple(tokens.shape)} and {tuple(indices.shape)}")
    if soft_temperature <= 0:
        raise ValueError(f"straight_through_select: soft_temperature must be > 0, got {soft_temperature}")
    indices = indices.to(device=tokens.device, dtype=torch.long)
    hard = tokens[indices]
    if not (torch.is_grad_enabled() and tokens.requires_grad):
        return hard
    if indices.numel() == tokens.shape[0] and torch.equal(indices, torch.arange(len(indices), device=indices.device)):
        # Every token kept (L ≤ k): the selection is the identity, so there is nothing to estimate and the exact
        # gradient is used. The soft path would blur each token's gradient over all tokens of its image
        # (cosines / 1.0 give near-uniform weights), which starved the vision encoder of token-level signal.
        return hard
    work = tokens.to(torch.promote_types(tokens.dtype, torch.float32))
    unit = F.normalize(work, dim=1)
    soft = torch.cat([
        torch.softmax(unit[idx] @ unit.T / soft_temperature, dim=1) @ work
        for idx in indices.split(block_rows)
    ]).to(tokens.dtype)
    # soft - soft.detach() is exactly zero, so the value is tokens[indices] bit for bit, and the only
    # gradient path is the soft selection.
    return hard.detach() + (soft - soft.detach())
