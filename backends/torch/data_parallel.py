"""Data-parallel steps on torch.distributed for the torch engine (nndsl/training/distributed.py
starts the ranks). Each rank takes a contiguous share of every global batch; the step's
gradient is the global batch's: each rank's is weighted by its share of the rows and all of
them are summed in one all-reduce, which also carries the batch loss, the buffers and the stop
vote, so every rank applies the same update and stops at the same step.

Random arrays drawn inside the forward pass (dropout masks, noise, a VAE's epsilon) are drawn
for the whole global batch, from the same seeded stream on every rank, and each rank keeps its
rows: the run draws exactly what one process would.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.distributed as dist


@dataclass
class Shard:
    """The rows of the current global batch that this rank holds: [lo, hi) of `rows`."""

    lo: int = 0
    hi: int = 0
    rows: int = 0

    @property
    def share(self) -> float:
        return (self.hi - self.lo) / self.rows if self.rows else 0.0


@dataclass
class DataParallel:
    """One rank's part in the run: its share of batches and the step's all-reduce."""

    rank: int
    world: int
    vote: Callable[[], bool]  # whether this rank was asked to stop (a signal)
    shard: Shard = field(default_factory=Shard)
    stop_agreed: bool = False

    def take(self, index: np.ndarray) -> np.ndarray:
        """This rank's rows of a global batch `index`."""
        base, extra = divmod(len(index), self.world)
        lo = self.rank * base + min(self.rank, extra)
        hi = lo + base + (self.rank < extra)
        self.shard = Shard(lo, hi, len(index))
        return index[lo:hi]

    def global_draw(self, shape: tuple[int, ...]) -> tuple[tuple[int, ...], slice] | None:
        """For a random array of `shape` in the forward pass: the global batch's shape to draw
        and this rank's slice of it, when its leading axis is this rank's batch."""
        s = self.shard
        if s.rows and shape and shape[0] == s.hi - s.lo and s.rows != shape[0]:
            return (s.rows, *shape[1:]), slice(s.lo, s.hi)
        return None

    def reduce(self, loss: Any, grads: dict[str, Any], updates: dict[str, Any]) -> float:
        """Sum every rank's share-weighted loss, gradients and buffers (in place); agree on
        stopping. Returns the global batch's loss."""
        parts = [*grads.values(), *updates.values()]
        device = parts[0].device if parts else torch.device("cpu")
        dtype = torch.float64
        flat = torch.cat([p.detach().reshape(-1).to(dtype) for p in parts] +
                         [torch.tensor([float(loss), float(self.vote())], dtype=dtype,
                                       device=device)])
        dist.all_reduce(flat)
        offset = 0
        for store in (grads, updates):
            for key, value in store.items():
                n = value.numel()
                store[key] = flat[offset:offset + n].reshape(value.shape).to(value.dtype)
                offset += n
        self.stop_agreed = self.stop_agreed or bool(flat[offset + 1] > 0)
        return float(flat[offset])
