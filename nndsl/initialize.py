"""Parameters are initialised once, in NumPy, from the spec's seed; every backend starts there."""

from __future__ import annotations

import zlib

import numpy as np

from nndsl import ops
from nndsl.errors import NndslError
from nndsl.ir import NUMPY_DTYPE, Graph, WeightDecl


def weight_rng(seed: int, name: str) -> np.random.Generator:
    """One generator per weight, keyed by its name: adding a layer never reshuffles the others."""
    return np.random.default_rng([seed, zlib.crc32(name.encode("utf-8"))])


def init_weight(decl: WeightDecl, seed: int) -> np.ndarray:
    opdef = ops.get(decl.init.name, "initializer", decl.init.span or decl.span)
    try:
        value = opdef.compute(weight_rng(seed, decl.name), decl.shape, decl.fan_in, decl.fan_out,
                              **dict(decl.init.kwargs))
    except NndslError as e:  # e.g. a rule about the shape: shown at the initializer
        e.span = e.span or decl.init.span or decl.span
        raise
    except (ValueError, TypeError) as e:
        raise NndslError(f"cannot initialise {decl.name} with {decl.init}: {e}",
                         decl.init.span or decl.span) from e
    array = np.asarray(value, dtype=np.float64)
    if array.shape != decl.shape:
        raise NndslError(f"initializer {decl.init.name} gave shape {list(array.shape)} for "
                         f"{decl.name}, expected {list(decl.shape)}", decl.span)
    return array.astype(NUMPY_DTYPE[decl.dtype])


def initialize(graph: Graph, seed: int = 0, dtype: str | None = None) -> dict[str, np.ndarray]:
    """Arrays for every weight and buffer of `graph`, named `<label>.<param>`."""
    arrays = {w.name: init_weight(w, seed) for w in graph.weights}
    if dtype is not None:
        arrays = {k: v.astype(NUMPY_DTYPE[dtype]) for k, v in arrays.items()}
    return arrays
