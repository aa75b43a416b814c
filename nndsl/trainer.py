"""Training semantics, written once. The order inside a step (docs/training.md):

forward -> loss + penalties -> backward -> gradient noise -> clipping -> optimizer update with
the scheduled learning rate -> constraints. The loss recorded for a step is the one computed
before its update. Update rules are the registry's functions over the primitive table, so every
backend applies the same arithmetic.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from nndsl import ops
from nndsl.data.dataset import Dataset
from nndsl.errors import NndslError
from nndsl.ir import Call, Graph, Phase, TrainSpec

DEFAULT_OPTIMIZER = Call("sgd", (("lr", 0.01),))
DEFAULTS = {"batch": 32, "epochs": 10, "shuffle": True, "seed": 0}


@dataclass
class Stage:
    """One phase's resolved settings (the train block's, overlaid by the phase's)."""

    name: str
    loss: Graph
    settings: dict[str, Any]
    frozen: tuple[str, ...]

    def get(self, key: str) -> Any:
        return self.settings.get(key, DEFAULTS.get(key))


def stages(spec: TrainSpec) -> list[Stage]:
    base = dict(spec.settings)
    phases = spec.phases or (Phase("main", (), spec.loss, tuple(base.get("freeze", ()))),)
    out = []
    for phase in phases:
        loss = phase.loss or spec.loss
        if loss is None:
            raise NndslError(f"phase '{phase.name}' has no loss", phase.span)
        out.append(Stage(phase.name, loss, {**base, **dict(phase.settings)}, phase.freeze))
    return out


@dataclass
class History:
    """Rows of metrics.csv: one per epoch (and per step when asked)."""

    rows: list[dict[str, Any]] = field(default_factory=list)

    def series(self, key: str) -> list[float]:
        return [r[key] for r in self.rows if r.get("kind") == "epoch" and key in r]

    def csv(self) -> str:
        keys: list[str] = []
        for row in self.rows:
            keys += [k for k in row if k not in keys]
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=keys, lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows)
        return out.getvalue()


