"""Backpropagation: forward, loss + penalties, backward, gradient noise, clipping, the optimizer
update at the scheduled rate, constraints — the default trainer (docs/training.md)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from nndsl.errors import NndslError
from nndsl.ir import Graph
from nndsl.training import step_options, truncate
from nndsl.training.core import Updater, blowup, penalties
from nndsl.training.diagnostics import COLUMNS, Probe, check_rows
from nndsl.training.epochs import EPOCH_SETTINGS, EpochLoop
from nndsl.training.registry import CheckContext, Trainer, trainer
from nndsl.training.session import Position, Session
from nndsl.training.stages import Stage, stream_seed


@trainer("backprop")
@dataclass(frozen=True, kw_only=True)
class Backprop(Trainer):
    """Gradient descent on the loss with the train block's optimizer (the default trainer)."""

    reads = EPOCH_SETTINGS | {"loss", "optimizer", "schedule", "regularize", "constraint",
                              "clip", "grad_noise", "steps", "diagnostics", "truncate",
                              "compile", "precision"}
    data_parallel = True
    needs_loss = True

    def check(self, ctx: CheckContext) -> None:
        from nndsl.training.gradient_flow import check_gradient_flow

        if ctx.stage.loss is not None:
            check_gradient_flow(ctx.model, ctx.stage.loss, ctx.stage.frozen, ctx)
        if ctx.stage.get("truncate") is not None:
            truncate.check(ctx.model, ctx.spec, ctx.stage)

    def run(self, session: Session, stage: Stage, index: int, start: Position | None) -> None:
        try:
            BackpropLoop(session, stage, index, start).run()
        finally:  # the next stage's trainer starts from a plain float32 step
            step_options.reset(session.engine)

    def check_state(self, position: Position, models: Mapping[str, Graph]) -> None:
        super().check_state(position, models)
        if "loss_scale" in position.record:
            from nndsl.backends.torch.precision import LossScale

            LossScale.restore(position.record["loss_scale"])
        pending = position.record.get("diagnostics")
        if pending is not None:
            from nndsl.training.checkpoint_schema import Damaged

            try:
                check_rows([{"epoch": 0, "step": 0, "phase": "", **r} for r in pending])
            except (NndslError, TypeError) as e:
                raise Damaged("record.diagnostics", pending, "a list of per-layer rows") from e


class BackpropLoop(EpochLoop):
    def __init__(self, session: Session, stage: Stage, index: int,
                 start: Position | None) -> None:
        super().__init__(session, stage, index, start)
        self.regs = penalties(self.model, stage.get("regularize"))
        self.updater = Updater(session.engine, self.model, stage, self.seed)
        if start is not None:
            self.updater.state = session.engine.to_backend_state(start.state)
        step_options.configure(session.engine, stage)  # precision, compile (torch)
        self.scale = getattr(session.engine, "loss_scale", None)  # fp16's, else None
        if self.scale is not None and start is not None and "loss_scale" in start.record:
            from nndsl.backends.torch.precision import LossScale

            self.scale = session.engine.loss_scale = LossScale.restore(
                start.record["loss_scale"])
        # diagnostics: measured on each epoch's last batch, kept until the epoch's row
        self.probe = Probe(session.engine, self.model, stage.loss, stage.frozen) \
            if stage.get("diagnostics") and stage.loss is not None else None
        self.batches = -(-session.data.rows // self.batch)
        self.pending: list[dict[str, Any]] | None = \
            start.record.get("diagnostics") if start is not None else None
        length = stage.get("truncate")  # truncated BPTT: each batch in chunks of steps
        self.chunks = truncate.Truncation(self.model, session.spec, int(length)) \
            if length is not None else None

    def state(self) -> dict[str, dict[str, Any]]:
        return self.updater.state

    def update(self, feeds: dict[str, Any]) -> float:
        """One step on the batch (with `truncate`, one per chunk of it); the loss is the one
        before the update. Diagnostics measure the batch's first chunk."""
        probe = self.probe if len(self.losses) == self.batches - 1 else None
        if probe is not None:
            first = self.chunks.chunk(feeds, 0) if self.chunks is not None else feeds
            self.pending = probe.measure(first, self.weights, stream_seed(self.seed, self.s.step))
            before = dict(self.weights)  # updates are out of place: these stay the old arrays
        if self.chunks is None:
            loss = self.step(feeds, self.model, {})[0]
        else:
            loss = self.chunks.run(feeds, self.step, self.s.budget_left)
        if probe is not None and self.pending is not None:
            probe.ratios(before, self.weights, self.pending)
        return loss

    def step(self, feeds: dict[str, Any], model: Graph,
             carried: dict[str, Any]) -> tuple[float, dict[str, Any]]:
        """One update, in the documented order, from `carried` recurrent state (truncate):
        (the loss, the state the recurrent layers ended with, detached)."""
        s, stage, engine = self.s, self.stage, self.s.engine
        weights = {**self.weights, **carried} if carried else self.weights
        loss, grads, updates = engine.loss_and_grad(
            model, stage.loss, feeds, weights, stage.frozen, stream_seed(self.seed, s.step),
            self.regs)
        bad = None if math.isfinite(loss) else "the loss"
        bad = bad or engine.nonfinite(grads, scratch=True)  # autograd's
        if bad is not None and not self.overflowed(bad):
            raise blowup(stage, s.history.series("loss"), bad, loss,
                         self.updater.rate(s.step, self.epoch), self.epoch, s.step,
                         stage.loss.span if stage.loss else stage.span)
        if bad is None:
            rate = self.updater.apply(self.weights, grads, s.step, self.epoch)
            if self.scale is not None:
                self.scale.stepped()
        else:  # fp16's skipped step: the batch is used, the weights stay
            rate = self.updater.rate(s.step, self.epoch)
        state = {k: updates.pop(k) for k in carried}
        self.weights.update(updates)
        s.step += 1
        if s.step_rows:
            s.record({"kind": "step", "step": s.step, "epoch": self.epoch + 1, "loss": loss,
                      "lr": rate})
        return loss, state

    def overflowed(self, bad: str) -> bool:
        """fp16: a gradient overflowed under the loss scale, so this step updates nothing and
        the scale halves (a non-finite loss, or a scale that cannot shrink, is a blow-up)."""
        from nndsl.backends.torch.precision import MIN_SCALE

        if self.scale is None:
            return False
        if bad == "the loss" or self.scale.scale <= MIN_SCALE:
            return False
        self.scale.skipped()
        return True

    def row(self) -> dict[str, float]:
        last = self.updater.rate(max(self.s.step - 1, 0), self.epoch - 1)  # the last step's
        if self.pending is not None:
            self.s.diagnostics.rows += [{**dict.fromkeys(COLUMNS), "epoch": self.epoch,
                                         "step": self.s.step, "phase": self.stage.name, **r}
                                        for r in self.pending]
            self.pending = None
        return {"lr": last, **super().row()}

    def position(self, epoch: int, rng: dict[str, Any] | None, batch: int = 0,
                 losses: list[float] | None = None) -> Position:
        """The loop's position, with the epoch's diagnostics when they wait for its row."""
        position = super().position(epoch, rng, batch, losses)
        if self.scale is not None:
            position.record["loss_scale"] = self.scale.record()
        if self.pending is not None:
            position.record["diagnostics"] = self.pending
        return position
