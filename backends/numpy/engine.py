"""The reference engine: NumPy arrays, reverse mode over the primitive trace."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from nndsl.backends.numpy.autodiff import (
    Var,
    leaf,
    loss_and_grad,
    make_grad_prims,
    value_of,
)
from nndsl.backends.numpy.prims import make_numpy_prims

from nndsl.interpreter import RunResult, run
from nndsl.ir import Call, Graph
from nndsl.training.core import penalty_and_grad, run_loss


class NumpyEngine:
    """Every array is a NumPy array; gradients by the reference reverse mode. Its random
    streams are NumPy generators seeded per use, so `--rng reference` is what it always does."""

    name = "numpy"

    def __init__(self, device: str = "cpu", rng: str = "device") -> None:
        self.device = "cpu"
        self.P = make_numpy_prims(training=False)

    def to_backend(self, arrays: Mapping[str, Any]) -> dict[str, Any]:
        return {k: np.asarray(v) for k, v in arrays.items()}

    def to_numpy(self, arrays: Mapping[str, Any]) -> dict[str, np.ndarray]:
        return {k: np.asarray(v) for k, v in arrays.items()}

    def to_backend_state(self, state: Mapping[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        return {k: dict(v) for k, v in state.items()}

    def take(self, array: Any, index: np.ndarray) -> Any:
        return array[index]

    def table(self, seed: int) -> Any:
        return make_numpy_prims(training=True, seed=seed)

    def run(self, graph: Graph, feeds: Mapping[str, Any], weights: Mapping[str, Any], *,
            training: bool = False, seed: int = 0) -> RunResult:
        P = self.table(seed) if training else self.P
        with np.errstate(all="ignore"):
            return run(graph, P, feeds, weights)

    def loss_and_grad(self, model: Graph, loss: Graph, feeds: Mapping[str, Any],
                      weights: Mapping[str, Any], frozen: tuple[str, ...], seed: int,
                      penalties: Mapping[str, list[Call]] | None = None
                      ) -> tuple[float, dict[str, Any], dict[str, Any]]:
        with np.errstate(all="ignore"):  # the trainer reports the first non-finite value
            g = loss_and_grad(model, loss, feeds, weights, frozen=frozen, training=True,
                              seed=seed, outputs=False)
            total, grads = float(g.value), g.weights
            for name, calls in (penalties or {}).items():
                if name in grads:
                    value, extra = penalty_and_grad(calls, weights[name])
                    total += value
                    grads[name] = grads[name] + extra
        return total, grads, g.updates

    def value_and_grad(self, fn: Callable[[Any, dict[str, Any]], Any],
                       weights: Mapping[str, Any], wrt: list[str], seed: int
                       ) -> tuple[float, dict[str, Any]]:
        P = make_grad_prims(training=True, seed=seed)
        leaves = {k: leaf(v) if k in wrt else v for k, v in weights.items()}
        with np.errstate(all="ignore"):
            out = fn(P, leaves)
            grads = P.tape.gradients(out, [leaves[k] for k in wrt])
        return float(value_of(out)), {k: g if g is not None else np.zeros_like(weights[k])
                                      for k, g in zip(wrt, grads, strict=True)}

    def value_grads(self, model: Graph, loss: Graph, feeds: Mapping[str, Any],
                    weights: Mapping[str, Any], seed: int, names: list[str]
                    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Every float weight is a leaf, so each value downstream of one is on the tape."""
        P = make_grad_prims(training=True, seed=seed)
        with np.errstate(all="ignore"):
            value, result = run_loss(P, model, loss, feeds, {k: leaf(v) for k, v in
                                                             weights.items()})
            found = [result.env[n] for n in names]
            grads = P.tape.gradients(value, found)
        return ({n: np.asarray(value_of(v)) for n, v in zip(names, found, strict=True)},
                {n: g if g is not None else np.zeros(np.shape(value_of(v)))
                 for n, v, g in zip(names, found, grads, strict=True)})

    def nonfinite(self, arrays: Mapping[str, Any], *, scratch: bool = False) -> str | None:
        return next((k for k, v in arrays.items() if not np.isfinite(v).all()), None)

    def predict(self, model: Graph, feeds: Mapping[str, np.ndarray],
                weights: Mapping[str, Any]) -> dict[str, np.ndarray]:
        inputs = {n: feeds[n] for n, _ in model.inputs}
        with np.errstate(all="ignore"):
            return dict(run(model, self.P, inputs, weights).env)

    def scalar(self, x: Any) -> float:
        return float(value_of(x) if isinstance(x, Var) else x)
