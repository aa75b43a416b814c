"""Training data: load the train block's `data`, match arrays to inputs and targets by name,
validate shapes and values, and split off the validation rows — before anything is written."""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nndsl import ops
from nndsl.data.binding import Binding, BoundArrays, Request, fit_scale
from nndsl.data.stream import checked, take_rows
from nndsl.errors import NndslError, Span
from nndsl.ir import NUMPY_DTYPE, Graph, Node, TensorType, TrainSpec, format_shape


@dataclass
class Dataset:
    """Named arrays with one row per example, split into training and validation rows."""

    train: dict[str, np.ndarray]
    val: dict[str, np.ndarray]
    binding: Binding = field(default_factory=Binding)  # columns, class labels, standardisation

    @property
    def rows(self) -> int:
        return len(next(iter(self.train.values())))


def _takes_request(compute: object) -> bool:
    """A data op whose function has a second positional parameter binds by the spec's names
    (nndsl/data/files.py)."""
    positional = [p for p in inspect.signature(compute).parameters.values()  # type: ignore
                  if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD]
    return len(positional) >= 2


def load_arrays(spec: TrainSpec, base_dir: Path, wanted: dict[str, TensorType] | None = None,
                stored: Binding | None = None) -> dict[str, np.ndarray]:
    """The data call's arrays; a binding that cannot work is an error at the call."""
    data = spec.get("data")
    if data is None:
        raise NndslError(f"train block '{spec.model}' has no data", spec.span,
                         hint='add e.g. `data = builtin("xor")` or `data = csv("f.csv", '
                         'target="label")`')
    opdef = ops.get(data.name, "data", data.span)
    targets = tuple(n for n, _ in spec.targets if wanted is None or n in wanted)
    request = Request(tuple(n for n in wanted or () if n not in targets), targets, stored)
    try:
        if wanted is not None and _takes_request(opdef.compute):
            return opdef.compute(base_dir, request, **dict(data.kwargs))  # type: ignore
        return dict(opdef.compute(base_dir, **dict(data.kwargs)))
    except NndslError as e:
        e.span = e.span or data.span
        raise


def describe(spec: TrainSpec) -> str:
    """Where the data comes from, for messages: the file, or the built-in set."""
    data = spec.get("data")
    if data is None:
        return "the data"
    path = data.get("path")
    return f"'{path}'" if path is not None else f"{data.name}(\"{data.get('name')}\")"


def where(spec: TrainSpec) -> Span | None:
    """Data errors point at the `data = ...` setting."""
    data = spec.get("data")
    return data.span if data is not None and data.span is not None else spec.span


def _check(name: str, array: np.ndarray, ty: TensorType, source: str, spec: TrainSpec) -> \
        np.ndarray:
    """One array against its declaration: its kind of values, rank, fixed sizes, values
    finite and within the declared dtype; cast to that dtype (see `convert`)."""
    role = "target" if name in dict(spec.targets) else "input"
    _kind(array, source, spec)
    want = ty.shape[1:]
    got = array.shape[1:]
    fits = len(want) == len(got) and all(not isinstance(w, int) or w == g
                                         for w, g in zip(want, got, strict=True))
    if not fits and len(want) == len(got) + 1 and want[-1] == 1:
        array, got, fits = array[..., None], (*got, 1), True  # [rows] data for a [batch, 1] slot
    if not fits and len(want) == len(got) - 1 and got[-1] == 1 and \
            all(not isinstance(w, int) or w == g for w, g in zip(want, got, strict=False)):
        array, got, fits = array[..., 0], got[:-1], True  # a CSV column for a [batch] slot
    if not fits:
        raise NndslError(f"data array '{source}' from {describe(spec)} does not fit {role} "
                         f"'{name}'",
                         where(spec),
                         expected=f"rows of {format_shape(want)} "
                         f"(declared {format_shape(ty.shape)})",
                         received=f"rows of {format_shape(got)} ({len(array)} rows)")
    if array.dtype.kind == "f" and not np.all(np.isfinite(array)):
        bad = np.argwhere(~np.isfinite(array))[0]
        raise NndslError(f"data array '{source}' from {describe(spec)} holds NaN or infinity",
                         where(spec), received=f"{array[tuple(bad)]} at index "
                         f"{tuple(int(i) for i in bad)}", hint="nndsl does not fill in missing "
                         "values: drop or impute those rows first")
    if ty.dtype.startswith("i") and np.issubdtype(array.dtype, np.floating):
        _integral(name, array, spec)
    return convert(array, np.dtype(NUMPY_DTYPE[ty.dtype]), source, spec)


KINDS = {"c": "complex numbers", "U": "strings", "S": "byte strings", "O": "Python objects",
         "V": "records (a structured dtype)", "M": "dates", "m": "time differences"}


