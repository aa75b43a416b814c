"""Gradient checking: reverse-mode gradients against central differences, in float64.

The lecture notes' method: perturb one component θ_i by ±ε and compare
(J(θ + ε e_i) − J(θ − ε e_i)) / 2ε with the analytic ∂J/∂θ_i. Every evaluation of J uses a
fresh NumPy table with the same seed, so in training mode the dropout masks, noise and
reparameterisation draws are replayed identically (the check covers the training-time graph,
batch statistics included, not the inference graph). Tensors with more than `max_elements`
entries are checked on a seeded random subset of that many entries (2 forward passes each).

Relative error, per element: |a − n| / max(|a|, |n|, floor), a analytic, n numerical. Central
differences at ε = 1e-6 in float64 resolve a derivative to about 1e-10·max(1, |J|) absolute
(the roundoff of J, ~1e-16·|J|, divided by 2ε), so a gradient that is 0 (a bias before batch
norm) or nearly so would show that noise as a large "relative" error. The floor is
`tiny`·max(1, |J|), tiny = 1e-3: below it the measure is the absolute error × 1000 (for
|J| <= 1), so an error of 1e-8 there still shows as 1e-5. `TOLERANCE` (1e-5) is what
`format_report` calls ok; the shipped specs' worst is about 3e-7.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from nndsl.backends.numpy.autodiff import (
    leaf,
    loss_graph,
    make_grad_prims,
    run_loss,
    trainable,
    value_of,
)
from nndsl.backends.numpy.prims import make_numpy_prims

from nndsl import ops
from nndsl.check import concrete, random_inputs
from nndsl.initialize import initialize
from nndsl.interpreter import run
from nndsl.ir import NUMPY_DTYPE, Graph, Node, Program, TensorType, TrainSpec

TINY = 1e-3
TOLERANCE = 1e-5  # largest max_rel_error format_report calls ok
Objective = Callable[[Any, Mapping[str, Any]], Any]  # (P, weights) -> scalar


def relative_error(analytic: np.ndarray, numeric: np.ndarray, floor: float = TINY) -> np.ndarray:
    """|a − n| / max(|a|, |n|, floor), elementwise (see the module docstring)."""
    scale = np.maximum(np.maximum(np.abs(analytic), np.abs(numeric)), floor)
    return np.abs(analytic - numeric) / scale


def noise_floor(objective_value: Any, tiny: float = TINY) -> float:
    """The relative-error floor for derivatives of J = objective_value: tiny·max(1, |J|), as
    the roundoff of J, which limits central differences, grows with |J|."""
    return tiny * max(1.0, abs(float(np.asarray(objective_value))))


def sample_indices(size: int, max_elements: int | None, rng: np.random.Generator) -> np.ndarray:
    """Flat indices to perturb: all of them, or a sorted random subset of `max_elements`."""
    if max_elements is None or size <= max_elements:
        return np.arange(size)
    return np.sort(rng.choice(size, max_elements, replace=False))


def numerical_grad(f: Callable[[], float], array: np.ndarray, indices: Iterable[int],
                   eps: float = 1e-6) -> np.ndarray:
    """Central differences of f() w.r.t. the given flat entries of `array`, perturbed in place
    (and restored). `array` should be float64: a float32 step of 1e-6 is mostly rounding."""
    if not array.flags.c_contiguous:
        raise ValueError("numerical_grad perturbs the array in place: it must be contiguous")
    flat = array.reshape(-1)  # a view: f() sees the perturbation
    out = []
    for i in indices:
        keep = flat[i]
        flat[i] = keep + eps
        plus = float(f())
        flat[i] = keep - eps
        minus = float(f())
        flat[i] = keep
        out.append((plus - minus) / (2 * eps))
    return np.asarray(out, dtype=np.float64)


@dataclass(frozen=True)
class CheckRow:
    """One weight's gradient check: the worst errors over the `checked` entries compared."""

    model: str
    layer: str
    weight: str
    shape: tuple[int, ...]
    checked: int
    max_abs_error: float
    max_rel_error: float


