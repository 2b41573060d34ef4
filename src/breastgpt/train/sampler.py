"""Deterministic, resumable batch plan: which samples each process reads at each micro-step.

The plan for an epoch is a pure function of (seed, epoch, lengths, global micro-batch size), so a saved
position (epoch, micro-batch index) is all that exact resume needs. A global micro-batch holds
``micro_batch_size × num_processes`` samples; process r reads its slice r. The same global batch therefore
reaches the model whatever the process count, which is what makes 1-process and N-process runs comparable.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch


@dataclass
class DataPosition:
    epoch: int = 0
    micro_batch: int = 0  # global micro-batches already consumed in this epoch

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


def epoch_plan(lengths: list[int], global_micro: int, seed: int, epoch: int, group_by_length: bool,
               mega_batch_factor: int = 8) -> list[list[int]]:
    """Global micro-batches of sample indices for one epoch; an incomplete last batch is dropped.

    Length grouping: shuffle, cut into windows of ``mega_batch_factor`` batches, sort each window by
    length (longest first) so a batch holds similar lengths, then shuffle the batch order again.
    """
    gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    order = torch.randperm(len(lengths), generator=gen).tolist()
    if group_by_length:
        window = global_micro * mega_batch_factor
        order = [i for w in range(0, len(order), window)
                 for i in sorted(order[w:w + window], key=lambda j: -lengths[j])]
    batches = [order[b:b + global_micro] for b in range(0, len(order) - global_micro + 1, global_micro)]
    if group_by_length:
        perm = torch.randperm(len(batches), generator=gen).tolist()
        batches = [batches[p] for p in perm]
    return batches


class BatchPlan:
    """Iterates this process's micro-batches from a position; ``position`` always names the next one."""

    def __init__(self, lengths: list[int], micro_batch_size: int, num_processes: int, rank: int, seed: int,
                 group_by_length: bool = True, mega_batch_factor: int = 8):
        self.lengths, self.micro, self.world, self.rank = lengths, micro_batch_size, num_processes, rank
        self.seed, self.group, self.mega = seed, group_by_length, mega_batch_factor
        self.position = DataPosition()
        self._cached: tuple[int, list[list[int]]] = (-1, [])
        if self.batches_per_epoch() == 0:
            raise ValueError(f"{len(lengths)} samples are fewer than one global micro-batch "
                             f"({micro_batch_size} × {num_processes} processes); add data or lower the batch size")

    def batches_per_epoch(self) -> int:
        return len(self.lengths) // (self.micro * self.world)

    def global_batch(self, position: DataPosition) -> list[int]:
        if self._cached[0] != position.epoch:  # the plan is O(N log N): build it once per epoch
            plan = epoch_plan(self.lengths, self.micro * self.world, self.seed, position.epoch, self.group, self.mega)
            self._cached = (position.epoch, plan)
        return self._cached[1][position.micro_batch]

    def next_local(self) -> list[int]:
        """This process's sample indices for the next micro-batch; advances the position."""
        batch = self.global_batch(self.position)
        local = batch[self.rank * self.micro:(self.rank + 1) * self.micro]
        self.position.micro_batch += 1
        if self.position.micro_batch >= self.batches_per_epoch():
            self.position = DataPosition(self.position.epoch + 1, 0)
        return local

    def state_dict(self) -> dict[str, int]:
        return {**self.position.to_dict(), "seed": self.seed, "num_samples": len(self.lengths),
                "global_micro_batch": self.micro * self.world}

    def load_state_dict(self, state: dict[str, int]) -> None:
        expect = {"seed": self.seed, "num_samples": len(self.lengths), "global_micro_batch": self.micro * self.world}
        for key, value in expect.items():
            if int(state[key]) != value:
                raise ValueError(f"checkpoint data position was saved with {key}={state[key]}, this run has {value}; "
                                 "resume with the same data, seed and global micro-batch (micro × processes)")
        self.position = DataPosition(int(state["epoch"]), int(state["micro_batch"]))


__all__ = ["BatchPlan", "DataPosition", "epoch_plan"]
