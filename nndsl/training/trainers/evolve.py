"""Neuroevolution (conventional neuroevolution: a fixed topology, the weights as the genome): a
generational genetic algorithm whose whole population is scored in one batched pass."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import numpy as np

from nndsl import ops
from nndsl.errors import NndslError
from nndsl.ir import NUMPY_DTYPE, Graph, TensorType
from nndsl.ops.optimizers import require
from nndsl.training.core import run_loss, trainable
from nndsl.training.epochs import EpochLoop
from nndsl.training.registry import CheckContext, Trainer, trainer
from nndsl.training.session import Position, Session
from nndsl.training.stages import Stage, stream_seed
from nndsl.training.trainers._population import Batched, per_member, population_table, positioned

BREED_STREAM, FIRST_STREAM = 30, 31  # stream_seed(seed, step, ...): parents and mutations; the
# first generation's perturbations


@trainer("evolve")
@dataclass(frozen=True, kw_only=True)
class Evolve(Trainer):
    """Each generation: score every member, keep the elite, refill with mutated children.

    A member is a full set of trainable weights; the first generation is the model's weights
    and population - 1 copies perturbed by N(0, sigma^2). Every generation (one epoch) scores
    all members in one batched pass on every training row, keeps the `elite` best (default
    population // 2), and breeds the rest from them: two parents drawn uniformly from the
    elite, mixed gene by gene (crossover = true; else one parent), plus N(0, sigma^2) noise on
    every weight. Fitness is the loss (lower is better), or a metric with mode = max or min
    (fitness = accuracy, mode = max; ties broken by the loss). The model keeps the best
    member. Records best_fitness and mean_fitness.
    """

    population: int = 128
    sigma: float = 3.0
    elite: int | None = None
    crossover: bool = True
    fitness: Literal["loss"] | Annotated[str, "metric"] = "loss"
    mode: Literal["min", "max"] | None = None

    reads = frozenset({"loss", "epochs", "metrics", "early_stop"})
    needs_loss = True
    gradient_free = True
    records = frozenset({"best_fitness", "mean_fitness"})

    def __post_init__(self) -> None:
        require(self.population >= 2, "population", self.population, "an integer >= 2")
        require(self.sigma > 0, "sigma", self.sigma, "a positive number")
        require(1 <= self.kept < self.population, "elite", self.kept,
                f"an integer in [1, {self.population - 1}]")
        if self.fitness == "loss":
            require(self.mode in (None, "min"), "mode", self.mode, "min (a loss is minimised)")
        else:
            require(self.mode is not None, "mode", self.mode,
                    f"max or min: whether a higher {self.fitness} is better")

    @property
    def kept(self) -> int:
        return self.elite if self.elite is not None else self.population // 2

    @property
    def metric(self) -> str | None:
        return None if self.fitness == "loss" else self.fitness

    def check(self, ctx: CheckContext) -> None:
        """The population pass, tried on zeros: an op that cannot carry it is named here."""
        from nndsl.backends.numpy.prims import make_numpy_prims

        if self.metric is not None and not ctx.spec.targets:
            raise NndslError(f"fitness = {self.metric} compares the output with a target; this "
                             "block declares none", ctx.call_span,
                             hint="declare one: `target y: [batch]`, or use fitness = loss")
        if ctx.stage.loss is None:
            return
        model = ctx.model
        feeds = {n: _zeros(t) for n, t in (*model.inputs, *ctx.spec.targets)}
        weights = {w.name: np.zeros(w.shape, NUMPY_DTYPE[w.dtype]) for w in model.weights}
        names = trainable(model, ctx.stage.frozen)
        stacked = {n: np.stack([weights[n]] * 2) for n in names}
        target = ctx.spec.targets[0][0] if ctx.spec.targets else None
        scores(make_numpy_prims(), model, ctx.stage.loss, feeds, weights, stacked,
               self.metric, target, np.asarray)

    def check_state(self, position: Position, models: Any) -> None:
        from nndsl.training.checkpoint_schema import require as need

        super().check_state(position, models)
        decls = {w.name: w for g in models.values() for w in g.weights}
        for name, array in position.state.get("population", {}).items():
            w = decls.get(name)
            want = f"{np.dtype(NUMPY_DTYPE[w.dtype])}{[self.population, *w.shape]}" if w \
                else "the name of a weight"
            got = np.asarray(array)
            need(w is not None and f"{got.dtype}{list(got.shape)}" == want,
                 f"state 'population::{name}'", got, f"{want} (one member per row)")
        for key in ("best_fitness", "mean_fitness"):
            value = position.record.get(key, 0.0)
            need(isinstance(value, float | int) and not isinstance(value, bool), key, value,
                 "a number")

    def run(self, session: Session, stage: Stage, index: int, start: Position | None) -> None:
        EvolveLoop(session, stage, index, start, self).run()


def _zeros(t: TensorType) -> np.ndarray:
    return np.zeros([d if isinstance(d, int) else 2 for d in t.shape], NUMPY_DTYPE[t.dtype])


def scores(P: Any, model: Graph, loss: Graph, feeds: dict[str, Any], shared: dict[str, Any],
           members: dict[str, Any], metric: str | None, target: str | None,
           to_numpy: Any) -> tuple[np.ndarray, np.ndarray | None]:
    """Every member's loss (and metric), from one pass of the model and the loss with the
    members' weights stacked along a leading axis (`members[name]`: [size, *shape])."""
    size = int(next(iter(members.values())).shape[0]) if members else 1
    table = population_table(P, size)
    weights = {**shared, **{n: Batched(v) for n, v in members.items()}}
    with positioned("evolve"):
        value, result = run_loss(table, model, loss, feeds, weights)
        values = None
        if metric is not None and target is not None:
            fn = ops.get(metric, "metric").compute
            values = per_member(fn(table, result.env[model.outputs[0]], feeds[target]), size,
                                to_numpy)
    return per_member(value, size, to_numpy), values


def ranking(losses: np.ndarray, metric: np.ndarray | None, mode: str) -> np.ndarray:
    """Member indices, best first (stable): by the loss, or by the metric then the loss; a NaN
    is never better than a number."""
    by_loss = np.where(np.isnan(losses), np.inf, losses)
    if metric is None:
        return np.argsort(by_loss, kind="stable")
    sign = -1.0 if mode == "max" else 1.0
    return np.lexsort((by_loss, np.where(np.isnan(metric), np.inf, sign * metric)))


class EvolveLoop(EpochLoop):
    """One generation per epoch (and per update step) on every training row."""

    whole_data = True

    def __init__(self, session: Session, stage: Stage, index: int, start: Position | None,
                 rule: Evolve) -> None:
        super().__init__(session, stage, index, start)
        self.rule, self.engine = rule, session.engine
        self.names = trainable(self.model, stage.frozen)
        saved = self.engine.to_backend_state(start.state).get("population") if start else None
        if saved is not None and set(saved) != set(self.names):
            raise NndslError("the checkpoint's population does not evolve this phase's weights",
                             stage.span, expected=", ".join(self.names),
                             received=", ".join(saved), hint="resume with the spec.nn the run "
                             "was started with")
        self.members = saved if saved is not None else self.first_generation()
        record = start.record if start is not None else {}
        self.best = float(record.get("best_fitness", math.nan))
        self.mean = float(record.get("mean_fitness", math.nan))

    def first_generation(self) -> dict[str, Any]:
        """The model's weights as member 0, perturbed copies of them as the others."""
        P, size = self.engine.P, self.rule.population
        table = self.engine.table(stream_seed(self.seed, self.s.step, FIRST_STREAM))
        out = {}
        for name in self.names:
            w = self.weights[name]
            rest = P.concat([P.reshape(w, (1, *P.shape(w)))] * (size - 1), 0)
            noise = P.mul(self.rule.sigma, table.random_normal_like(rest))
            out[name] = P.concat([P.reshape(w, (1, *P.shape(w))), P.add(rest, noise)], 0)
        return out

    def state(self) -> dict[str, dict[str, Any]]:
        return {"population": dict(self.members)}

    def update(self, feeds: dict[str, Any]) -> float:
        s, P, rule = self.s, self.engine.P, self.rule
        losses, metric = scores(P, self.model, self.stage.loss, feeds, self.weights,
                                self.members, rule.metric, self.target,
                                lambda x: self.engine.to_numpy({"x": x})["x"])
        order = ranking(losses, metric, rule.mode or "min")
        best = int(order[0])
        if not math.isfinite(losses[best]):
            raise NndslError(f"every member's loss is non-finite at generation {s.step + 1}",
                             self.stage.loss.span if self.stage.loss else self.stage.span,
                             hint="lower sigma, or check the model and loss on the data")
        for name in self.names:
            w = self.weights[name]
            self.weights[name] = P.reshape(P.slice(self.members[name], 0, best, best + 1),
                                           P.shape(w))
        fitness = metric if metric is not None else losses
        self.best, finite = float(fitness[best]), fitness[np.isfinite(fitness)]
        self.mean = float(finite.mean())
        self.members = self.offspring(np.sort(order[:rule.kept]))
        s.step += 1
        if s.step_rows:
            s.record({"kind": "step", "step": s.step, "epoch": self.epoch + 1,
                      "loss": float(losses[best]), "best_fitness": self.best})
        return float(losses[best])

    def offspring(self, elite: np.ndarray) -> dict[str, Any]:
        """The elite (in their order) and population - elite children of elite parents."""
        P, rule, n = self.engine.P, self.rule, self.rule.population - len(elite)
        table = self.engine.table(stream_seed(self.seed, self.s.step, BREED_STREAM))
        draws = self.engine.to_numpy({"u": table.random_uniform_like(
            P.constant(np.zeros((2, n)), "f64"))})["u"]
        parents = elite[np.minimum((draws * len(elite)).astype(np.int64), len(elite) - 1)]
        out = {}
        for name in self.names:
            members = self.members[name]
            child = P.take(members, parents[0], 0)
            if rule.crossover:
                mixed = P.lt(table.random_uniform_like(child), 0.5)
                child = P.where(mixed, child, P.take(members, parents[1], 0))
            child = P.add(child, P.mul(rule.sigma, table.random_normal_like(child)))
            out[name] = P.concat([P.take(members, elite, 0), child], 0)
        return out

    def position(self, epoch: int, rng: dict[str, Any] | None, batch: int = 0,
                 losses: list[float] | None = None) -> Position:
        at = super().position(epoch, rng, batch, losses)
        at.record.update(best_fitness=self.best, mean_fitness=self.mean)
        return at

    def row(self) -> dict[str, float]:
        return {"best_fitness": self.best, "mean_fitness": self.mean, **super().row()}
