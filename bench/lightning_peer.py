"""Lightning (`pytorch_lightning`), the way a Lightning user trains: a LightningModule around the
hand-written torch twin (nndsl's initial weights), `Trainer.fit` over a plain DataLoader of
in-memory tensors, with everything off that a bare loop does not do: no logger, no checkpoints,
no progress bar, no model summary, no sanity validation.

The optimizer and schedule are the hand-written loop's own (bench/handwritten.py: Adam with the
spec's lr, `l2` as coupled weight_decay on weights, StepLR for `step`); `norm(max)` clipping is
the Trainer's gradient_clip_val. The epoch's loss is logged with `self.log(on_epoch=True)`
(accumulated on the device, as Lightning does). After every epoch, Lightning's validation loop
does what the hand-written loops do: the spec's metrics on the training rows, and the loss and
metrics on the held-out rows when the spec has them, each in one batch.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from bench.handwritten import Setup, setup
from bench.models import Workload

# Lightning's start-up lines ("GPU available: ...") and its advice about DataLoader workers
for _name in ("pytorch_lightning", "lightning.pytorch", "lightning_fabric"):
    logging.getLogger(_name).setLevel(logging.ERROR)


class SpecModule(pl.LightningModule):
    """The spec's network, loss, metrics and optimizer as one LightningModule. `checks` names
    the validation loaders: "" for the training rows (the spec's metrics, as nndsl records them
    after an epoch), "val_" for the held-out rows (their loss and metrics)."""

    def __init__(self, s: Setup, checks: list[str]) -> None:
        super().__init__()
        self.net = s.model
        self.setup_ = s
        self.checks = checks

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], _: int) -> torch.Tensor:
        x, y = batch
        loss = self.setup_.loss(self.net(x), y)
        self.log("loss", loss, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], _: int,
                        dataloader_idx: int = 0) -> None:
        x, y = batch
        out, prefix = self.net(x), self.checks[dataloader_idx]
        logged = {prefix + "loss": self.setup_.loss(out, y)} if prefix else {}
        for metric in self.setup_.metrics:
            if metric != "accuracy":
                raise ValueError(f"the Lightning peer knows accuracy only, not {metric}")
            logged[prefix + metric] = (out.argmax(-1) == y).float().mean()
        self.log_dict(logged, add_dataloader_idx=False)

    def configure_optimizers(self) -> Any:
        s = self.setup_
        if s.scheduler is None:
            return s.optimizer
        return {"optimizer": s.optimizer, "lr_scheduler": s.scheduler}


def trainer(epochs: int, device: str, clip: float | None) -> pl.Trainer:
    """A Trainer with nothing on that the loop does not need."""
    return pl.Trainer(
        accelerator="cpu" if device == "cpu" else "gpu",
        devices=1 if device in ("cpu", "cuda") else [int(device.split(":")[1])], max_epochs=epochs,
        logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, num_sanity_val_steps=0, gradient_clip_val=clip,
        gradient_clip_algorithm="norm" if clip is not None else None)


def fit(w: Workload, epochs: int, device: str) -> dict[str, float]:
    """A fresh module trained by `Trainer.fit`; returns the last epoch's logged metrics."""
    s = setup(w, "cpu")  # the Trainer moves the module to the device
    train = DataLoader(TensorDataset(*s.train), batch_size=int(w.setting("batch")),
                       shuffle=bool(w.setting("shuffle")))
    parts = {"": s.train if s.metrics else None, "val_": s.val}
    checks = [prefix for prefix, part in parts.items() if part is not None]
    loaders = [DataLoader(TensorDataset(*parts[p]), batch_size=len(parts[p][0])) for p in checks]
    with warnings.catch_warnings():  # advice on workers, deprecations inside Lightning
        warnings.simplefilter("ignore")
        fitter = trainer(epochs, device, s.clip)
        fitter.fit(SpecModule(s, checks), train_dataloaders=train,
                   val_dataloaders=loaders or None)
    return {k: float(v) for k, v in fitter.callback_metrics.items()}
