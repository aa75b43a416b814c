"""Running an exported model on rows from a file: `nndsl predict` and `nndsl evaluate` on an
ONNX file. A model is a run directory (its model.onnx, and its spec for the CSV target columns
to leave out) or an .onnx file; its inputs and outputs are read from the ONNX graph, so a
model nndsl did not write works too. onnx and onnxruntime are imported only when used."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nndsl.data.binding import Binding, from_metadata
from nndsl.errors import NndslError
from nndsl.table_files import Table, read_table

Dims = list[int | str]


@dataclass(frozen=True)
class Port:
    """One graph input or output: its name, dims (ints or symbols) and NumPy dtype."""

    name: str
    dims: Dims
    dtype: np.dtype

    @property
    def row_dims(self) -> Dims:
        return self.dims[1:]

    def row_size(self) -> int | None:
        """Numbers per row (a CSV row's width), None when a per-row dim is symbolic."""
        if not all(isinstance(d, int) and d > 0 for d in self.row_dims):
            return None
        return int(np.prod(self.row_dims, dtype=np.int64))


@dataclass
class Model:
    """An ONNX model ready to run, with what nndsl wrote beside it."""

    onnx: Any
    path: Path
    inputs: list[Port]
    outputs: list[Port]
    labels: list[str] | None  # class labels from the ONNX metadata
    skip_columns: frozenset[str] = frozenset()  # CSV columns that are targets, not inputs
    binding: Binding | None = None  # the CSV columns each input was trained on (nndsl_data)


def _port(value: Any) -> Port:
    import onnx

    tensor = value.type.tensor_type
    dims: Dims = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?")
                  for d in tensor.shape.dim]
    try:
        dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type))
    except (KeyError, TypeError, ValueError):
        dtype = np.dtype(object)
    return Port(value.name, dims, dtype)


def _labels(model: Any) -> list[str] | None:
    """`class_labels` metadata: a JSON list, or labels joined by commas."""
    meta = {p.key: p.value for p in model.metadata_props}
    text = meta.get("class_labels")
    if not text:
        return None
    if text.startswith("["):
        try:
            return [str(v) for v in json.loads(text)]
        except json.JSONDecodeError:
            pass
    return text.split(",")


def open_model(path: Path) -> Model:
    """A run directory's model.onnx, or an .onnx file, checked to be one predict can run."""
    from nndsl.export import load_onnx

    run_dir = path if path.is_dir() else None
    file = path / "model.onnx" if run_dir else path
    if run_dir is not None and not file.exists():
        raise NndslError(f"the run directory {path} has no model.onnx",
                         hint="a run writes model.onnx when training finishes; an interrupted "
                         f"run continues with `nndsl train --resume {path}`")
    model = model_of(load_onnx(file), file)
    if run_dir is not None:
        model.skip_columns = target_columns(run_dir)
    return model


def model_of(onnx_model: Any, file: Path) -> Model:
    """A loaded ONNX model's inputs, outputs and labels, checked to be one predict can run."""
    model = Model(onnx_model, file, [_port(v) for v in _graph_inputs(onnx_model)],
                  [_port(v) for v in onnx_model.graph.output], _labels(onnx_model),
                  binding=from_metadata(onnx_model, str(file)))
    _check_ports(model)
    return model


def _graph_inputs(model: Any) -> list[Any]:
    """The graph's real inputs: an initializer listed as an input (older exporters) is not."""
    weights = {t.name for t in model.graph.initializer}
    return [v for v in model.graph.input if v.name not in weights]


def _check_ports(model: Model) -> None:
    where = model.path
    if not model.inputs:
        raise NndslError(f"{where} has no inputs: there is nothing to feed it rows of")
    for role, ports in (("input", model.inputs), ("output", model.outputs)):
        for port in ports:
            if port.dtype.kind not in "biuf":
                raise NndslError(f"{where}: {role} '{port.name}' holds {port.dtype} values; "
                                 "predict feeds and reads numbers only",
                                 expected="a float, integer or boolean tensor",
                                 received=f"a {port.dtype} tensor")
            if not port.dims:
                raise NndslError(f"{where}: {role} '{port.name}' is a single value (0-d); "
                                 "predict works on rows [batch, ...]",
                                 expected="a leading batch axis", received="shape []")


def target_columns(run_dir: Path) -> frozenset[str]:
    """The CSV columns a run trained against (its targets), left out of the model's inputs
    when a file to predict on still has them. Read from the run's spec.nn."""
    from nndsl.program import load

    spec = run_dir / "spec.nn"
    if not spec.exists():
        return frozenset()
    program, _ = load(spec)
    names: set[str] = set()
    for train in program.trains:
        names.update(name for name, _ in train.targets)
        data = train.get("data")
        target = data.get("target") if data is not None and data.name == "csv" else None
        names.update(t for t in (target if isinstance(target, tuple) else (target,))
                     if isinstance(t, str))
    return frozenset(names)


