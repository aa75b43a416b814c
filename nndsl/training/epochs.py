"""The loop every epoch-based trainer shares: batches in a seeded order, one update each, a
metrics row per epoch, early stopping, checkpoints and stops — resumable at any step.

A trainer subclasses `EpochLoop` and supplies `update(feeds) -> loss` (and `state()` when it
keeps arrays across steps); the loop does the rest identically for every trainer.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from nndsl import ops
from nndsl.errors import NndslError
from nndsl.training.evaluation import evaluate
from nndsl.training.session import Position, Session
from nndsl.training.stages import Stage, batches

BATCH_STREAM = 11  # the batch order's generator: default_rng([seed, 11, stage])
# What an epoch-based trainer reads besides its own settings.
EPOCH_SETTINGS = frozenset({"batch", "epochs", "shuffle", "metrics", "early_stop"})


class EpochLoop:
    """One stage: epochs of batches, a row of metrics per epoch, checkpoints."""

    default_batch: int | None = None  # a trainer's own default (the perceptron's is 1)
    whole_data = False  # one update per epoch on every row, in data order (anneal, evolve)

    def __init__(self, session: Session, stage: Stage, index: int,
                 start: Position | None) -> None:
        self.s, self.stage, self.index = session, stage, index
        self.model = session.model
        self.weights = session.weights[self.model.name]
        self.seed = int(stage.get("seed"))
        self.rng = np.random.default_rng([self.seed, BATCH_STREAM, index])
        self.epoch, self.skip, self.losses = 0, 0, []
        self.target = session.spec.targets[0][0] if session.spec.targets else None
        given = stage.settings.get("batch")
        self.batch = int(given if given is not None else self.default_batch or stage.get("batch"))
        if self.whole_data:
            self.batch = max(int(session.data.rows), 1)
        self.start = start
        if start is not None:
            if start.record.get("rng") is not None:
                self.rng.bit_generator.state = start.record["rng"]
            self.epoch, self.skip = start.epoch, int(start.record.get("batch", 0))
            self.losses = [float(x) for x in start.record.get("losses", [])]

    # -- what a trainer supplies ---------------------------------------------------------------

    def update(self, feeds: dict[str, Any]) -> float:
        """One step on a batch (backend arrays by name); returns the batch's loss."""
        raise NotImplementedError

    def state(self) -> dict[str, dict[str, Any]]:
        """Arrays to checkpoint (by slot), restored from `self.start.state` on resume."""
        return {}

    def row(self) -> dict[str, float]:
        """The epoch's values beyond the loss: metrics on the training and validation rows."""
        s = self.s
        return evaluate(s.engine, self.model, self.weights, self.stage, s.train_rows, s.val_rows,
                        self.target, batch=self.batch)

    def converged(self) -> bool:
        """A trainer's own reason to end the stage early (the perceptron's: no errors)."""
        return False

    # -- the loop ------------------------------------------------------------------------------

    def position(self, epoch: int, rng: dict[str, Any] | None, batch: int = 0,
                 losses: list[float] | None = None) -> Position:
        return Position(self.index, epoch, {"rng": rng, "batch": batch, "losses": losses or []},
                        self.state())

    def run(self) -> None:
        s = self.s
        n_epochs = s.epochs_for(self.stage)
        while self.epoch < n_epochs and s.budget_left():
            began = self.rng.bit_generator.state
            shuffle = bool(self.stage.get("shuffle")) and not self.whole_data
            for number, picked in enumerate(batches(s.data.rows, self.batch, shuffle, self.rng)):
                if number < self.skip:
                    continue
                if not s.budget_left():
                    break
                feeds = s.rows if self.whole_data else s.batch(picked)
                self.losses.append(self.update(feeds))
                s.on_step(number + 1, -(-s.data.rows // self.batch))
                s.stop_here(self.position(self.epoch, began, number + 1, self.losses))
            self.epoch += 1
            self.end_epoch()
            if self.converged() or early_stop(s, self.stage):
                break
            position = self.position(self.epoch, self.rng.bit_generator.state)
            s.checkpoint(position, must=False)
            s.stop_here(position)

    def end_epoch(self) -> None:
        row = {"kind": "epoch", "step": self.s.step, "epoch": self.epoch,
               "phase": self.stage.name,
               "loss": float(np.mean(self.losses)) if self.losses else math.nan}
        row.update(self.row())
        self.s.record(row)
        self.skip, self.losses = 0, []


def early_stop(session: Session, stage: Stage) -> bool:
    """Whether the stage's early-stop rule says stop, on the series it monitors."""
    rule = stage.get("early_stop")
    if rule is None:
        return False
    monitor = rule.get("monitor", "val_loss")
    series = session.history.series(monitor)
    if not series:
        raise NndslError(f"early_stop monitors '{monitor}', which is not recorded", rule.span,
                         hint="set `split` to hold out validation rows, or monitor `loss`")
    return bool(ops.get(rule.name, "early_stop").compute(series, **dict(rule.kwargs)))
