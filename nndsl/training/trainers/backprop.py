"""Backpropagation: forward, loss + penalties, backward, gradient noise, clipping, the optimizer
update at the scheduled rate, constraints — the default trainer (docs/training.md)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from nndsl.training.core import Updater, blowup, penalties
from nndsl.training.epochs import EPOCH_SETTINGS, EpochLoop
from nndsl.training.registry import CheckContext, Trainer, trainer
from nndsl.training.session import Position, Session
from nndsl.training.stages import Stage, stream_seed


@trainer("backprop")
@dataclass(frozen=True, kw_only=True)
class Backprop(Trainer):
    """Gradient descent on the loss with the train block's optimizer (the default trainer)."""

    reads = EPOCH_SETTINGS | {"loss", "optimizer", "schedule", "regularize", "constraint",
                              "clip", "grad_noise", "steps"}
    data_parallel = True
    needs_loss = True

    def check(self, ctx: CheckContext) -> None:
        from nndsl.training.gradient_flow import check_gradient_flow

        if ctx.stage.loss is not None:
            check_gradient_flow(ctx.model, ctx.stage.loss, ctx.stage.frozen, ctx)

    def run(self, session: Session, stage: Stage, index: int, start: Position | None) -> None:
        BackpropLoop(session, stage, index, start).run()


class BackpropLoop(EpochLoop):
    def __init__(self, session: Session, stage: Stage, index: int,
                 start: Position | None) -> None:
        super().__init__(session, stage, index, start)
        self.regs = penalties(self.model, stage.get("regularize"))
        self.updater = Updater(session.engine, self.model, stage, self.seed)
        if start is not None:
            self.updater.state = session.engine.to_backend_state(start.state)

    def state(self) -> dict[str, dict[str, Any]]:
        return self.updater.state

    def update(self, feeds: dict[str, Any]) -> float:
        """One step, in the documented order; the loss is the one before the update."""
        s, stage, engine = self.s, self.stage, self.s.engine
        loss, grads, updates = engine.loss_and_grad(
            self.model, stage.loss, feeds, self.weights, stage.frozen,
            stream_seed(self.seed, s.step), self.regs)
        bad = None if math.isfinite(loss) else "the loss"
        bad = bad or engine.nonfinite(grads)
        if bad is not None:
            raise blowup(stage, s.history.series("loss"), bad, loss,
                         self.updater.rate(s.step, self.epoch), self.epoch, s.step,
                         stage.loss.span if stage.loss else stage.span)
        rate = self.updater.apply(self.weights, grads, s.step, self.epoch)
        self.weights.update(updates)
        s.step += 1
        if s.step_rows:
            s.record({"kind": "step", "step": s.step, "epoch": self.epoch + 1, "loss": loss,
                      "lr": rate})
        return loss

    def row(self) -> dict[str, float]:
        last = self.updater.rate(max(self.s.step - 1, 0), self.epoch - 1)  # the last step's
        return {"lr": last, **super().row()}