# ---- reading rows --------------------------------------------------------------------------

def _read_npy(path: Path, model: Model) -> dict[str, np.ndarray]:
    if len(model.inputs) > 1:
        raise NndslError(f"the model has {len(model.inputs)} inputs; a .npy file holds one "
                         "array", expected=", ".join(p.name for p in model.inputs),
                         received=path.name, hint="save one array per input name in an .npz "
                         "(numpy.savez('rows.npz', NAME=...)), or a CSV with named columns")
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, EOFError) as e:
        raise NndslError(f"{path} is not a readable NumPy .npy array ({e})") from None
    except OSError as e:
        raise NndslError(f"cannot read {path}: {e}") from None
    if isinstance(array, np.lib.npyio.NpzFile):
        array.close()
        raise NndslError(f"{path} is an .npz archive, named .npy",
                         hint="rename it to .npz: arrays are then read by input name")
    return {model.inputs[0].name: _numeric(array, path.name)}


def _read_npz(path: Path, model: Model) -> dict[str, np.ndarray]:
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        raise NndslError(f"{path} is not a NumPy .npz archive ({e})") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise NndslError(f"{path} holds one array (.npy), not an .npz archive")
    with archive:
        wanted = [p.name for p in model.inputs]
        missing = [n for n in wanted if n not in archive.files]
        if missing:
            raise NndslError(f"{path.name} has no array for input "
                             f"{', '.join(map(repr, missing))}", expected=", ".join(wanted),
                             received=", ".join(archive.files) or "no arrays",
                             hint="name each array after the model input it feeds")
        try:
            return {n: _numeric(archive[n], f"{path.name}[{n}]") for n in wanted}
        except ValueError:
            raise NndslError(f"{path.name} holds Python objects; store numeric arrays") from None


def _numeric(array: np.ndarray, what: str) -> np.ndarray:
    if array.dtype.kind not in "biuf":
        raise NndslError(f"{what} holds {array.dtype} values, not numbers",
                         expected="a float or integer array", received=f"dtype {array.dtype}")
    if array.ndim == 0:
        raise NndslError(f"{what} is a single value (0-d), not rows",
                         expected="an array [rows, ...]", received="shape ()")
    return array


def _read_csv(path: Path, model: Model) -> dict[str, np.ndarray]:
    table = read_table(path)
    trained = model.binding.columns if model.binding is not None else {}
    if table.header and all(p.name in trained for p in model.inputs):
        return {p.name: table.numbers(_trained_columns(p.name, trained[p.name], table))
                for p in model.inputs}
    if len(model.inputs) == 1:
        keep = [j for j, n in enumerate(table.names) if n not in model.skip_columns]
        return {model.inputs[0].name: table.numbers(keep)}
    if not table.header:
        raise NndslError(f"{path} has no header, but the model has several inputs",
                         hint="name the columns after the inputs: NAME for one number per "
                         "row, NAME_0, NAME_1, ... for several")
    return {p.name: table.numbers(_columns_of(p, table.names, path)) for p in model.inputs}


def _trained_columns(name: str, columns: list[str], table: Table) -> list[int]:
    """The columns input `name` was trained on, by header name, in the training order."""
    missing = [c for c in columns if c not in table.names]
    if missing:
        from nndsl.errors import did_you_mean

        raise NndslError(f"{table.file.name} has no column '{missing[0]}', which input '{name}' "
                         "was trained on", expected=", ".join(columns),
                         received=", ".join(table.names),
                         hint=did_you_mean(missing[0], table.names) or "name the columns as "
                         "in the training file (their order may differ)")
    return [table.names.index(c) for c in columns]


def _columns_of(port: Port, names: list[str], path: Path) -> list[int]:
    """Input NAME reads column NAME (one number per row) or NAME_0, NAME_1, ... in order."""
    size = port.row_size()
    if size is None:
        raise NndslError(f"input '{port.name}' has a variable shape {port.dims}; a CSV row "
                         "cannot hold it", hint="feed it from an .npz array of that name")
    wanted = [port.name] if size == 1 else [f"{port.name}_{i}" for i in range(size)]
    if size == 1 and port.name not in names and f"{port.name}_0" in names:
        wanted = [f"{port.name}_0"]
    missing = [w for w in wanted if w not in names]
    if missing:
        shown = ", ".join(wanted[:3]) + (", ..." if len(wanted) > 3 else "")
        raise NndslError(f"{path.name} has no column {missing[0]!r} for input '{port.name}'",
                         expected=f"{size} column(s): {shown}", received=", ".join(names),
                         hint="name CSV columns after the inputs they feed")
    return [names.index(w) for w in wanted]


READERS: dict[str, Callable[[Path, Model], dict[str, np.ndarray]]] = {
    ".npy": _read_npy, ".npz": _read_npz, ".csv": _read_csv,
}