def _kind(array: np.ndarray, source: str, spec: TrainSpec) -> None:
    """Only numbers and booleans, with rows: complex, text, objects, records, dates and a
    single number (a 0-d array) are errors, never silently cast."""
    what = KINDS.get(array.dtype.kind) or ("records (a structured dtype)" if array.dtype.names
                                            else None)
    if what is not None:
        raise NndslError(f"data array '{source}' from {describe(spec)} is not numeric: it holds "
                         f"{what}",
                         where(spec), expected="numbers (float, integer or bool)",
                         received=f"dtype {array.dtype}",
                         hint="store the real and imaginary parts as separate arrays" if
                         array.dtype.kind == "c" else "store plain numeric arrays; encode "
                         "categories as integers")
    if array.ndim == 0:
        raise NndslError(f"data array '{source}' from {describe(spec)} is a single number, "
                         "not rows", where(spec), expected="an array with one row per example",
                         received=f"a 0-d array ({array.item()!r})")


def convert(array: np.ndarray, dtype: np.dtype, source: str, spec: TrainSpec) -> np.ndarray:
    """Data in the declared dtype. bool becomes 0/1; integers must be exact in it (every
    int8/int16/uint8/uint16 value is; larger ones beyond 2**24 may not be in float32) and floats
    within its range (1e39 does not fit float32) — else an error naming the value's index."""
    if array.dtype == dtype or array.dtype.kind == "b":
        return array.astype(dtype)
    if array.dtype.kind == "f" and dtype.kind == "f":
        outside = np.abs(array) > np.finfo(dtype).max
        problem = f"outside {dtype}'s range (largest {np.finfo(dtype).max:.3g})"
        with np.errstate(all="ignore"):
            converted = array.astype(dtype)
    else:
        with np.errstate(all="ignore"):
            converted = array.astype(dtype)
            outside = converted.astype(array.dtype) != array
        problem = f"not exactly representable as {dtype}"
    if outside.any():
        at = _first(outside)
        raise NndslError(f"data array '{source}' from {describe(spec)} holds {array[at]} at "
                         f"index {at}: {problem}", where(spec), expected=f"values {dtype} holds",
                         received=f"{array[at]} ({array.dtype})", hint="rescale the data "
                         "(standardize it), or declare a wider dtype (f64)")
    return converted


def _first(mask: np.ndarray) -> tuple[int, ...]:
    return tuple(int(i) for i in np.argwhere(mask)[0])


def _integral(name: str, array: np.ndarray, spec: TrainSpec) -> None:
    fractional = array != np.round(array)
    if fractional.any():
        at = _first(fractional)
        raise NndslError(f"'{name}' is declared as integers, but {describe(spec)} holds "
                         f"{array[at]} at row {at[0] + 1}", where(spec),
                         expected="whole numbers", received=f"{array[at]} at index {at}")


def index_bounds(graphs: list[Graph], spec: TrainSpec,
                 fed: set[str]) -> dict[str, tuple[int, Node]]:
    """Data arrays read as indices (class labels, token ids): name -> (bound, the reader)."""
    out: dict[str, tuple[int, Node]] = {}
    losses = [spec.loss, *(phase.loss for phase in spec.phases)]
    for g in [*graphs, *(loss for loss in losses if loss is not None)]:
        types = g.types()
        for node in g.nodes:
            opdef = ops.OPS.get(node.op)
            if opdef is None or opdef.index_bound is None:
                continue
            found = opdef.index_bound(*(types[i] for i in node.inputs), **dict(node.params))
            if found is None or node.inputs[found[0]] not in fed:
                continue
            name, limit = node.inputs[found[0]], found[1]
            if name not in out or limit < out[name][0]:
                out[name] = (limit, node)
    return out


def _in_range(name: str, array: np.ndarray, bound: int, node: Node, spec: TrainSpec) -> None:
    token = node.op == "embedding"
    what, reader = ("token ids", "embedding") if token else ("class indices", "the loss")
    hint = ("ids count from 0; raise the vocabulary size or remap the ids" if token else
            "labels count from 0; relabel the data or size the layer for every class")
    fractional = array != np.round(array)
    outside = fractional | (array < 0) | (array >= bound)
    if outside.any():
        at = _first(outside)
        problem = "not a whole number" if fractional[at] else \
            f"outside the {bound} {what} that {reader} reads"
        raise NndslError(f"'{name}' from {describe(spec)} holds {array[at]} at row {at[0] + 1}: "
                         f"{problem}", node.span, expected=f"whole numbers in [0, {bound - 1}]",
                         received=f"{array[at]} at index {at}", hint=hint)


