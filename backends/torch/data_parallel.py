"""Data-parallel steps on torch.distributed for the torch engine (nndsl/training/distributed.py
starts the ranks). Each rank takes a contiguous share of every global batch; the step's
gradient is the global batch's: each rank's is weighted by its share of the rows and all of
them are summed in one all-reduce, which also carries the batch loss, the buffers and the stop
vote, so every rank applies the same update and stops at the same step. (Two ranks' float32
arrays are summed in float32, with the same result in half the bytes, and the loss and the vote
then travel in a second, small float64 all-reduce: `summing_dtype`.)

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
        scalars = [float(loss), float(self.vote())]
        dtype = summing_dtype(parts, self.world)
        if dtype == torch.float64:  # one message: the arrays, then the loss and the vote
            flat = torch.cat([p.detach().reshape(-1).to(dtype) for p in parts] +
                             [torch.tensor(scalars, dtype=dtype, device=device)])
            dist.all_reduce(flat)
            totals = flat[-2:]
        else:  # the arrays in their own dtype, the loss and the vote beside them in float64
            flat = torch.cat([p.detach().reshape(-1) for p in parts])
            totals = torch.tensor(scalars, dtype=torch.float64, device=device)
            dist.all_reduce(flat)
            dist.all_reduce(totals)
        offset = 0
        for store in (grads, updates):
            for key, value in store.items():
                n = value.numel()
                store[key] = flat[offset:offset + n].reshape(value.shape).to(value.dtype)
                offset += n
        self.stop_agreed = self.stop_agreed or bool(totals[1] > 0)
        return float(totals[0])


def summing_dtype(parts: list[Any], world: int) -> torch.dtype:
    """The dtype the ranks' arrays are summed in: float64, except for two ranks' float32
    arrays, which are summed as they are. The float32 sum of two float32 numbers is their
    exact sum rounded once, as is the float64 sum rounded back: the same bits, in half the
    bytes (an all-reduce of an MLP's 300,000 gradients: 0.8 ms instead of 3.5 on gloo)."""
    if world == 2 and parts and all(p.dtype == torch.float32 for p in parts):
        return torch.float32
    return torch.float64
