"""Training data: load the train block's `data`, match arrays to inputs and targets by name,
validate shapes and values, and split off the validation rows — before anything is written."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nndsl import ops
from nndsl.errors import NndslError
from nndsl.ir import NUMPY_DTYPE, Graph, TensorType, TrainSpec, format_shape


@dataclass
class Dataset:
    """Named arrays with one row per example, split into training and validation rows."""

    train: dict[str, np.ndarray]
    val: dict[str, np.ndarray]

    @property
    def rows(self) -> int:
        return len(next(iter(self.train.values())))


def load_arrays(spec: TrainSpec, base_dir: Path) -> dict[str, np.ndarray]:
    data = spec.get("data")
    if data is None:
        raise NndslError(f"train block '{spec.model}' has no data", spec.span,
                         hint='add e.g. `data = builtin("xor")` or `data = csv("f.csv", '
                         'target="label")`')
    opdef = ops.get(data.name, "data", data.span)
    try:
        return dict(opdef.compute(base_dir, **dict(data.kwargs)))
    except NndslError as e:
        e.span = e.span or data.span
        raise


def _check(name: str, array: np.ndarray, ty: TensorType, source: str, spec: TrainSpec) -> \
        np.ndarray:
    """One array against its declaration: rank, fixed sizes, finite values; cast to dtype."""
    want = ty.shape[1:]
    got = array.shape[1:]
    fits = len(want) == len(got) and all(not isinstance(w, int) or w == g
                                         for w, g in zip(want, got, strict=True))
    if not fits and len(want) == len(got) + 1 and want[-1] == 1:
        array, got, fits = array[..., None], (*got, 1), True  # [rows] data for a [batch, 1] slot
    if not fits:
        raise NndslError(f"data array '{source}' does not fit '{name}'", spec.span,
                         expected=f"rows of {format_shape(want)} "
                         f"(declared {format_shape(ty.shape)})",
                         received=f"rows of {format_shape(got)} ({len(array)} rows)")
    if np.issubdtype(array.dtype, np.floating) and not np.all(np.isfinite(array)):
        bad = np.argwhere(~np.isfinite(array))[0]
        raise NndslError(f"data array '{source}' holds NaN or infinity", spec.span,
                         received=f"{array[tuple(bad)]} at index {tuple(int(i) for i in bad)}")
    return array.astype(NUMPY_DTYPE[ty.dtype])


def bind(graph: Graph, spec: TrainSpec, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The arrays for the model's inputs and the block's targets, checked, by name."""
    wanted = {**dict(graph.inputs), **dict(spec.targets)}
    missing = [n for n in wanted if n not in arrays]
    if missing:
        raise NndslError(f"the data has no array for {', '.join(map(repr, missing))}", spec.span,
                         expected=", ".join(wanted), received=", ".join(arrays) or "no arrays",
                         hint="name inputs and targets after the data's arrays, or map them: "
                         'npz("f.npz", x="X", y="labels")')
    bound = {n: _check(n, np.asarray(arrays[n]), ty, n, spec) for n, ty in wanted.items()}
    rows = {n: len(a) for n, a in bound.items()}
    if len(set(rows.values())) > 1:
        raise NndslError("data arrays have different numbers of rows", spec.span,
                         received=", ".join(f"{n}: {r}" for n, r in rows.items()))
    if not rows or not next(iter(rows.values())):
        raise NndslError("the data has no rows", spec.span)
    return bound


def split(arrays: dict[str, np.ndarray], fraction: float, seed: int) -> Dataset:
    """Hold out `fraction` of the rows (a seeded random choice) for validation."""
    rows = len(next(iter(arrays.values())))
    held = int(round(rows * fraction))
    if fraction and not 0 < held < rows:
        raise NndslError(f"split = {fraction} leaves no rows on one side of {rows}")
    order = np.random.default_rng([seed, 7]).permutation(rows)
    val, train = order[:held], order[held:]
    return Dataset({k: v[train] for k, v in arrays.items()},
                   {k: v[val] for k, v in arrays.items()} if held else {})


def load_dataset(graph: Graph, spec: TrainSpec, base_dir: Path) -> Dataset:
    arrays = bind(graph, spec, load_arrays(spec, base_dir))
    return split(arrays, spec.get("split", 0.0), spec.get("seed", 0))
