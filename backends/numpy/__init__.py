"""The NumPy reference backend (pure NumPy: no torch, no onnx). It registers itself here; its
engine module is imported only when a run uses it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from nndsl.backend import Backend, Engine, register_backend

if TYPE_CHECKING:
    import numpy as np


def _engine(device: str, rng: str) -> Engine:
    from nndsl.backends.numpy.engine import NumpyEngine

    return NumpyEngine(device, rng)


def _forward(graph: Any, feeds: Mapping[str, Any],
             weights: Mapping[str, Any]) -> dict[str, np.ndarray]:
    import numpy as np
    from nndsl.backends.numpy.prims import make_numpy_prims

    from nndsl.interpreter import run

    env = run(graph, make_numpy_prims(training=False), feeds, weights).env
    return {name: np.asarray(env[name]) for name in graph.outputs}


register_backend(Backend(
    "numpy", "the pure-NumPy reference trainer (forward and reverse mode)", engine=_engine,
    forward=_forward, devices=("cpu",), differentiable=True, order=20,
    extra={"reference": True}))
