"""Concept-preserving token selection (SPEC §3.5) with memory linear in the number of tokens.

`select_concepts` returns the indices the dense greedy facility-location selection returns, without ever
holding the L×L coverage matrix. The coverage matrix M (rows: text tokens then visual tokens; columns:
candidate visual tokens) is recomputed tile by tile from the normalised tokens, in float64:

1. Row normalisers. Q's rows are softmaxes over cosine similarities; the similarity matrix is symmetric, so
   one sweep over the upper triangle of tiles gives every row's normaliser, and a second sweep gives every
   column sum of Q (= every candidate's first-step gain). Text rows get their own two sweeps.
2. Greedy with exact gains kept up to date lazily. A candidate's gain only ever shrinks (submodularity), so
   an old exact gain is an upper bound; candidates whose bound can still reach the best fresh gain are
   refreshed. A refresh is incremental: only rows whose coverage changed since the candidate's gain was
   last exact contribute to the change, and those rows are logged per step.
3. Before each pick, every candidate that may be within the tie tolerance of the best is re-evaluated from
   scratch over all rows, and the pick is made on those fresh sums: the largest gain, ties (gains within
   `TIE_RTOL`·best or `TIE_ATOL`) going to the lowest index.

docs/token_selection.md gives the exactness argument and the memory accounting.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# Ties: two gains are equal when they differ by less than this. Rounding in two differently ordered float64
# computations of one gain is ~1e-15 relative, so exact ties (duplicated tokens) always resolve to the
# lowest index, and a genuine gap must be ~1e-9 relative before it decides a pick.
TIE_RTOL = 1e-9
TIE_ATOL = 1e-13
# Rounding allowance for gains kept up to date incrementally rather than summed afresh (relative to the
# largest first-step gain, per step); it only widens the set of candidates that get re-evaluated.
_DRIFT = 1e-12
_MIN_TEMPERATURE = 0.005
_FIRST_BATCH = 16


@dataclass
class SelectionStats:
    """What the lazy greedy did: for benchmarks and the docs, not for decisions."""

    full_evaluations: int = 0
    incremental_evaluations: int = 0
    incremental_rows: int = 0
    steps: int = 0
    log_entries_peak: int = 0
    notes: list[str] = field(default_factory=list)


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
) -> Tensor:
    """Indices (sorted ascending, on `tokens.device`) of the k tokens greedy facility location keeps.

    tokens [L, D]; text_tokens [m, D] (the prompt only, never answer tokens) adds text rows P above
    coverage_weight·Q. Similarity tiles are `chunk_size` rows × `tile_columns` columns of float64.
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
) -> tuple[Tensor, SelectionStats]:
    """`select_concepts` plus counters describing the work done."""
    _check_inputs(tokens, k, text_tokens, temperature, text_temperature, coverage_weight, chunk_size, tile_columns)
    length = tokens.shape[0]
    if length <= k:
        return torch.arange(length, device=tokens.device), SelectionStats()
    cov = _Coverage(tokens.detach(), None if text_tokens is None else text_tokens.detach(),
                    temperature, text_temperature, coverage_weight, chunk_size, tile_columns)
    greedy = _LazyGreedy(cov)
    chosen = greedy.run(k)
    return torch.sort(chosen).values.to(tokens.device), greedy.stats


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
    if not torch.isfinite(tokens).all():
        raise ValueError("select_concepts: tokens contain NaN or Inf; check the encoder output")
    if text is not None:
        if text.dim() != 2 or text.shape[0] == 0 or text.shape[1] != tokens.shape[1]:
            raise ValueError(
                f"select_concepts: text_tokens must be [m>0, {tokens.shape[1]}], got {tuple(text.shape)}; "
                "pass None for selection without text conditioning"
            )
        if not torch.isfinite(text).all():
            raise ValueError("select_concepts: text_tokens contain NaN or Inf")