class Engine(Protocol):
    """What a backend supplies to the trainer. Arrays are the backend's own (NumPy arrays,
    torch tensors on a device); the update rules run on them through the table `P`."""

    P: Any

    def to_backend(self, arrays: dict[str, np.ndarray]) -> dict[str, Any]: ...

    def to_numpy(self, arrays: dict[str, Any]) -> dict[str, np.ndarray]: ...

    def take(self, array: Any, index: np.ndarray) -> Any: ...

    def to_backend_state(self, state: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """Optimizer state read from a checkpoint, as the backend's arrays."""
        ...

    def loss_and_grad(self, loss: Graph, feeds: dict[str, Any], weights: dict[str, Any],
                      frozen: tuple[str, ...], seed: int,
                      penalties: dict[str, list[Call]] | None = None) -> tuple[float, dict, dict]:
        """The loss plus the penalties (regularizers by weight name) of the trainable weights,
        summed in the order given, its gradient for every trainable weight, and buffer updates.
        """
        ...

    def nonfinite(self, arrays: dict[str, Any]) -> str | None:
        """The name of the first array holding a NaN or infinity, if any."""
        ...

    def predict(self, feeds: dict[str, np.ndarray], weights: dict[str, Any]) -> dict[str, Any]:
        """Every value of the model in inference mode, as NumPy arrays."""
        ...


class NumpyEngine:
    """The reference engine: NumPy arrays, reverse mode over the primitive trace."""

    def __init__(self, model: Graph) -> None:
        from nndsl.backends.numpy.prims import make_numpy_prims

        self.model = model
        self.P = make_numpy_prims(training=True)

    def to_backend(self, arrays: dict[str, np.ndarray]) -> dict[str, Any]:
        return dict(arrays)

    def to_numpy(self, arrays: dict[str, Any]) -> dict[str, np.ndarray]:
        return {k: np.asarray(v) for k, v in arrays.items()}

    def take(self, array: Any, index: np.ndarray) -> Any:
        return array[index]

    def to_backend_state(self, state: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        return {k: dict(v) for k, v in state.items()}

    def nonfinite(self, arrays: dict[str, Any]) -> str | None:
        return next((k for k, v in arrays.items() if not np.isfinite(v).all()), None)

    def loss_and_grad(self, loss: Graph, feeds: dict[str, Any], weights: dict[str, Any],
                      frozen: tuple[str, ...], seed: int,
                      penalties: dict[str, list[Call]] | None = None) -> tuple[float, dict, dict]:
        from nndsl.backends.numpy.autodiff import loss_and_grad

        with np.errstate(all="ignore"):  # the trainer reports the first non-finite value
            g = loss_and_grad(self.model, loss, feeds, weights, frozen=frozen, training=True,
                              seed=seed)
            total, grads = float(g.value), g.weights
            for name, calls in (penalties or {}).items():
                if name in grads:
                    value, extra = penalty_and_grad(calls, weights[name])
                    total += value
                    grads[name] = grads[name] + extra
        return total, grads, g.updates

    def predict(self, feeds: dict[str, Any], weights: dict[str, Any]) -> dict[str, Any]:
        from nndsl.backends.numpy.prims import make_numpy_prims
        from nndsl.interpreter import run

        inputs = {n: feeds[n] for n, _ in self.model.inputs}
        result = run(self.model, make_numpy_prims(training=False), inputs, weights)
        return {**result.env}


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


def batches(rows: int, size: int, shuffle: bool, rng: np.random.Generator) -> Iterator[np.ndarray]:
    order = rng.permutation(rows) if shuffle else np.arange(rows)
    for start in range(0, rows, size):
        yield order[start:start + size]


@dataclass
class Position:
    """Where training stands: enough, with the weights, to continue exactly — after an epoch or,
    for a stop asked for mid-epoch (Ctrl-C), after any step of it."""

    stage: int
    epoch: int  # epochs completed in this stage
    state: dict[str, dict[str, Any]]  # optimizer state per weight
    rng: dict[str, Any] | None  # the batch-order generator's state when epoch `epoch` began
    batch: int = 0  # batches of epoch `epoch` already done
    losses: list[float] = field(default_factory=list)  # and their losses


class Interrupted(Exception):
    """Training stopped on request (SIGINT) after its position was checkpointed."""

    def __init__(self, position: Position, step: int) -> None:
        super().__init__(f"stopped at epoch {position.epoch + 1}, step {step}")
        self.position, self.step = position, step
        self.run_dir: Path | None = None  # filled in by whoever wrote the checkpoint


@dataclass
class Trainer:
    """Runs a train block's stages on one engine; writes nothing but through `on_row`."""

    model: Graph
    spec: TrainSpec
    engine: Engine
    weights: dict[str, np.ndarray]
    on_row: Callable[[dict[str, Any]], None] = lambda row: None
    step_rows: bool = False
    # The checkpoint hook: (position, must). An epoch's end may be skipped (the hook decides how
    # often to write); a stage's end and a requested stop must be written.
    on_epoch: Callable[[Position, bool], None] = lambda position, must: None
    history: History = field(default_factory=History)
    step: int = 0
    device_rows: dict[str, Any] = field(default_factory=dict)
    stop_requested: bool = False  # set by a signal handler; honoured after the current step

    def run(self, data: Dataset, epochs: int | None = None, steps: int | None = None,
            resume: Position | None = None) -> None:
        """Every stage in order; `resume` continues from a checkpoint's position exactly."""
        self.weights = self.engine.to_backend(self.weights)
        self.device_rows = self.engine.to_backend(data.train)  # batched by index, in place
        for index, stage in enumerate(stages(self.spec)):
            if resume is not None and index < resume.stage:
                continue
            start = resume if resume is not None and index == resume.stage else None
            self.run_stage(stage, data, epochs, steps, index, start)
            self.checkpoint(Position(index + 1, 0, {}, None), must=True)  # the stage is done
        self.weights = self.engine.to_numpy(self.weights)

    def run_stage(self, stage: Stage, data: Dataset, epochs: int | None,
                  steps: int | None, index: int = 0, start: Position | None = None) -> None:
        optimizer = stage.get("optimizer") or DEFAULT_OPTIMIZER
        opt = ops.get(optimizer.name, "optimizer", optimizer.span)
        base_lr = float(optimizer.get("lr", 0.01) or 0.01)
        schedule = stage.get("schedule")
        sched = ops.get(schedule.name, "schedule", schedule.span) if schedule else None
        regs = penalties(self.model, stage.get("regularize"))
        state: dict[str, dict] = self.engine.to_backend_state(start.state) if start else {}
        seed = int(stage.get("seed"))
        rng = np.random.default_rng([seed, 11, index])
        if start is not None and start.rng is not None:
            rng.bit_generator.state = start.rng
        n_epochs = epochs or int(stage.get("epochs") or (math.inf if steps else 10))
        budget = steps  # counts every update of the run, across stages and resumes
        epoch = start.epoch if start else 0
        skip, losses = (start.batch, list(start.losses)) if start else (0, [])
        while epoch < n_epochs and (budget is None or self.step < budget):
            began = rng.bit_generator.state
            for number, picked in enumerate(batches(data.rows, int(stage.get("batch")),
                                                    bool(stage.get("shuffle")), rng)):
                if number < skip:
                    continue
                if budget is not None and self.step >= budget:
                    break
                rate = sched.compute(base_lr, self.step, epoch, **dict(schedule.kwargs)) \
                    if sched else base_lr
                feeds = {k: self.engine.take(v, picked) for k, v in self.device_rows.items()}
                loss = self.update(stage, feeds, opt, optimizer, state, rate, regs, epoch)
                losses.append(loss)
                if self.step_rows:
                    self.record({"kind": "step", "step": self.step, "epoch": epoch + 1,
                                 "loss": loss, "lr": rate})
                if self.stop_requested:
                    self.stop(Position(index, epoch, state, began, number + 1, losses))
            epoch += 1
            rate = sched.compute(base_lr, self.step - 1, epoch - 1, **dict(schedule.kwargs)) \
                if sched else base_lr  # the last step's
            row = {"kind": "epoch", "step": self.step, "epoch": epoch, "phase": stage.name,
                   "loss": float(np.mean(losses)) if losses else math.nan, "lr": rate}
            row.update(self.evaluate(stage, data))
            self.record(row)
            skip, losses = 0, []
            if self.should_stop(stage):
                break
            position = Position(index, epoch, state, rng.bit_generator.state)
            self.checkpoint(position, must=self.stop_requested)
            if self.stop_requested:
                raise Interrupted(position, self.step)

    def stop(self, position: Position) -> None:
        """Checkpoint a mid-epoch position and end the run (the user asked to stop)."""
        self.checkpoint(position, must=True)
        raise Interrupted(position, self.step)

    def checkpoint(self, position: Position, must: bool) -> None:
        """Hand the position to `on_epoch`, never with a non-finite weight: the last good
        checkpoint must stay good."""
        bad = self.engine.nonfinite(self.weights)
        if bad is not None:
            raise NndslError(f"weight '{bad}' became non-finite by step {self.step}",
                             self.spec.span, hint="lower the learning rate or add "
                             "`clip = norm(1.0)`")
        self.on_epoch(position, must)

    def update(self, stage: Stage, feeds: dict, opt: Any, optimizer: Call, state: dict,
               rate: float, regs: dict, epoch: int) -> float:
        """One step, in the documented order."""
        seed = int(stage.get("seed")) * 1_000_003 + self.step
        loss, grads, updates = self.engine.loss_and_grad(stage.loss, feeds, self.weights,
                                                         stage.frozen, seed, regs)
        bad = None if math.isfinite(loss) else "the loss"
        bad = bad or self.engine.nonfinite(grads)
        if bad is not None:
            raise self.blowup(stage, bad, loss, rate, epoch)
        P = self.engine.P
        noise = stage.get("grad_noise")
        if noise is not None:
            fn = ops.get(noise.name, "noise").compute
            grads = {k: fn(P, g, self.step, **dict(noise.kwargs)) for k, g in grads.items()}
        clip = stage.get("clip")
        if clip is not None:
            names = list(grads)
            clipped = ops.get(clip.name, "clip").function_for(P)(P, [grads[k] for k in names],
                                                                **dict(clip.kwargs))
            grads = dict(zip(names, clipped, strict=True))
        params, rule = dict(optimizer.kwargs), opt.function_for(P)  # the backend's native form
        for name, g in grads.items():
            w, state[name] = rule(P, self.weights[name], g, state.get(name, {}), rate,
                                  self.step + 1, **params)
            self.weights[name] = w
        self.weights.update(updates)
        self.constrain(stage)
        self.step += 1
        return loss

    def blowup(self, stage: Stage, what: str, loss: float, rate: float, epoch: int) -> NndslError:
        """The first non-finite loss or gradient, with its likely cause."""
        what = what if what == "the loss" else f"the gradient of '{what}'"
        optimizer = stage.get("optimizer") or DEFAULT_OPTIMIZER
        recent = [r["loss"] for r in self.history.rows if r.get("kind") == "epoch"][-3:]
        if not math.isfinite(loss) or (recent and loss > 10 * min(recent)):
            cause = f"the learning rate ({optimizer.name} at {rate:.3g}) is likely too high"
        else:
            cause = (f"the loss was still {loss:.4g}: a log or division of zero in the model "
                     "or loss is likely")
        fixes = "lower the learning rate" + ("" if stage.get("clip") else
                                             " or add `clip = norm(1.0)`")
        return NndslError(f"{what} became non-finite at epoch {epoch + 1}, step {self.step + 1}"
                          f" (loss {loss:.4g})", stage.loss.span, hint=f"{cause}; {fixes}")

    def constrain(self, stage: Stage) -> None:
        block = stage.get("constraint")
        for w in self.model.weights:
            call = w.constraint or (block if w.role == "weight" else None)
            if call is not None and w.trainable:
                fn = ops.get(call.name, "constraint", call.span).compute
                self.weights[w.name] = fn(self.engine.P, self.weights[w.name], **dict(call.kwargs))

    def evaluate(self, stage: Stage, data: Dataset) -> dict[str, float]:
        out: dict[str, float] = {}
        metrics = stage.get("metrics") or ()
        for prefix, part in (("", data.train), ("val_", data.val)):
            if not part:
                continue
            env = self.engine.predict(part, self.weights)
            if prefix:
                out["val_loss"] = self.loss_value(stage.loss, env, part)
            for metric in metrics:
                out[prefix + metric] = self.metric(metric, env, part)
        return out

    def loss_value(self, loss: Graph, env: dict, part: dict) -> float:
        from nndsl.backends.numpy.prims import make_numpy_prims
        from nndsl.interpreter import run

        sources = (env, part, self.engine.to_numpy(self.weights))
        feeds = {n: next(s[n] for s in sources if n in s) for n, _ in loss.inputs}
        result = run(loss, make_numpy_prims(training=False), feeds, {})
        return float(result.env[loss.outputs[0]])

    def metric(self, name: str, env: dict, part: dict) -> float:
        if not self.spec.targets:
            raise NndslError(f"metric '{name}' needs a target", self.spec.span,
                             hint="declare one: `target y: [batch]`")
        y, t = env[self.model.outputs[0]], part[self.spec.targets[0][0]]
        fn = ops.get(name, "metric").compute
        from nndsl.backends.numpy.prims import make_numpy_prims

        return float(fn(make_numpy_prims(), y, t))

    def should_stop(self, stage: Stage) -> bool:
        early = stage.get("early_stop")
        if early is None:
            return False
        monitor = early.get("monitor", "val_loss")
        series = self.history.series(monitor)
        if not series:
            raise NndslError(f"early_stop monitors '{monitor}', which is not recorded",
                             early.span, hint="set `split` to hold out validation rows, or "
                             "monitor `loss`")
        return bool(ops.get(early.name, "early_stop").compute(series, **dict(early.kwargs)))

    def record(self, row: dict[str, Any]) -> None:
        self.history.rows.append(row)
        self.on_row(row)
