"""What simulated annealing (`anneal`) and the Cauchy/backprop hybrid (`cauchy_backprop`) share:
the cooling schedules, the random steps, the acceptance rule, squashing the weights of saturated
units, and the loop that makes one proposal per epoch.

One sweep (= one epoch = one update step) changes every trainable weight at once, scores the
change on all the training rows in inference mode (the loss the exported model has: dropout
off, batch norm on its running statistics) and keeps it by the Boltzmann rule. The temperature
is dimensionless and only drives the two scales: `rho T` is the step size in weight units and
`k T` the loss rise kept with probability 1/e. `k = auto` ties the second to the stage's
initial loss L0, k t0 = 0.3 L0, so the defaults work whatever the loss's scale.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np

from nndsl.errors import NndslError
from nndsl.ir import Graph, Node
from nndsl.ops.optimizers import require
from nndsl.training.core import loss_value, trainable
from nndsl.training.epochs import EpochLoop
from nndsl.training.registry import Trainer
from nndsl.training.session import Position, Session
from nndsl.training.stages import Stage, stream_seed

COOLING: dict[str, Callable[[float, int], float]] = {
    "boltzmann": lambda t0, t: t0 / math.log1p(t),  # T0 / log(1 + t), t >= 1
    "cauchy": lambda t0, t: t0 / (1.0 + t),  # T0 / (1 + t)
}
START = {"boltzmann": 1.0, "cauchy": 100.0}  # t0's default: Cauchy cools as 1/t, so starts hot
AUTO_K = 0.3  # k = auto: k t0 = 0.3 x the stage's initial loss
RECORDS = frozenset({"temperature", "acceptance"})


def gaussian_step(table: Any, P: Any, w: Any, scale: float, dtype: str) -> Any:
    """Boltzmann: density exp(-x^2 / (rho T)^2), a normal of variance (rho T)^2 / 2."""
    return P.mul(scale / math.sqrt(2.0), table.random_normal_like(w))


def cauchy_step(table: Any, P: Any, w: Any, scale: float, dtype: str) -> Any:
    """Cauchy: x = rho T tan(u), u ~ U(-pi/2, pi/2) (the inverse of its distribution function),
    drawn in float64 so tan near +-pi/2 stays finite."""
    u = P.mul(math.pi, P.sub(table.random_uniform_like(P.cast(w, "f64")), 0.5))
    return P.cast(P.mul(scale, P.div(P.sin(u), P.cos(u))), dtype)


STEPS = {"boltzmann": gaussian_step, "cauchy": cauchy_step}


def accepts(rise: float, kT: float, draw: float) -> bool:
    """Keep a change that does not raise the loss; keep a rise c with probability exp(-c / kT),
    i.e. when a uniform draw falls below it. A non-finite loss is never kept."""
    if rise <= 0:
        return True
    return kT > 0 and draw < math.exp(-rise / kT)


# A saturating activation's limits, from its node (hardtanh's are parameters).
SATURATING: dict[str, Callable[[Node], tuple[float, float]]] = {
    "sigmoid": lambda n: (0.0, 1.0),
    "tanh": lambda n: (-1.0, 1.0),
    "arctan": lambda n: (-math.pi / 2, math.pi / 2),
    "hardtanh": lambda n: (float(n.param("low", -1.0)), float(n.param("high", 1.0))),
}


@dataclass(frozen=True)
class Units:
    """A dense layer whose units feed a saturating activation."""

    out: str  # the activation's value
    weight: str
    bias: str | None
    low: float
    high: float


def saturating_units(model: Graph, names: Iterable[str]) -> list[Units]:
    """Every trainable dense layer read directly by a saturating activation."""
    names, producers = set(names), {n.name: n for n in model.nodes}
    out = []
    for node in model.nodes:
        limits = SATURATING.get(node.op)
        dense = producers.get(node.inputs[0]) if limits and node.inputs else None
        if limits is None or dense is None or dense.op != "dense" or dense.param("tied"):
            continue
        owned = dict(dense.weights)
        if owned.get("weight") in names:
            bias = owned.get("bias")
            out.append(Units(node.name, owned["weight"], bias if bias in names else None,
                             *limits(node)))
    return out


def squash_saturated(engine: Any, units: list[Units], env: dict[str, Any],
                     weights: dict[str, Any], limit: float, saturation: float) -> dict[str, Any]:
    """New arrays for the weights of saturated units: w <- limit tanh(w / limit) on the incoming
    weights and bias of every unit whose output lies within `saturation` x its range of a limit
    on every training row. Odd and nearly the identity for |w| << limit, it shrinks large
    weights and keeps signs, so a paralysed unit gets a slope back."""
    P, changed = engine.P, {}
    for u in units:
        n = P.shape(env[u.out])[-1]
        out = P.reshape(env[u.out], (-1, n))
        room = P.minimum(P.sub(out, u.low), P.sub(u.high, out))  # to the nearer limit
        near = P.lt(P.max(room, axis=0), saturation * (u.high - u.low))  # [units]
        if not engine.scalar(P.sum(P.cast(near, "f32"))):
            continue
        for name, shape in ((u.weight, (n, 1)), (u.bias, (n,))):
            if name is not None:
                w = weights[name]
                changed[name] = P.where(P.reshape(near, shape),
                                        P.mul(limit, P.tanh(P.div(w, limit))), w)
    return changed


class Annealing(Trainer):
    """What the annealing trainers share (not itself registered): each declares, as dataclass
    fields in its own order, t0 (None: the cooling's default), rho, k (a number or "auto"),
    squash and saturation."""

    t0: float | None
    rho: float
    k: float | Literal["auto"]
    squash: float
    saturation: float

    reads = frozenset({"loss", "epochs", "metrics", "early_stop"})
    needs_loss = True
    records = RECORDS
    cooling_law: ClassVar[str] = "cauchy"

    def __post_init__(self) -> None:
        for name in ("t0", "rho"):
            value = getattr(self, name)
            require(value is None or value > 0, name, value, "a positive number")
        require(self.k == "auto" or self.k > 0, "k", self.k, "a positive number or auto")
        require(self.squash >= 0, "squash", self.squash, "a number >= 0 (0: no squashing)")
        require(0 < self.saturation < 0.5, "saturation", self.saturation,
                "a fraction of the output range in (0, 0.5)")

    @property
    def law(self) -> str:
        return self.cooling_law

    def temperature(self, t: int) -> float:
        """T(t) for sweep t = 1, 2, ... (T(0) = T0 / log 1 is infinite, so t starts at 1)."""
        return COOLING[self.law](self.t0 if self.t0 is not None else START[self.law], t)

    def constant(self, initial_loss: float) -> float:
        """k: the given one, or k t0 = 0.3 x the initial loss (auto)."""
        if self.k != "auto":
            return float(self.k)
        t0 = self.t0 if self.t0 is not None else START[self.law]
        return AUTO_K * initial_loss / t0

    def check_state(self, position: Position, models: Any) -> None:
        from nndsl.training.checkpoint_schema import require as need

        super().check_state(position, models)
        k, kept = position.record.get("k", 1.0), position.record.get("accepted", 0)
        need(isinstance(k, float | int) and not isinstance(k, bool) and math.isfinite(k)
             and k >= 0, "k", k, "a finite number >= 0 (the Boltzmann constant in use)")
        need(isinstance(kept, int) and not isinstance(kept, bool)
             and 0 <= kept <= position.epoch + 1, "accepted", kept,
             f"a count of sweeps in [0, {position.epoch + 1}]")


class AnnealingLoop(EpochLoop):
    """One sweep per epoch on every training row: propose, score, keep or not, squash."""

    whole_data = True
    stream = 20  # stream_seed(seed, step, 20): this sweep's draws

    def __init__(self, session: Session, stage: Stage, index: int, start: Position | None,
                 rule: Annealing) -> None:
        super().__init__(session, stage, index, start)
        self.rule = rule
        self.names = trainable(self.model, stage.frozen)
        self.dtypes = {w.name: w.dtype for w in self.model.weights}
        self.units = saturating_units(self.model, self.names) if rule.squash else []
        self.current, self.env = self.score(self.weights)
        if not math.isfinite(self.current):
            raise NndslError(f"the loss of the starting weights is {self.current}; annealing "
                             "needs a finite one to compare changes with",
                             stage.loss.span if stage.loss else stage.span)
        record = start.record if start is not None else {}
        self.k = float(record["k"]) if "k" in record else rule.constant(self.current)
        self.accepted = int(record.get("accepted", 0))

    def score(self, weights: dict[str, Any]) -> tuple[float, dict[str, Any]]:
        """The loss on every training row in inference mode, and the model's values."""
        engine, rows = self.s.engine, self.s.rows
        result = engine.run(self.model, {n: rows[n] for n, _ in self.model.inputs}, weights)
        with np.errstate(all="ignore"):
            value = loss_value(engine.P, self.stage.loss, result.env, rows, weights)
        return engine.scalar(value), result.env

    def propose(self, table: Any, T: float) -> dict[str, Any]:
        """The changed weights of one proposal (every trainable weight)."""
        raise NotImplementedError

    def prepare(self) -> None:
        """Before the sweep's draws (the hybrid's gradient: on torch a table's stream is
        reseeded by the next table asked for, so a sweep draws only after that)."""

    def kept(self, accepted: bool) -> None:
        """After the decision (the hybrid keeps its last change for momentum)."""

    def update(self, feeds: dict[str, Any]) -> float:
        s, P = self.s, self.s.engine.P
        T = self.rule.temperature(self.epoch + 1)
        self.prepare()
        table = s.engine.table(stream_seed(self.seed, s.step, self.stream))
        proposal = self.propose(table, T)
        loss, env = self.score({**self.weights, **proposal})
        draw = s.engine.scalar(table.random_uniform_like(P.constant(0.0, "f64")))
        accepted = accepts(loss - self.current, self.k * T, draw)
        if accepted:
            self.weights.update(proposal)
            self.current, self.env, self.accepted = loss, env, self.accepted + 1
        self.kept(accepted)
        self.squash_units()
        s.step += 1
        if s.step_rows:
            s.record({"kind": "step", "step": s.step, "epoch": self.epoch + 1,
                      "loss": self.current, "temperature": T})
        return self.current

    def squash_units(self) -> None:
        if not self.units:
            return
        changed = squash_saturated(self.s.engine, self.units, self.env, self.weights,
                                   self.rule.squash, self.rule.saturation)
        if changed:
            self.weights.update(changed)
            self.current, self.env = self.score(self.weights)

    def position(self, epoch: int, rng: dict[str, Any] | None, batch: int = 0,
                 losses: list[float] | None = None) -> Position:
        at = super().position(epoch, rng, batch, losses)
        at.record.update(k=self.k, accepted=self.accepted)
        return at

    def row(self) -> dict[str, float]:
        return {"temperature": self.rule.temperature(max(self.epoch, 1)),
                "acceptance": self.accepted / max(self.epoch, 1), **super().row()}
