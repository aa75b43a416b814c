"""Cauchy training combined with backpropagation: each sweep's change mixes a momentum gradient
step with a Cauchy random step, and the Boltzmann rule decides whether it is kept."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from nndsl.ops.optimizers import require
from nndsl.training.registry import CheckContext, trainer
from nndsl.training.session import Position, Session
from nndsl.training.stages import Stage, stream_seed
from nndsl.training.trainers._annealing import Annealing, AnnealingLoop, cauchy_step


@trainer("cauchy_backprop")
@dataclass(frozen=True, kw_only=True)
class CauchyBackprop(Annealing):
    """dW = eta [alpha dW_prev + (1 - alpha) lr delta OUT] + (1 - eta) x_c, Boltzmann-accepted.

    delta OUT is the backpropagated step -dL/dW on every training row, x_c = rho T tan(u),
    u ~ U(-pi/2, pi/2) the Cauchy step at T(t) = t0 / (1 + t) (t0 = 100); eta
    mixes them (0: pure Cauchy training, 1: backpropagation with momentum alpha in its
    moving-average form) and lr scales the gradient. A change that raises the loss by dc is kept
    with probability exp(-dc / (k T)) (k = auto: k t0 = 0.3 x the initial loss); dW_prev is
    the last kept change (zero after a rejection). The weights of saturated units are squashed
    as in anneal. Records temperature and acceptance.
    """

    lr: float = 10.0
    eta: float = 0.5
    alpha: float = 0.9
    t0: float = 100.0
    rho: float = 10.0
    k: float | Literal["auto"] = "auto"
    squash: float = 10.0
    saturation: float = 0.05

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.lr > 0, "lr", self.lr, "a positive number")
        for name in ("eta", "alpha"):
            value = getattr(self, name)
            require(0 <= value <= 1, name, value, "a number in [0, 1]")

    def check(self, ctx: CheckContext) -> None:
        from nndsl.training.gradient_flow import check_gradient_flow

        if ctx.stage.loss is not None:
            check_gradient_flow(ctx.model, ctx.stage.loss, ctx.stage.frozen)

    def run(self, session: Session, stage: Stage, index: int, start: Position | None) -> None:
        HybridLoop(session, stage, index, start, self).run()


class HybridLoop(AnnealingLoop):
    rule: CauchyBackprop
    stream = 40  # stream_seed(seed, step, 40): this sweep's Cauchy steps and decision

    def __init__(self, session: Session, stage: Stage, index: int, start: Position | None,
                 rule: CauchyBackprop) -> None:
        super().__init__(session, stage, index, start, rule)
        P = session.engine.P
        saved = session.engine.to_backend_state(start.state) if start is not None else {}
        self.last = {name: saved[name]["delta"] if "delta" in saved.get(name, {})
                     else P.zeros_like(self.weights[name]) for name in self.names}
        self.change: dict[str, Any] = {}
        self.grads: dict[str, Any] = {}

    def state(self) -> dict[str, dict[str, Any]]:
        return {name: {"delta": d} for name, d in self.last.items()}

    def prepare(self) -> None:
        """delta OUT: the gradient of the loss on every row, training mode, forward stream."""
        s = self.s
        _, self.grads, _ = s.engine.loss_and_grad(self.model, self.stage.loss, s.rows,
                                                  self.weights, self.stage.frozen,
                                                  stream_seed(self.seed, s.step))

    def propose(self, table: Any, T: float) -> dict[str, Any]:
        P, r = self.s.engine.P, self.rule
        self.change = {}
        for name in self.names:
            descent = P.mul((1 - r.alpha) * r.lr, P.neg(self.grads[name]))
            jump = cauchy_step(table, P, self.weights[name], r.rho * T, self.dtypes[name])
            self.change[name] = P.add(P.mul(r.eta, P.add(P.mul(r.alpha, self.last[name]),
                                                        descent)), P.mul(1 - r.eta, jump))
        return {name: P.add(self.weights[name], d) for name, d in self.change.items()}

    def kept(self, accepted: bool) -> None:
        P = self.s.engine.P
        self.last = self.change if accepted else {name: P.zeros_like(d)
                                                  for name, d in self.change.items()}
