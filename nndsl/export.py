"""ONNX export of a checked model and inference with onnxruntime (imported only when used)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from nndsl import __version__
from nndsl.errors import NndslError, SourceMap
from nndsl.initialize import initialize
from nndsl.ir import Graph, Program


def pick_model(program: Program, name: str | None) -> Graph:
    """The model to export: the one named, or the only one."""
    if name is not None:
        for graph in program.models:
            if graph.name == name:
                return graph
        known = ", ".join(g.name for g in program.models)
        raise NndslError(f"no model named '{name}' in {program.file}", hint=f"models: {known}")
    if len(program.models) > 1:
        known = ", ".join(g.name for g in program.models)
        raise NndslError(f"{program.file} defines several models", hint=f"pick one with "
                         f"--model NAME ({known})")
    return program.models[0]


def export_onnx(program: Program, sources: SourceMap, graph: Graph,
                weights: dict[str, np.ndarray] | None = None) -> Any:
    """The ONNX model of `graph` (freshly initialised unless `weights` are given), checked."""
    from nndsl.backends.onnx.emitter import export_graph

    if weights is None:
        seed = next((t.get("seed", 0) for t in program.trains if t.model == graph.name), 0)
        weights = initialize(graph, seed)
    try:
        model = export_graph(graph, weights)
    except NndslError:
        raise
    except (NotImplementedError, ValueError) as e:
        raise NndslError(f"cannot export model '{graph.name}' to ONNX: {e}", graph.span) from e
    spec_text = sources.get(program.file, "")
    meta = {"nndsl_version": __version__, "model": graph.name,
            "spec_sha256": hashlib.sha256(spec_text.encode("utf-8")).hexdigest()}
    for key, value in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    return model


def read_array(path: Path) -> np.ndarray:
    """Rows to predict on, from .npy or .csv (numbers only, optional header line)."""
    if not path.exists():
        raise NndslError(f"no such input file: {path}")
    try:
        if path.suffix == ".npy":
            return np.load(path, allow_pickle=False)
        if path.suffix == ".csv":
            from nndsl.data.files import csv_data

            first = path.read_text(encoding="utf-8").lstrip().split("\n", 1)[0].split(",")
            header = not all(_is_number(cell) for cell in first)
            return csv_data(path.parent, path=path.name, header=header)["x"]
    except NndslError:
        raise
    except (ValueError, OSError) as e:
        raise NndslError(f"cannot read {path}: {e}") from e
    raise NndslError(f"unsupported input file {path}", expected=".npy or .csv",
                     received=path.suffix or "no suffix")


def _is_number(cell: str) -> bool:
    try:
        float(cell)
        return True
    except ValueError:
        return False


def load_onnx(path: Path) -> Any:
    """A model file, checked; a truncated or corrupted file is a clear error, not a crash."""
    import onnx

    if not path.exists():
        raise NndslError(f"no such model file: {path}")
    try:
        model = onnx.load(str(path))
        onnx.checker.check_model(model)
    except Exception as e:  # protobuf decode errors and checker failures alike
        raise NndslError(f"{path} is not a valid ONNX model ({type(e).__name__}: "
                         f"{str(e).splitlines()[0] if str(e) else 'unreadable'})") from e
    return model


def predict(model: Any, x: np.ndarray) -> dict[str, np.ndarray]:
    """Run the model's single input on `x` with onnxruntime; outputs by name."""
    from nndsl.backends.onnx.runtime import session

    (graph_input,) = model.graph.input if len(model.graph.input) == 1 else (None,)
    if graph_input is None:
        names = ", ".join(i.name for i in model.graph.input)
        raise NndslError(f"the model has several inputs ({names}); predict feeds one array")
    dims = [d.dim_value if d.HasField("dim_value") else d.dim_param
            for d in graph_input.type.tensor_type.shape.dim]
    if len(dims) != x.ndim:
        x = _fit_rank(x, dims)
    for axis, (want, got) in enumerate(zip(dims, x.shape, strict=True)):
        if isinstance(want, int) and want and want != got:
            raise NndslError(f"input '{graph_input.name}' needs size {want} on axis {axis}, "
                             f"got {got}", expected=str(dims), received=str(list(x.shape)))
    import onnx

    from nndsl.backends.onnx.runtime import ORT_ERRORS

    dtype = onnx.helper.tensor_dtype_to_np_dtype(graph_input.type.tensor_type.elem_type)
    try:
        sess = session(model)
        outputs = sess.run(None, {graph_input.name: x.astype(dtype)})
    except ORT_ERRORS as e:  # e.g. an operator onnxruntime lacks for this dtype
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        missing = isinstance(e, ORT_ERRORS[3])  # NotImplemented: no kernel for this type
        raise NndslError(f"onnxruntime cannot run this model: {first}",
                         hint="onnxruntime's CPU kernels lack some float64 operators (Conv, "
                         "AveragePool, LSTM, GRU): declare the inputs f32" if missing else None
                         ) from None
    return {o.name: v for o, v in zip(sess.get_outputs(), outputs, strict=True)}


def _fit_rank(x: np.ndarray, dims: list[Any]) -> np.ndarray:
    """CSV rows are flat: reshape [rows, features] to the model's per-example shape."""
    tail = dims[1:]
    if x.ndim == 2 and all(isinstance(d, int) and d for d in tail) and \
            int(np.prod(tail)) == x.shape[1]:
        return x.reshape((x.shape[0], *tail))
    raise NndslError("input has the wrong number of axes", expected=str(dims),
                     received=str(list(x.shape)))
