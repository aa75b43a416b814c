"""Hebbian storage: a Hopfield layer's weights set from the training patterns in one shot."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from nndsl.errors import NndslError
from nndsl.ir import Graph, Node, TensorType
from nndsl.training.registry import CheckContext, Trainer, trainer
from nndsl.training.session import Position, Session
from nndsl.training.stages import Stage


def hopfield_layer(model: Graph, span: object = None) -> Node:
    layers = [n for n in model.nodes if n.op == "hopfield"]
    if len(layers) != 1:
        raise NndslError(f"trainer hebbian stores patterns in one hopfield layer; model "
                         f"'{model.name}' has {len(layers)}", span,  # type: ignore[arg-type]
                         hint="add `memory: hopfield(steps=10)` to the model")
    if layers[0].inputs[0] not in dict(model.inputs):
        raise NndslError("trainer hebbian stores the data's rows: the hopfield layer must read "
                         "a model input directly", layers[0].span)
    return layers[0]


@trainer("hebbian")
@dataclass(frozen=True, kw_only=True)
class Hebbian(Trainer):
    """W = (1/M) sum_m x_m x_m^T with zero diagonal, b = 0: Hebb's rule stores M patterns.

    normalize = false drops the 1/M; bias = mean_activity sets b to the mean pattern activity
    (the lecture demo's choice). The patterns are the training data's rows of the input the
    hopfield layer reads; nothing is iterated, so no epochs, batch or optimizer apply.
    """

    normalize: bool = True
    zero_diagonal: bool = True
    bias: Literal["zero", "mean_activity"] = "zero"

    gradient_free = True

    def check(self, ctx: CheckContext) -> None:
        hopfield_layer(ctx.model, ctx.call_span)

    def data(self, ctx: CheckContext) -> dict[str, TensorType]:
        layer = hopfield_layer(ctx.model, ctx.call_span)
        return {layer.inputs[0]: ctx.model.types()[layer.inputs[0]]}

    def store(self, patterns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(W, b) for patterns [M, N]: W = (1/M) sum x x^T (or the sum), b = 0 or mean(x)."""
        x = np.asarray(patterns, dtype=np.float64)
        weight = x.T @ x / (len(x) if self.normalize else 1)
        if self.zero_diagonal:
            np.fill_diagonal(weight, 0.0)
        bias = x.mean(axis=0) if self.bias == "mean_activity" else np.zeros(x.shape[1])
        return weight, bias

    def run(self, session: Session, stage: Stage, index: int, start: Position | None) -> None:
        model = session.model
        layer = hopfield_layer(model)
        names = dict(layer.weights)
        w, b = self.store(session.data.train[layer.inputs[0]])
        dtype = model.weight(names["weight"]).dtype
        stored = {names["weight"]: w, names["bias"]: b}
        session.weights[model.name].update(session.engine.to_backend(
            {k: v.astype("float64" if dtype == "f64" else "float32") for k, v in stored.items()}))
        session.record({"kind": "epoch", "step": session.step, "epoch": 1, "phase": stage.name,
                        "patterns": float(len(session.data.train[layer.inputs[0]]))})
