"""Backend-neutral training helpers, written against the primitive table `P`: which weights
train, the loss with its feeds, penalties, the update (gradient noise, clipping, the scheduled
optimizer step, constraints). Every trainer uses these, on every
engine, so NumPy and torch apply the same arithmetic."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from nndsl import ops
from nndsl.backend import Engine
from nndsl.errors import NndslError
from nndsl.ir import Call, Graph
from nndsl.training.multi import MultiUpdate
from nndsl.training.stages import Stage, stream_seed

if TYPE_CHECKING:
    from nndsl.interpreter import RunResult

DEFAULT_OPTIMIZER = Call("sgd", (("lr", 0.01),))
NOISE_STREAM = 1


def trainable(graph: Graph, frozen: Iterable[str] = ()) -> list[str]:
    """Names of the weights that get gradients: trainable, not buffers, not frozen.

    `frozen` holds weight names (`enc.weight`) or layer labels (`enc`: all of its weights).
    """
    frozen = set(frozen)
    return [w.name for w in graph.weights
            if w.trainable and w.role != "buffer"
            and w.name not in frozen and w.name.rsplit(".", 1)[0] not in frozen]


def run_loss(P: Any, model: Graph, loss: Graph, feeds: Mapping[str, Any],
             weights: Mapping[str, Any]) -> tuple[Any, RunResult]:
    """The model, then its loss graph, with table P: (loss value, the model's run).

    The loss graph reads model values (inputs, bindings, outputs) by name, then targets from
    `feeds`, then weights (a loss may name one, e.g. `contractive(code, enc.weight)`).
    """
    from nndsl.training.step_plan import loss_plan

    return loss_plan(model, loss, P).run(P, feeds, weights)  # the interpreter's, precompiled


def step_loss(P: Any, model: Graph, loss: Graph, feeds: Mapping[str, Any],
              weights: Mapping[str, Any]) -> tuple[Any, RunResult]:
    """`run_loss` for a training step, which reads only the loss and the updates: the model's
    trailing values the loss does not read (a classifier's softmax output) are not computed,
    so its run lacks them."""
    from nndsl.training.step_plan import loss_plan

    return loss_plan(model, loss, P, trim=True).run(P, feeds, weights)


def loss_value(P: Any, loss: Graph, env: Mapping[str, Any], feeds: Mapping[str, Any],
               weights: Mapping[str, Any]) -> Any:
    """The loss graph on a model run's values, the targets in `feeds` and the weights."""
    from nndsl.interpreter import run

    sources = (env, feeds, weights)
    loss_feeds = {n: next(s[n] for s in sources if n in s) for n, _ in loss.inputs}
    return run(loss, P, loss_feeds, weights).env[loss.outputs[0]]


def penalties(graph: Graph, spec_reg: Any) -> dict[str, list[Call]]:
    """Weight name -> regularizers: the layer's own, else the train block's (weights only)."""
    block = list(spec_reg) if isinstance(spec_reg, tuple) else [spec_reg] if spec_reg else []
    out = {}
    for w in graph.weights:
        if w.role == "weight":
            calls = [w.regularize] if w.regularize is not None else block
            if calls:
                out[w.name] = calls
    return out


def penalty_and_grad(calls: list[Call], w: np.ndarray) -> tuple[float, np.ndarray]:
    """The NumPy reference: the summed penalties on w and their gradient by reverse mode."""
    from nndsl.backends.numpy.autodiff import value_and_grad

    total, grad = 0.0, np.zeros_like(w)
    for call in calls:
        opdef = ops.get(call.name, "regularizer", call.span)

        def penalty(P: Any, x: Any, o: Any = opdef, c: Call = call) -> Any:
            return o.compute(P, x, **dict(c.kwargs))

        value, (g,) = value_and_grad(penalty, w)
        total += float(value)
        grad = grad + np.asarray(g)
    return total, grad


@dataclass
class Updater:
    """A stage's update of a set of weights, in the documented order: gradient noise, clipping,
    the optimizer step at the scheduled rate, then constraints. Its `state` (the optimizer's,
    per weight) is what a checkpoint keeps."""

    engine: Engine
    graph: Graph
    stage: Stage
    seed: int
    optimizer: Call | None = None  # a trainer's own (a GAN's per model), else the stage's
    state: dict[str, dict[str, Any]] = field(default_factory=dict)
    noise_stream: int = NOISE_STREAM  # two updaters stepping together draw different noise

    def __post_init__(self) -> None:
        self.optimizer = self.optimizer or self.stage.get("optimizer") or DEFAULT_OPTIMIZER
        self.rule = ops.get(self.optimizer.name, "optimizer", self.optimizer.span)\
            .function_for(self.engine.P)
        self.multi = MultiUpdate(getattr(self.engine.P, "backend", ""), self.optimizer.name,
                                 self.rule)
        self.params = dict(self.optimizer.kwargs)
        self.base_lr = float(self.params.get("lr", 0.01) or 0.01)
        schedule = self.stage.get("schedule")
        self.schedule = (ops.get(schedule.name, "schedule", schedule.span).compute,
                         dict(schedule.kwargs)) if schedule else None
        noise, clip = self.stage.get("grad_noise"), self.stage.get("clip")
        self.noise = (ops.get(noise.name, "noise").compute, dict(noise.kwargs)) if noise else None
        self.clip = (ops.get(clip.name, "clip").function_for(self.engine.P),
                     dict(clip.kwargs)) if clip else None
        block = self.stage.get("constraint")
        self.constraints = [(w.name, ops.get(c.name, "constraint", c.span).compute,
                             dict(c.kwargs)) for w in self.graph.weights
                            if w.trainable and (c := w.constraint or (
                                block if w.role == "weight" else None)) is not None]

    def rate(self, step: int, epoch: int) -> float:
        if self.schedule is None:
            return self.base_lr
        fn, params = self.schedule
        return fn(self.base_lr, step, epoch, **params)

    def apply(self, weights: dict[str, Any], grads: dict[str, Any], step: int,
              epoch: int) -> float:
        """Update `weights` in place from `grads` (the update counter `step` counts the
        updates already applied); returns the rate used."""
        P, rate = self.engine.P, self.rate(step, epoch)
        if self.noise is not None:
            fn, params = self.noise
            table = self.engine.table(stream_seed(self.seed, step, self.noise_stream))
            grads = {k: fn(table, g, step, **params) for k, g in grads.items()}
        if self.clip is not None:
            names = list(grads)
            fn, params = self.clip
            grads = dict(zip(names, fn(P, [grads[k] for k in names], **params), strict=True))
        self.multi(P, weights, grads, self.state, rate, step + 1, self.params)
        for name, fn, params in self.constraints:
            if name in grads:
                weights[name] = fn(P, weights[name], **params)
        return rate


def blowup(stage: Stage, history_losses: list[float], what: str, loss: float, rate: float,
           epoch: int, step: int, span: Any) -> NndslError:
    """The first non-finite loss or gradient, with its likely cause."""
    what = what if what == "the loss" else f"the gradient of '{what}'"
    optimizer = stage.get("optimizer") or DEFAULT_OPTIMIZER
    recent = history_losses[-3:]
    if not math.isfinite(loss) or (recent and loss > 10 * min(recent)):
        cause = f"the learning rate ({optimizer.name} at {rate:.3g}) is likely too high"
    else:
        cause = (f"the loss was still {loss:.4g}: a log or division of zero in the model "
                 "or loss is likely")
    fixes = "lower the learning rate" + ("" if stage.get("clip") else
                                         " or add `clip = norm(1.0)`")
    return NndslError(f"{what} became non-finite at epoch {epoch + 1}, step {step + 1}"
                      f" (loss {loss:.4g})", span, hint=f"{cause}; {fixes}")