def _labels_fit(name: str, labels: list[str], bound: tuple[int, Node] | None,
                spec: TrainSpec) -> None:
    """Text labels are class ids for a loss that reads them as such, one per class; two labels
    are 0 and 1 for any target (bce's)."""
    if bound is None and len(labels) == 2:
        return
    if bound is None:
        raise NndslError(f"target '{name}' from {describe(spec)} holds text labels, but no loss "
                         f"reads '{name}' as class ids", where(spec),
                         expected="numbers, two labels (0 and 1), or a target a classification "
                         "loss reads (cross_entropy)", received=f"labels {', '.join(labels[:5])}" +
                         (", ..." if len(labels) > 5 else ""),
                         hint="a regression target needs numbers in the file")
    limit, node = bound
    if len(labels) > limit:
        raise NndslError(f"target '{name}' from {describe(spec)} has {len(labels)} class labels, "
                         f"but the loss reads {limit} classes", node.span,
                         expected=f"at most {limit} labels", received=", ".join(labels),
                         hint=f"size the output for {len(labels)} classes")


def bind(wanted: dict[str, TensorType], graphs: list[Graph], spec: TrainSpec,
         arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The arrays the trainers read (the model's inputs and the block's targets, for
    backprop), checked, by name; `graphs` are the models that read them."""
    missing = [n for n in wanted if n not in arrays]
    if missing:
        raise NndslError(f"the data has no array for {', '.join(map(repr, missing))}",
                         where(spec), expected=", ".join(wanted),
                         received=", ".join(arrays) or "no arrays",
                         hint="name inputs and targets after the data's arrays, or map them: "
                         'npz("f.npz", x="X", y="labels")')
    bound = {n: checked(arrays[n], lambda a, n=n, ty=ty: _check(n, np.asarray(a), ty, n, spec))
             for n, ty in wanted.items()}  # a memory-mapped array is checked a chunk at a time
    bounds = index_bounds(graphs, spec, set(wanted))
    labels = arrays.binding.labels if isinstance(arrays, BoundArrays) else {}
    for name, vocabulary in labels.items():
        _labels_fit(name, vocabulary, bounds.get(name), spec)
    for name, (limit, node) in bounds.items():
        checked(bound[name], lambda a, name=name, limit=limit, node=node:
                _in_range(name, a, limit, node, spec))
    rows = {n: len(a) for n, a in bound.items()}
    if len(set(rows.values())) > 1:
        raise NndslError("data arrays have different numbers of rows", where(spec),
                         received=", ".join(f"{n}: {r}" for n, r in rows.items()))
    if not rows or not next(iter(rows.values())):
        raise NndslError("the data has no rows", where(spec))
    return bound


def split(arrays: dict[str, np.ndarray], fraction: float, seed: int,
          span: Span | None = None) -> Dataset:
    """Hold out `fraction` of the rows (a seeded random choice) for validation; `span` is the
    `split = ...` setting's."""
    rows = len(next(iter(arrays.values())))
    held = int(round(rows * fraction))
    if fraction and not 0 < held < rows:
        side = "validation" if held == 0 else "training"
        raise NndslError(f"split = {fraction} leaves no {side} rows of the data's {rows}",
                         span, expected=f"a fraction of the {rows} rows that holds out 1 to "
                         f"{rows - 1} of them", received=f"{held} held out",
                         hint="more data, or a larger split" if held == 0 else
                         "a smaller split")
    order = np.random.default_rng([seed, 7]).permutation(rows)
    val, train = order[:held], order[held:]
    return Dataset({k: take_rows(v, train) for k, v in arrays.items()},
                   {k: take_rows(v, val) for k, v in arrays.items()} if held else {})


def load_dataset(wanted: dict[str, TensorType], graphs: list[Graph], spec: TrainSpec,
                 base_dir: Path, stored: Binding | Path | None = None) -> Dataset:
    """The bound, checked and split data. `stored`: the binding (or the run directory whose
    data.json holds it) a resumed or evaluated run keeps: its class labels and statistics."""
    if isinstance(stored, Path):
        from nndsl.data.binding import load

        stored = load(stored)
    loaded = load_arrays(spec, base_dir, wanted, stored)
    data = split(bind(wanted, graphs, spec, loaded), spec.get("split", 0.0),
                 spec.get("seed", 0), spec.where("split"))
    if isinstance(loaded, BoundArrays):
        data.binding = loaded.binding
        _standardize(data, loaded.standardize, wanted, stored, spec)
    return data


def _standardize(data: Dataset, names: tuple[str, ...], wanted: dict[str, TensorType],
                 stored: Binding | None, spec: TrainSpec) -> None:
    """Each named input rescaled by statistics of the training rows (or the stored run's)."""
    ids = [n for n in names if not wanted[n].dtype.startswith("f")]
    if ids:
        raise NndslError(f"standardize = true rescales numbers, but input '{ids[0]}' is "
                         f"declared {wanted[ids[0]].dtype} (ids)", where(spec),
                         hint="standardize only float inputs: remove standardize")
    data.binding.scale = fit_scale(names, data.train, stored)
    for part in (data.train, data.val):
        for name in data.binding.scale:
            if name in part:
                part[name] = data.binding.standardized(name, part[name])