def read_rows(path: Path, model: Model) -> dict[str, np.ndarray]:
    """The model's inputs from a file (by its extension), shaped and typed as the model
    declares them; every input with the same number of rows."""
    if not path.exists():
        raise NndslError(f"no such input file: {path}")
    reader = READERS.get(path.suffix.lower())
    if reader is None:
        raise NndslError(f"cannot read rows from '{path.name}'", expected=", ".join(READERS),
                         received=path.suffix or "no extension")
    feeds = {p.name: fit(p, a) for p, a in zip(model.inputs, reader(path, model).values(),
                                                 strict=True)}
    rows = {n: len(a) for n, a in feeds.items()}
    if len(set(rows.values())) > 1:
        raise NndslError("the inputs have different numbers of rows",
                         received=", ".join(f"{n}: {r}" for n, r in rows.items()))
    return feeds


def fit(port: Port, x: np.ndarray) -> np.ndarray:
    """`x` in the port's shape and dtype: flat CSV rows are reshaped to the per-row dims."""
    if x.size == 0 and len(x) == 0 and port.row_size() is not None:
        return np.zeros((0, *port.row_dims), port.dtype)  # type: ignore[arg-type]
    if x.ndim != len(port.dims) and x.ndim == 2 and port.row_size() == x.shape[1]:
        x = x.reshape((x.shape[0], *port.row_dims))  # type: ignore[arg-type]
    if x.ndim == len(port.dims) - 1 and port.dims[-1] == 1:
        x = x[..., None]  # [rows] for a [batch, 1] input
    if x.ndim != len(port.dims):
        raise NndslError(f"input '{port.name}' has the wrong number of axes",
                         expected=str(port.dims), received=str(list(x.shape)))
    for axis, (want, got) in enumerate(zip(port.dims, x.shape, strict=True)):
        if axis and isinstance(want, int) and want and want != got:
            raise NndslError(f"input '{port.name}' needs size {want} on axis {axis}, got {got}",
                             expected=str(port.dims), received=str(list(x.shape)))
    return x.astype(port.dtype, copy=False)


# ---- running -------------------------------------------------------------------------------

def run_model(model: Model, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every output by name. 0 rows give empty outputs of the declared shape, without running."""
    rows = len(next(iter(feeds.values())))
    if rows == 0:
        return {p.name: np.zeros([0, *(d if isinstance(d, int) else 0 for d in p.row_dims)],
                                 p.dtype) for p in model.outputs}
    from nndsl.backends.onnx.runtime import ORT_ERRORS, session

    try:
        sess = session(model.onnx)
        outputs = sess.run(None, feeds)
    except ORT_ERRORS as e:  # e.g. an operator onnxruntime lacks for this dtype
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        missing = isinstance(e, ORT_ERRORS[3])  # NotImplemented: no kernel for this type
        raise NndslError(f"onnxruntime cannot run this model: {first}",
                         hint="onnxruntime's CPU kernels lack some float64 operators (Conv, "
                         "AveragePool, LSTM, GRU): declare the inputs f32" if missing else None
                         ) from None
    return {o.name: np.asarray(v) for o, v in zip(sess.get_outputs(), outputs, strict=True)}


# ---- classes -------------------------------------------------------------------------------

@dataclass
class Classes:
    """A classifier's answer per row: class probabilities and the names of the classes."""

    probs: np.ndarray  # [rows, K]
    labels: list[str]
    from_scores: bool  # the output held scores (logits): probs is their softmax

    def top(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The k most probable classes per row, best first, and their probabilities
        (ties: the lower class first)."""
        order = np.argsort(-self.probs, axis=1, kind="stable")[:, :k]
        return order, np.take_along_axis(self.probs, order, axis=1)


def _is_distribution(p: np.ndarray) -> bool:
    return bool(np.all((p >= 0) & (p <= 1)) and np.allclose(p.sum(axis=1), 1.0, atol=1e-3))


def classify(model: Model, outputs: dict[str, np.ndarray]) -> Classes | None:
    """The first output read as classes: when the model stores class labels, or its rows are
    probability distributions over two or more classes; None otherwise (a regression)."""
    first = outputs[model.outputs[0].name]
    labels = model.labels
    if first.ndim == 1 or (first.ndim == 2 and first.shape[1] == 1):
        if labels is None or len(labels) != 2:
            return None
        p = first.reshape(-1, 1).astype(np.float64)
        return Classes(np.concatenate([1.0 - p, p], axis=1), labels, False)
    if first.ndim != 2 or first.shape[1] < 2:
        return None
    scores = first.astype(np.float64)
    if labels is None and not (len(scores) and _is_distribution(scores)):
        return None
    names = labels if labels is not None and len(labels) == scores.shape[1] else \
        [str(k) for k in range(scores.shape[1])]
    if _is_distribution(scores) or not len(scores):
        return Classes(scores, names, False)
    e = np.exp(scores - scores.max(axis=1, keepdims=True))
    return Classes(e / e.sum(axis=1, keepdims=True), names, True)