def check_weights(objective: Objective, weights: Mapping[str, Any], names: Iterable[str], *,
                  model: str = "", eps: float = 1e-6, max_elements: int | None = 32,
                  tiny: float = TINY, training: bool = False, seed: int = 0) -> list[CheckRow]:
    """Reverse-mode gradients of objective(P, weights) against central differences, one row
    per named weight. Float weights are copied to float64; every evaluation gets a fresh
    table made with `training` and `seed`, so random draws repeat exactly."""
    arrays = {k: np.array(v, dtype=np.float64) if _is_float(v) else v for k, v in weights.items()}
    names = list(names)
    P = make_grad_prims(training=training, seed=seed)
    traced = {k: leaf(v) if k in names else v for k, v in arrays.items()}
    value = objective(P, traced)
    analytic = P.tape.gradients(value, [traced[k] for k in names])
    floor = noise_floor(value_of(value), tiny)

    def f() -> float:
        return float(np.asarray(objective(make_numpy_prims(training, seed), arrays)))

    rng = np.random.default_rng(seed)
    rows = []
    for name, a in zip(names, analytic, strict=True):
        idx = sample_indices(arrays[name].size, max_elements, rng)
        numeric = numerical_grad(f, arrays[name], idx, eps)
        picked = a.reshape(-1)[idx]
        rows.append(CheckRow(
            model, name.rsplit(".", 1)[0], name, tuple(arrays[name].shape), len(idx),
            float(np.abs(picked - numeric).max(initial=0.0)),
            float(relative_error(picked, numeric, floor).max(initial=0.0)),
        ))
    return rows


def _is_float(value: Any) -> bool:
    return np.issubdtype(np.result_type(value), np.floating)


def _float64(arrays: Mapping[str, Any]) -> dict[str, Any]:
    return {k: np.asarray(v, dtype=np.float64) if _is_float(v) else v for k, v in arrays.items()}


def synthetic_targets(loss: Graph, targets: Iterable[tuple[str, TensorType]],
                      rng: np.random.Generator,
                      sizes: dict[str, int] | None = None) -> dict[str, np.ndarray]:
    """Targets for a loss graph: class indices where a loss reads the target as indices (one
    axis less than its prediction: the losses' rule), else uniform [0, 1) values."""
    types = loss.types()
    classes: dict[str, int] = {}
    for node in loss.nodes:
        if len(node.inputs) >= 2 and ops.OPS[node.op].kind in ("loss", "metric"):
            pred, target = types.get(node.inputs[0]), types.get(node.inputs[1])
            if pred is not None and target is not None and target.rank == pred.rank - 1:
                classes[node.inputs[1]] = concrete(pred.shape, sizes)[-1]
    out = {}
    for name, ty in targets:
        shape = concrete(ty.shape, sizes)
        if name in classes:
            out[name] = rng.integers(0, classes[name], size=shape).astype(NUMPY_DTYPE[ty.dtype])
        elif ty.dtype == "i64":
            out[name] = rng.integers(0, 2, size=shape)
        else:
            out[name] = rng.random(shape)
    return out


def model_objective(model: Graph, train: TrainSpec | None, feeds: Mapping[str, Any],
                    weights: Mapping[str, Any], rng: np.random.Generator) -> Objective:
    """J(P, weights): the train block's loss; without one, Σ_outputs Σ c ⊙ y with fixed random
    c (a random projection of every float output), so any model can be checked."""
    if train is not None and train.loss is not None:
        loss = loss_graph(train)
        return lambda P, w: run_loss(P, model, loss, feeds, w)[0]
    inputs = {n: feeds[n] for n, _ in model.inputs}
    env = run(model, make_numpy_prims(), inputs, weights).env
    cotangents = {n: rng.standard_normal(np.shape(env[n])) for n in model.outputs
                  if _is_float(env[n])}

    def project(P: Any, w: Mapping[str, Any]) -> Any:
        out = run(model, P, inputs, w).env
        total: Any = 0.0
        for name, c in cotangents.items():
            total = P.add(total, P.sum(P.mul(out[name], c)))
        return total

    return project


def differentiable(model: Graph) -> bool:
    """Whether every op of the model has a gradient (hopfield's sign steps do not)."""
    return all(ops.OPS[n.op].differentiable for n in model.nodes)


def surrogate_op(model: Graph) -> Node | None:
    """The first node whose gradient is a surrogate (a spiking layer): finite differences of
    its forward value cannot check that gradient, so such a model is not checked."""
    return next((n for n in model.nodes if ops.OPS[n.op].surrogate), None)


