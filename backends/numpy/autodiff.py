"""Reverse-mode automatic differentiation over the primitive trace (micrograd's idea, on arrays).

`make_grad_prims()` is a primitive table with the NumPy table's names and values: each call
computes its result with `make_numpy_prims` (the reference meaning, never re-implemented here)
and, when an operand carries a gradient, wraps the result in a `Var` appended to the table's
`Tape`. Backpropagation walks the tape in reverse and applies each primitive's rules from
`vjps.VJPS`. Every op written in `P.*` is therefore differentiable without a line of its own.

What carries a gradient: `Var`s, which start as leaves (weights, chosen inputs) and are made
by primitives that have a rule for an operand that is a `Var`, when the result is a float
array. Everything else (Python numbers, integer and boolean results, constants, random draws,
`zeros_like`) is a plain value with no gradient, so comparisons and index arithmetic cost
nothing. A weight used by two nodes (`dense(tied=enc)`) is one `Var`: both paths add up.

Entry points: `value_and_grad(fn, *arrays)` for any `fn(P, *xs)`; `grad(graph, ...)` for a
model output; `loss_and_grad(model, train, ...)` for model + loss graph (a `TrainSpec.loss`).
Gradient checking by central differences lives in `gradcheck.py`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import numpy as np
from nndsl.backends.numpy.prims import make_numpy_prims
from nndsl.backends.numpy.vjps import SAVING, VJPS, sum_to

from nndsl.interpreter import RunResult, run
from nndsl.ir import Graph, TrainSpec
from nndsl.prims import PRIMS
from nndsl.training.core import run_loss, step_loss, trainable


class Var:
    """An array that carries a gradient: its value and the primitive call that made it.

    A leaf has `prim = None`. The call's arguments are kept as given (Vars included) and as
    the plain values the forward computed with, which the backward pass hands each rule; `rules`
    pairs the rule of every operand a gradient flows back to with that operand.
    """

    __slots__ = ("value", "prim", "args", "kwargs", "plain", "rules")

    def __init__(self, value: Any, prim: str | None = None, args: tuple[Any, ...] = (),
                 kwargs: dict[str, Any] | None = None, plain: tuple[Any, ...] = (),
                 rules: tuple[tuple[Any, Any], ...] = ()) -> None:
        self.value = value
        self.prim = prim
        self.args = args
        self.kwargs = kwargs or {}
        self.plain = plain  # the arguments' plain values, as the forward saw them
        self.rules = rules  # (rule, operand) for each operand a gradient flows back to

    @property
    def shape(self) -> tuple[int, ...]:
        value = self.value
        return value.shape if isinstance(value, np.ndarray | np.generic) else tuple(
            np.shape(value))

    @property
    def dtype(self) -> np.dtype:
        value = self.value
        return value.dtype if isinstance(value, np.ndarray | np.generic) else np.result_type(
            value)

    def __repr__(self) -> str:
        made = f" from {self.prim}" if self.prim else " (leaf)"
        return f"Var({self.dtype}{list(self.shape)}{made})"


def value_of(x: Any) -> Any:
    """The plain value behind x: a Var's array, each element of a list or tuple (concat's
    operand), anything else as is."""
    if isinstance(x, Var):
        return x.value
    if isinstance(x, list):
        return [value_of(v) for v in x]
    if isinstance(x, tuple):
        return tuple(value_of(v) for v in x)
    return x


def _has_var(x: Any) -> bool:
    return isinstance(x, Var) or (isinstance(x, list | tuple)
                                  and any(isinstance(v, Var) for v in x))


def _is_float(value: Any) -> bool:
    if type(value) is np.ndarray or isinstance(value, np.generic):
        return value.dtype.kind == "f"
    return np.issubdtype(np.result_type(value), np.floating)


@dataclass
class Tape:
    """Every Var the table created, in creation order (a topological order of the trace)."""

    entries: list[Var] = field(default_factory=list)

    def backward(self, output: Var, cotangent: Any = None) -> dict[int, np.ndarray]:
        """Cotangents of every Var that `output` depends on, keyed by `id(var)`.

        `cotangent` defaults to 1 for a scalar output; a non-scalar output needs one.
        """
        if cotangent is None:
            if np.size(output.value) != 1:
                raise ValueError(f"the output has shape {list(output.shape)}: backpropagating "
                                 "from a non-scalar needs a cotangent of that shape")
            cotangent = np.ones_like(output.value)
        grads: dict[int, np.ndarray] = {id(output): np.asarray(cotangent, dtype=output.dtype)}
        for var in reversed(self.entries):
            g = grads.get(id(var))
            if g is None:
                continue
            args = var.plain
            for rule, operand in var.rules:
                local = rule(g, var.value, *args, **var.kwargs)
                if isinstance(operand, list | tuple):  # concat: one gradient per array
                    for part, piece in zip(operand, local, strict=True):
                        _accumulate(grads, part, piece)
                else:
                    _accumulate(grads, operand, local)
        return grads

    def gradients(self, output: Any, wrt: Iterable[Any], cotangent: Any = None) -> list[Any]:
        """d output / d x for each x in `wrt`: an array for a float Var (zeros when output does
        not depend on it), None for anything that carries no gradient."""
        wrt = list(wrt)
        grads = self.backward(output, cotangent) if isinstance(output, Var) else {}
        out: list[Any] = []
        for x in wrt:
            if not isinstance(x, Var):
                out.append(None)
            elif id(x) in grads:
                out.append(np.array(grads[id(x)], dtype=x.dtype))
            else:
                out.append(np.zeros(x.shape, dtype=x.dtype))
        return out


def _accumulate(grads: dict[int, np.ndarray], operand: Any, g: Any) -> None:
    """Add g (folded onto the operand's shape, in its dtype) to the operand's cotangent."""
    if not isinstance(operand, Var):
        return
    value = operand.value
    if (type(value) is np.ndarray or isinstance(value, np.generic)) \
            and isinstance(g, np.ndarray) and g.shape == value.shape:
        if g.dtype != value.dtype:  # the common case, without sum_to's checks
            g = g.astype(value.dtype)
    else:
        g = sum_to(g, operand.shape).astype(operand.dtype, copy=False)
    key = id(operand)
    grads[key] = grads[key] + g if key in grads else g


def _traced(name: str) -> Callable[..., Any]:
    """Primitive `name`, a method of `_GradTable`: on plain values, with the table's NumPy
    primitive, recorded on its tape when a gradient can flow through. A primitive in
    `vjps.SAVING` keeps what its rules reuse (a conv's patches) on its Var."""
    rules = VJPS.get(name, ())
    saving = SAVING.get(name)
    takes = tuple(rule is not None for rule in rules)  # which operands take a gradient
    count = len(takes)

    def prim(self: _GradTable, *args: Any, **kwargs: Any) -> Any:
        if kwargs and any(_has_var(v) for v in kwargs.values()):
            raise TypeError(f"P.{name}: pass arrays positionally (a keyword array would lose "
                            "its gradient)")
        for a in args:
            if type(a) is Var or isinstance(a, (list, tuple)):
                break
        else:  # plain values only (an index, a mask, a constant): nothing to record
            return getattr(self.base, name)(*args, **kwargs)
        plain, flows = [], []
        for i, a in enumerate(args):  # one pass: the plain values, and where a Var flows
            kind = type(a)
            if kind is Var:
                plain.append(a.value)
                if i < count and takes[i]:
                    flows.append((rules[i], a))
            elif isinstance(a, (list, tuple)):
                plain.append(value_of(a))
                if i < count and takes[i] and _has_var(a):
                    flows.append((rules[i], a))
            else:
                plain.append(a)
        if saving is not None and flows:
            value, saved = saving(*plain, **kwargs)
            kwargs = {**kwargs, **saved}
        else:
            value = getattr(self.base, name)(*plain, **kwargs)
        if not flows or not _is_float(value):
            return value
        var = Var(value, name, args, kwargs, tuple(plain), tuple(flows))
        self.tape.entries.append(var)
        return var

    prim.__name__ = name
    prim.__doc__ = PRIMS[name]
    return prim


class _GradTable:
    """A recording primitive table: the primitives of `_TRACED` as its methods (bound when
    looked up, so a table per training step costs one NumPy table and an empty tape)."""

    backend = "numpy"

    def __init__(self, base: SimpleNamespace, training: bool) -> None:
        self.base, self.tape = base, Tape()
        self.training, self.rng = training, base.rng


def _traced_table() -> None:
    for name in PRIMS:
        setattr(_GradTable, name, _traced(name))


_traced_table()  # made once, shared by every table


def make_grad_prims(training: bool = False, seed: int = 0) -> Any:
    """A recording primitive table: the NumPy table's values, plus `tape` for backward.

    `training` and `seed` mean what they mean for `make_numpy_prims`; two tables made with the
    same seed draw the same random numbers in the same order (gradient checks rely on it).
    """
    return _GradTable(make_numpy_prims(training=training, seed=seed), training)


def leaf(array: Any) -> Any:
    """A float array as a gradient-carrying leaf; anything else unchanged (no gradient)."""
    array = np.asarray(array) if isinstance(array, np.ndarray | np.generic) else array
    return Var(array) if isinstance(array, np.ndarray) and _is_float(array) else array


def value_and_grad(fn: Callable[..., Any], *arrays: Any, cotangent: Any = None,
                   training: bool = False, seed: int = 0) -> tuple[Any, list[Any]]:
    """fn(P, *xs) and its gradient with respect to every float array in `arrays`.

    Non-float arguments (index arrays, numbers, settings) are passed through and get None.
    The output must be a scalar unless `cotangent` (its shape) is given.
    """
    P = make_grad_prims(training=training, seed=seed)
    xs = [leaf(a) for a in arrays]
    out = fn(P, *xs)
    return value_of(out), P.tape.gradients(out, xs, cotangent)


@dataclass
class Gradients:
    """The differentiated value (e.g. the loss), gradients by name, and what else the run gave.

    `weights` has every trainable, non-frozen weight (zeros where the value does not depend on
    it); `inputs` the requested inputs; `outputs` the model's outputs; `updates` the buffer
    values stateful layers asked for in training mode.
    """

    value: np.ndarray
    weights: dict[str, np.ndarray]
    inputs: dict[str, np.ndarray] = field(default_factory=dict)
    outputs: dict[str, np.ndarray] = field(default_factory=dict)
    updates: dict[str, np.ndarray] = field(default_factory=dict)


def _leaves(arrays: Mapping[str, Any], names: Iterable[str]) -> dict[str, Any]:
    """`arrays` with the named ones turned into leaves."""
    names = set(names)
    return {k: leaf(v) if k in names else v for k, v in arrays.items()}


def _gradients(P: Any, output: Any, weights: Mapping[str, Any],
               feeds: Mapping[str, Any], result: RunResult, model: Graph | None,
               cotangent: Any = None) -> Gradients:
    """Backpropagate from `output` and collect gradients of the Var weights and feeds."""
    wnames = [k for k, v in weights.items() if isinstance(v, Var)]
    inames = [k for k, v in feeds.items() if isinstance(v, Var)]
    grads = P.tape.gradients(output, [weights[k] for k in wnames] + [feeds[k] for k in inames],
                             cotangent)
    return Gradients(
        np.asarray(value_of(output)),
        dict(zip(wnames, grads[:len(wnames)], strict=True)),
        dict(zip(inames, grads[len(wnames):], strict=True)),
        {k: np.asarray(value_of(result.env[k])) for k in model.outputs} if model else {},
        {k: np.asarray(value_of(v)) for k, v in result.updates.items()},
    )


def grad(graph: Graph, feeds: Mapping[str, Any], weights: Mapping[str, Any], *,
         output: str | None = None, cotangent: Any = None, inputs: Iterable[str] = (),
         frozen: Iterable[str] = (), training: bool = False, seed: int = 0) -> Gradients:
    """Gradients of one output of `graph` (its only output by default) w.r.t. its weights.

    A non-scalar output needs `cotangent` (the vector of the vector-Jacobian product).
    `inputs` names graph inputs to differentiate as well; `frozen` as for `trainable`.
    """
    if output is None:
        if len(graph.outputs) != 1:
            raise ValueError(f"{graph.name} has outputs {list(graph.outputs)}: name one")
        output = graph.outputs[0]
    P = make_grad_prims(training=training, seed=seed)
    wvars = _leaves(weights, trainable(graph, frozen))
    fvars = _leaves({n: feeds[n] for n, _ in graph.inputs}, inputs)
    result = run(graph, P, fvars, wvars)
    return _gradients(P, result.env[output], wvars, fvars, result, graph, cotangent)


def loss_graph(train: TrainSpec | Graph) -> Graph:
    """The loss of a train block (or a loss graph given directly)."""
    loss = train.loss if isinstance(train, TrainSpec) else train
    if loss is None:
        name = train.model if isinstance(train, TrainSpec) else "?"
        raise ValueError(f"train block '{name}' has no loss (it uses its own trainer)")
    return loss


def loss_and_grad(model: Graph, train: TrainSpec | Graph, feeds: Mapping[str, Any],
                  weights: Mapping[str, Any], *, frozen: Iterable[str] | None = None,
                  inputs: Iterable[str] = (), training: bool = True,
                  seed: int = 0, outputs: bool = True) -> Gradients:
    """The training loss on one batch and its gradient w.r.t. every trainable weight.

    `feeds` holds the model inputs and the train block's targets by name. `frozen` defaults
    to the train block's `freeze` labels. Training mode is the default: dropout, noise and
    batch statistics as in a training step, drawn from `seed`. Without `outputs` the model's
    trailing values the loss does not read (a classifier's softmax output) are not computed,
    as in a training step (`core.step_loss`), and `Gradients.outputs` is empty.
    """
    if frozen is None:
        frozen = train.get("freeze", ()) if isinstance(train, TrainSpec) else ()
    P = make_grad_prims(training=training, seed=seed)
    wvars = _leaves(weights, trainable(model, frozen))
    fvars = _leaves(feeds, inputs)
    value, result = (run_loss if outputs else step_loss)(P, model, loss_graph(train), fvars,
                                                          wvars)
    return _gradients(P, value, wvars, {k: fvars[k] for k in inputs}, result,
                      model if outputs else None)
