"""The per-epoch evaluation: the metrics on the training rows, and the loss and metrics on the
validation rows, in inference mode, on whatever engine trained the model."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from nndsl import ops
from nndsl.backend import Engine
from nndsl.errors import NndslError
from nndsl.ir import Graph
from nndsl.training.core import loss_value
from nndsl.training.stages import Stage


def metric_values(engine: Engine, model: Graph, metrics: Iterable[str], env: Mapping[str, Any],
                  part: Mapping[str, Any], target: str | None, prefix: str = "") -> \
        dict[str, float]:
    """Each metric of the model's first output against the first target (NumPy arrays)."""
    from nndsl.backends.numpy.prims import make_numpy_prims

    out: dict[str, float] = {}
    for name in metrics:
        if target is None:
            raise NndslError(f"metric '{name}' needs a target", None,
                             hint="declare one: `target y: [batch]`")
        fn = ops.get(name, "metric").compute
        out[prefix + name] = float(fn(make_numpy_prims(), env[model.outputs[0]], part[target]))
    return out


def evaluate(engine: Engine, model: Graph, weights: Mapping[str, Any], stage: Stage,
             train: Mapping[str, Any], val: Mapping[str, Any], target: str | None) -> \
        dict[str, float]:
    """After an epoch: the metrics on the training rows, and the loss and metrics on the
    validation rows, in inference mode."""
    from nndsl.backends.numpy.prims import make_numpy_prims

    out: dict[str, float] = {}
    metrics = stage.get("metrics") or ()
    host = None
    for prefix, part in (("", train), ("val_", val)):
        if not part or (not prefix and not metrics):
            continue
        env = engine.predict(model, part, weights)
        if prefix and stage.loss is not None:
            host = host if host is not None else engine.to_numpy(weights)
            with np.errstate(all="ignore"):
                out["val_loss"] = float(loss_value(make_numpy_prims(), stage.loss, env, part,
                                                   host))
        out.update(metric_values(engine, model, metrics, env, part, target, prefix))
    return out