def gradient_check(target: Program | Graph, train: TrainSpec | None = None, *,
                   weights: Mapping[str, Any] | None = None,
                   feeds: Mapping[str, Any] | None = None, eps: float = 1e-6,
                   max_elements: int | None = 32, tiny: float = TINY, training: bool = True,
                   seed: int | None = None, sizes: dict[str, int] | None = None,
                   ) -> list[CheckRow]:
    """Check every trainable weight's gradient (frozen ones too) against central differences.

    A Program checks each differentiable model: against its train block's loss when it has
    one, else against a random projection of its outputs. Defaults: weights from the spec's
    initialisers (the train block's seed), random inputs as `nndsl check` draws them, targets
    from `synthetic_targets`, training mode with the random draws replayed (module docstring).
    """
    if isinstance(target, Program):
        rows: list[CheckRow] = []
        for model in target.models:
            if differentiable(model) and surrogate_op(model) is None:
                spec = next((t for t in target.trains
                             if t.model == model.name and t.loss is not None), None)
                rows += gradient_check(model, spec, eps=eps, max_elements=max_elements,
                                       tiny=tiny, training=training, seed=seed, sizes=sizes)
        return rows
    model = target
    if seed is None:
        seed = train.get("seed", 0) if train is not None else 0
    rng = np.random.default_rng(seed)
    weights = _float64(weights if weights is not None else initialize(model, seed))
    if feeds is None:
        feeds = random_inputs(model, rng, sizes)
        if train is not None and train.loss is not None:
            feeds.update(synthetic_targets(train.loss, train.targets, rng, sizes))
    feeds = _float64(feeds)
    objective = model_objective(model, train, feeds, weights, rng)
    return check_weights(objective, weights, trainable(model), model=model.name, eps=eps,
                         max_elements=max_elements, tiny=tiny, training=training, seed=seed)


@dataclass(frozen=True)
class Skipped:
    """A layer `check --grad` did not check, and why."""

    model: str
    layer: str
    reason: str


def skipped_layers(program: Program) -> list[Skipped]:
    """The layers with weights whose gradients are not checked: in a model with an op that
    has no gradient (each layer named with the op that blocks it), and buffers."""
    from nndsl.training.gradient_flow import gradient_flow

    out: list[Skipped] = []
    for model in program.models:
        seen: set[str] = set()
        blocked = {} if differentiable(model) else gradient_flow(model).blocked
        for w in model.weights:
            layer = w.name.rsplit(".", 1)[0]
            if layer in seen:
                continue
            if w.role == "buffer" or not w.trainable:
                reason = "holds state, not trained weights" if w.role == "buffer" else \
                    "declared trainable=false"
            elif (surrogate := surrogate_op(model)) is not None:
                where = f" (line {surrogate.span.line})" if surrogate.span else ""
                reason = (f"{surrogate.op}{where} trains with a surrogate gradient, which "
                          "finite differences cannot check")
            elif not differentiable(model):
                node = blocked.get(w.name)
                op = node.op if node is not None else next(
                    n.op for n in model.nodes if not ops.OPS[n.op].differentiable)
                where = f" (line {node.span.line})" if node is not None and node.span else ""
                reason = f"the model has no gradient: {op}{where} has none"
            else:
                continue
            seen.add(layer)
            out.append(Skipped(model.name, layer, reason))
    return out


def format_skipped(rows: Iterable[Skipped]) -> str:
    return "\n".join(f"skipped {r.model}.{r.layer}: {r.reason}" for r in rows)


def worst_by_layer(rows: Iterable[CheckRow]) -> dict[str, float]:
    """The largest relative error of each layer label (over its weights)."""
    worst: dict[str, float] = {}
    for r in rows:
        worst[r.layer] = max(worst.get(r.layer, 0.0), r.max_rel_error)
    return worst


def format_report(rows: Iterable[CheckRow], tolerance: float = TOLERANCE) -> str:
    """A text table of the rows; a row above `tolerance` is marked FAIL."""
    header = ("model", "layer", "weight", "shape", "checked", "max abs err", "max rel err", "")
    lines = [header]
    for r in rows:
        lines.append((r.model, r.layer, r.weight, "[" + ", ".join(map(str, r.shape)) + "]",
                      str(r.checked), f"{r.max_abs_error:.2e}", f"{r.max_rel_error:.2e}",
                      "ok" if r.max_rel_error <= tolerance else "FAIL"))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip()
                     for line in lines)