def _inverse_norms(x: Tensor) -> Tensor:
    norms = torch.linalg.vector_norm(x.to(torch.float64), dim=1)
    # A zero token stays a zero vector (cosine 0 with everything), as F.normalize does.
    return 1.0 / norms.clamp_min(1e-12)


class _Coverage:
    """The coverage matrix M = [P; w·Q] (or Q alone), computed tile by tile and never stored.

    Global row ids: 0..m-1 are text rows, m..m+L-1 visual rows (visual row m+i belongs to token i).
    """

    def __init__(self, tokens, text, temperature, text_temperature, weight, chunk_size, tile_columns):
        self.L = tokens.shape[0]
        self.m = 0 if text is None else text.shape[0]
        self.tau, self.text_tau = float(temperature), float(text_temperature)
        self.tile = int(tile_columns)
        self.chunk = max(self.tile, (int(chunk_size) + self.tile - 1) // self.tile * self.tile)
        self.device = tokens.device
        # The float64 unit vectors are kept (2× a float32 input, linear in L): every tile reads them.
        self.vhat = tokens.to(torch.float64) * _inverse_norms(tokens)[:, None]
        self.that = None if text is None else text.to(torch.float64) * _inverse_norms(text)[:, None]
        self.visual_scale = (float(weight) if text is not None else 1.0) / self.L
        self.z = self._visual_normalisers()
        self.text_shift, self.text_z = self._text_normalisers() if text is not None else (None, None)

    # ---- normalised rows and tiles ------------------------------------------------------------------

    def unit(self, idx) -> Tensor:
        return self.vhat[idx]

    def text_unit(self, idx) -> Tensor:
        return self.that[idx]

    def _kernel(self, rows, cols) -> Tensor:
        # exp((cos - 1)/tau): cos <= 1, so the fixed shift never overflows and the diagonal is ~1.
        s = self.unit(rows) @ self.unit(cols).T
        return s.sub_(1.0).mul_(1.0 / self.tau).exp_()

    def visual_entries(self, tok_rows, cols) -> Tensor:
        e = self._kernel(tok_rows, cols)
        return e.mul_((self.visual_scale / self.z[tok_rows])[:, None])

    def text_entries(self, text_rows, cols) -> Tensor:
        s = self.text_unit(text_rows) @ self.unit(cols).T
        s.sub_(self.text_shift[text_rows, None]).mul_(1.0 / self.text_tau).exp_()
        return s.mul_((1.0 / (self.m * self.text_z[text_rows]))[:, None])

    def entries(self, rows: Tensor, cols: Tensor) -> Tensor:
        """M[rows, cols] for global row ids `rows` (any mix of text and visual rows)."""
        if self.m == 0:
            return self.visual_entries(rows, cols)
        is_text = rows < self.m
        if bool(is_text.all()):
            return self.text_entries(rows, cols)
        if not bool(is_text.any()):
            return self.visual_entries(rows - self.m, cols)
        out = torch.empty(rows.shape[0], cols.shape[0], dtype=torch.float64, device=self.device)
        out[is_text] = self.text_entries(rows[is_text], cols)
        out[~is_text] = self.visual_entries(rows[~is_text] - self.m, cols)
        return out

    def row_chunks(self, rows: Tensor):
        for start in range(0, rows.shape[0], self.chunk):
            yield rows[start : start + self.chunk]

    def col_chunks(self, cols: Tensor):
        for start in range(0, cols.shape[0], self.tile):
            yield start, cols[start : start + self.tile]

    def all_rows(self) -> Tensor:
        return torch.arange(self.m + self.L, device=self.device)

    # ---- normalisers and first-step gains -------------------------------------------------------------

    def _symmetric_tiles(self):
        """(row slice, column slice, off_band) covering each unordered token pair once.

        Row blocks are `chunk` wide, column blocks `tile` wide and aligned with them; inside a row block's
        own band every ordered pair is computed, beyond it each tile also stands for its transpose.
        """
        for r0 in range(0, self.L, self.chunk):
            r1 = min(r0 + self.chunk, self.L)
            for c0 in range(r0, self.L, self.tile):
                yield slice(r0, r1), slice(c0, min(c0 + self.tile, self.L)), c0 >= r1

    def _visual_normalisers(self) -> Tensor:
        z = torch.zeros(self.L, dtype=torch.float64, device=self.device)
        for rows, cols, off_band in self._symmetric_tiles():
            e = self._kernel(rows, cols)
            z[rows] += e.sum(1)
            if off_band:
                z[cols] += e.sum(0)
        return z

    def visual_column_sums(self) -> Tensor:
        inv_z = 1.0 / self.z
        sums = torch.zeros(self.L, dtype=torch.float64, device=self.device)
        for rows, cols, off_band in self._symmetric_tiles():
            e = self._kernel(rows, cols)
            sums[cols] += e.T @ inv_z[rows]
            if off_band:
                sums[rows] += e @ inv_z[cols]
        return sums.mul_(self.visual_scale)

    def _text_normalisers(self) -> tuple[Tensor, Tensor]:
        # Text cosines need not reach 1, so each text row is shifted by its own maximum (online log-sum-exp).
        shift = torch.full((self.m,), -torch.inf, dtype=torch.float64, device=self.device)
        z = torch.zeros(self.m, dtype=torch.float64, device=self.device)
        all_cols = torch.arange(self.L, device=self.device)
        for rows in self.row_chunks(torch.arange(self.m, device=self.device)):
            for _, cols in self.col_chunks(all_cols):
                s = self.text_unit(rows) @ self.unit(cols).T
                new_shift = torch.maximum(shift[rows], s.max(1).values)
                z[rows] = z[rows] * torch.exp((shift[rows] - new_shift) / self.text_tau)
                z[rows] += s.sub_(new_shift[:, None]).mul_(1.0 / self.text_tau).exp_().sum(1)
                shift[rows] = new_shift
        return shift, z

    def text_column_sums(self) -> Tensor:
        sums = torch.zeros(self.L, dtype=torch.float64, device=self.device)
        all_cols = torch.arange(self.L, device=self.device)
        for rows in self.row_chunks(torch.arange(self.m, device=self.device)):
            for start, cols in self.col_chunks(all_cols):
                sums[start : start + cols.shape[0]] += self.text_entries(rows, cols).sum(0)
        return sums

    def first_gains(self) -> Tensor:
        gains = self.visual_column_sums()
        return gains + self.text_column_sums() if self.m else gains


class _ChangeLog:
    """Per step: the rows whose coverage the pick raised, and their coverage before the raise."""

    def __init__(self, cap_entries: int) -> None:
        self.cap = cap_entries
        self.steps: list[tuple[int, Tensor, Tensor]] = []
        self.entries = 0

    def oldest(self) -> int:
        return self.steps[0][0] if self.steps else 1 << 62

    def append(self, step: int, rows: Tensor, old: Tensor) -> None:
        self.steps.append((step, rows, old))
        self.entries += rows.shape[0]
        # Forgetting old steps keeps memory bounded; candidates older than the log are summed afresh.
        while self.entries > self.cap and len(self.steps) > 1:
            self.entries -= self.steps.pop(0)[1].shape[0]

    def values_at(self, steps: list[int], cover: Tensor) -> tuple[Tensor, Tensor]:
        """Rows changed since min(steps), and [rows, len(steps)] coverage as it was at each of `steps`."""
        rows, _ = self.changed_since(min(steps))
        values = cover[rows, None].repeat(1, len(steps))
        for col, step in enumerate(steps):
            changed, old = self.changed_since(step)
            values[torch.searchsorted(rows, changed), col] = old
        return rows, values

    def changed_since(self, step: int) -> tuple[Tensor, Tensor]:
        """Rows changed at steps >= `step`, each with its coverage as it was at `step`."""
        kept = [(r, o) for s, r, o in self.steps if s >= step]
        rows = torch.cat([r for r, _ in kept])
        old = torch.cat([o for _, o in kept])
        order = torch.argsort(rows, stable=True)  # stable: the earliest step's old value comes first
        rows, old = rows[order], old[order]
        first = torch.ones_like(rows, dtype=torch.bool)
        first[1:] = rows[1:] != rows[:-1]
        return rows[first], old[first]


class _LazyGreedy:
    def __init__(self, cov: _Coverage) -> None:
        self.cov = cov
        self.stats = SelectionStats()
        dev = cov.device
        self.gain = cov.first_gains()
        self.scale = float(self.gain.max())
        self.fresh_at = torch.zeros(cov.L, dtype=torch.long, device=dev)
        self.chosen = torch.zeros(cov.L, dtype=torch.bool, device=dev)
        self.cover = torch.zeros(cov.m + cov.L, dtype=torch.float64, device=dev)
        self.log = _ChangeLog(cap_entries=8 * (cov.m + cov.L))

    def run(self, k: int) -> Tensor:
        picks = []
        for step in range(k):
            self._settle(step)
            pick = self._decide(step)
            self._take(step, pick)
            picks.append(pick)
        self.stats.steps = k
        return torch.tensor(picks, dtype=torch.long, device=self.cov.device)

    def _tolerance(self, best: float) -> float:
        return max(TIE_RTOL * best, TIE_ATOL)

    def _drift(self, step: int) -> float:
        return _DRIFT * self.scale * (step + 1)

    def _best_fresh(self, step: int) -> float:
        fresh = (self.fresh_at == step) & ~self.chosen
        return float(self.gain[fresh].max()) if bool(fresh.any()) else -float("inf")

    def _settle(self, step: int) -> None:
        """Refresh stale candidates until none can reach the best fresh gain (minus the tie tolerance)."""
        batch = _FIRST_BATCH
        while True:
            best = self._best_fresh(step)
            floor = best - self._tolerance(best) - 2 * self._drift(step) if best > -float("inf") else -float("inf")
            stale = (self.fresh_at < step) & ~self.chosen & (self.gain >= floor)
            n_stale = int(stale.sum())
            if n_stale == 0:
                return
            cand = torch.nonzero(stale).squeeze(1)
            if n_stale > batch:
                cand = cand[torch.topk(self.gain[cand], batch).indices]
            self._refresh(cand, step)
            batch *= 2

    def _refresh(self, cand: Tensor, step: int) -> None:
        forgotten = self.fresh_at[cand] < self.log.oldest()
        if bool(forgotten.any()):
            self.gain[cand[forgotten]] = self._fresh_gains(cand[forgotten])
        if not bool(forgotten.all()):
            rest = cand[~forgotten]
            self.gain[rest] -= self._decrements(rest)
        self.fresh_at[cand] = step

    def _fresh_gains(self, cand: Tensor) -> Tensor:
        self.stats.full_evaluations += cand.shape[0]
        out = torch.empty(cand.shape[0], dtype=torch.float64, device=self.cov.device)
        for start, cols in self.cov.col_chunks(cand):
            total = torch.zeros(cols.shape[0], dtype=torch.float64, device=self.cov.device)
            for rows in self.cov.row_chunks(self.cov.all_rows()):
                total += self.cov.entries(rows, cols).sub_(self.cover[rows, None]).clamp_(min=0).sum(0)
            out[start : start + cols.shape[0]] = total
        return out

    def _decrements(self, cand: Tensor) -> Tensor:
        """Exact gain lost by each candidate since its gain was last exact: a sum over changed rows only."""
        steps, which = torch.unique(self.fresh_at[cand], return_inverse=True)
        rows, then = self.log.values_at(steps.tolist(), self.cover)
        now = self.cover[rows]
        self.stats.incremental_evaluations += cand.shape[0]
        self.stats.incremental_rows += rows.shape[0] * cand.shape[0]
        out = torch.empty(cand.shape[0], dtype=torch.float64, device=self.cov.device)
        for start, cols in self.cov.col_chunks(cand):
            col_steps = which[start : start + cols.shape[0]]
            total = torch.zeros(cols.shape[0], dtype=torch.float64, device=self.cov.device)
            for r0 in range(0, rows.shape[0], self.cov.chunk):
                r = slice(r0, r0 + self.cov.chunk)
                old = then[r][:, col_steps]  # coverage of each row when each candidate was last exact
                # Gain lost on row i: max(0, M - old) - max(0, M - now) = clip(M - old, 0, now - old).
                e = self.cov.entries(rows[r], cols).sub_(old).clamp_(min=0)
                total += torch.minimum(e, now[r, None] - old, out=e).sum(0)
            out[start : start + cols.shape[0]] = total
        return out

    def _decide(self, step: int) -> int:
        """Re-sum every candidate that may tie the best, then pick: largest gain, ties to the lowest index."""
        best = self._best_fresh(step)
        floor = best - self._tolerance(best) - 3 * self._drift(step)
        near = torch.nonzero((self.fresh_at == step) & ~self.chosen & (self.gain >= floor)).squeeze(1)
        exact = self._fresh_gains(near)
        self.gain[near] = exact
        top = float(exact.max())
        tied = near[exact >= top - self._tolerance(top)]
        return int(tied.min())

    def _take(self, step: int, pick: int) -> None:
        col = torch.cat([self.cov.entries(r, torch.tensor([pick], device=self.cov.device))[:, 0]
                         for r in self.cov.row_chunks(self.cov.all_rows())])
        raised = torch.nonzero(col > self.cover).squeeze(1)
        self.log.append(step, raised, self.cover[raised].clone())
        self.cover[raised] = col[raised]
        self.chosen[pick] = True
        self.stats.log_entries_peak = max(self.stats.log_entries_peak, self.log.entries)


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
    work = tokens.to(torch.promote_types(tokens.dtype, torch.float32))
    unit = F.normalize(work, dim=1)
    soft = torch.cat([
        torch.softmax(unit[idx] @ unit.T / soft_temperature, dim=1) @ work
        for idx in indices.split(block_rows)
    ]).to(tokens.dtype)
    # soft - soft.detach() is exactly zero, so the value is tokens[indices] bit for bit, and the only
    # gradient path is the soft selection.
    return hard.detach() + (soft - soft.detach())


# ---- optional ablation: learnable concept queries ---------------------------------------------------


@dataclass
class LearnedSelection:
    indices: Tensor  # [k] sorted ascending
    gate: Tensor  # [k]: 1.0 in value, carries the score gradient (multiply the kept tokens by it)
    aux_loss: Tensor  # coverage regulariser, already weighted


class LearnableConceptSelector(nn.Module):
    """The paper's learnable variant (SPEC §3.5, an ablation): concept queries score tokens by cross-attention.

    Scores are each token's strongest attention from any concept; training adds Gumbel noise before
    top-k. The coverage regulariser penalises concepts that attend to the same tokens.
    """

    def __init__(self, dim: int, num_concepts: int = 32, *, gumbel_temperature: float = 1.0,
                 coverage_weight: float = 0.01) -> None:
        super().__init__()
        self.queries = nn.Parameter(torch.randn(num_concepts, dim) * dim**-0.5)
        self.key = nn.Linear(dim, dim, bias=False)
        self.gumbel_temperature = gumbel_temperature
        self.coverage_weight = coverage_weight

    def forward(self, tokens: Tensor, k: int, generator: torch.Generator | None = None) -> LearnedSelection:
        length = tokens.shape[0]
        logits = self.queries @ self.key(tokens).T * tokens.shape[1] ** -0.5  # [C, L]
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
        return LearnedSelection(idx, (1.0 + kept - kept.detach()).to(tokens.dtype), aux)

    def _coverage_loss(self, attention: Tensor) -> Tensor:
        c = attention.shape[0]
        overlap = attention @ attention.T
        off_diagonal = overlap.sum() - overlap.diagonal().sum()
        return self.coverage_weight * off_diagonal / max(c * (c - 1), 1)
