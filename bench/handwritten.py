"""The hand-written PyTorch training loops nndsl is measured against, configured from the same
train block: torch.optim.Adam with the spec's lr (l2 as coupled weight decay on weights, not
biases, which is what nndsl's `l2` means), StepLR for `step`, clip_grad_norm_ for `norm`.

Both loops record the epoch's mean loss (`loss.item()` per step) and, after every epoch,
compute what nndsl's trainer computes: the spec's metrics on the training rows, and the
validation loss and metrics when the spec holds rows out.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from bench.models import Workload
from nndsl.ops.metrics import metric_column

Batches = Callable[[], Iterable[tuple[torch.Tensor, torch.Tensor]]]


@dataclass
class Setup:
    """A fresh hand-written network with its optimizer and the spec's data as tensors."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.StepLR | None
    clip: float | None
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    train: tuple[torch.Tensor, torch.Tensor]
    val: tuple[torch.Tensor, torch.Tensor] | None
    metrics: tuple[str, ...]


def _tensors(w: Workload, part: dict[str, Any], device: str) -> tuple[torch.Tensor, ...]:
    x = torch.as_tensor(part[w.graph.inputs[0][0]], device=device)
    y = torch.as_tensor(part[w.train.targets[0][0]], device=device)
    return x, y.long() if w.recipe.classifier else y


def setup(w: Workload, device: str, data_device: str | None = None) -> Setup:
    """Everything a hand-written script builds before its first epoch."""
    model = w.module(device)
    opt = w.setting("optimizer")
    if opt.name != "adam":
        raise ValueError(f"the hand-written loop knows adam only, not {opt.name}")
    reg = w.setting("regularize")
    decay = float(reg.get("strength")) if reg is not None else 0.0
    weights = [p for p in model.parameters() if p.ndim > 1]
    biases = [p for p in model.parameters() if p.ndim <= 1]
    optimizer = torch.optim.Adam(
        [{"params": weights, "weight_decay": decay}, {"params": biases, "weight_decay": 0.0}],
        lr=float(opt.get("lr")), betas=(float(opt.get("beta1")), float(opt.get("beta2"))),
        eps=float(opt.get("eps")))
    sched, clip = w.setting("schedule"), w.setting("clip")
    scheduler = torch.optim.lr_scheduler.StepLR(
        optimizer, int(sched.get("every")), float(sched.get("gamma"))) if sched else None
    where = data_device or device
    val = _tensors(w, w.data.val, where) if w.data.val else None
    return Setup(model, optimizer, scheduler, float(clip.get("max")) if clip else None,
                 F.cross_entropy if w.recipe.classifier else F.mse_loss,
                 _tensors(w, w.data.train, where), val,
                 tuple(metric_column(m) for m in w.setting("metrics") or ()))


def train(s: Setup, batches: Batches, epochs: int, device: str,
          after_epoch: Callable[[int, dict[str, float]], None] | None = None) -> list[float]:
    """The textbook loop; returns the epoch losses. `after_epoch(epoch, row)` gets each
    epoch's loss and metrics (a script that writes files hooks in there)."""
    losses = []
    for _ in range(epochs):
        s.model.train()
        total, count = 0.0, 0
        for xb, yb in batches():
            xb, yb = xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
            s.optimizer.zero_grad()
            loss = s.loss(s.model(xb), yb)
            loss.backward()
            if s.clip is not None:
                nn.utils.clip_grad_norm_(s.model.parameters(), s.clip)
            s.optimizer.step()
            total, count = total + loss.item(), count + 1
        if s.scheduler is not None:
            s.scheduler.step()
        losses.append(total / count)
        metrics = evaluate(s)
        if after_epoch is not None:
            after_epoch(len(losses), {"loss": losses[-1], **metrics})
    return losses


def evaluate(s: Setup) -> dict[str, float]:
    """The metrics nndsl records after an epoch (only accuracy is used by these specs)."""
    out: dict[str, float] = {}
    s.model.eval()
    with torch.no_grad():
        for prefix, part in (("", s.train), ("val_", s.val)):
            if part is None or not (prefix or s.metrics):  # nothing to compute from it
                continue
            out_ = s.model(part[0])
            if prefix:
                out[prefix + "loss"] = s.loss(out_, part[1]).item()
            for metric in s.metrics:
                if metric != "accuracy":
                    raise ValueError(f"the hand-written loop knows accuracy only, not {metric}")
                out[prefix + metric] = (out_.argmax(-1) == part[1]).float().mean().item()
    return out


def dataloader_loop(w: Workload, epochs: int, device: str) -> list[float]:
    """The idiomatic script: a DataLoader over a TensorDataset with shuffling (CPU tensors,
    each batch moved to the device)."""
    s = setup(w, device, data_device="cpu")
    loader = DataLoader(TensorDataset(*s.train), batch_size=int(w.setting("batch")),
                        shuffle=bool(w.setting("shuffle")))
    if s.val is not None:
        s.val = (s.val[0].to(device), s.val[1].to(device))
    s.train = (s.train[0].to(device), s.train[1].to(device))  # for the metrics
    return train(s, lambda: loader, epochs, device)


def indexed_loop(w: Workload, epochs: int, device: str, s: Setup | None = None,
                 after_epoch: Callable[[int, dict[str, float]], None] | None = None
                 ) -> list[float]:
    """The fastest plain loop: tensors on the device, batches cut from a fresh permutation.
    A script that writes files passes its own `setup` and per-epoch hook."""
    s = setup(w, device) if s is None else s
    x, y = s.train
    size, rows = int(w.setting("batch")), len(x)

    def batches() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = torch.randperm(rows, device=device)
        for start in range(0, rows, size):
            index = order[start:start + size]
            yield x[index], y[index]

    return train(s, batches, epochs, device, after_epoch)
