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
    """Run a loaded model's single input on `x` with onnxruntime; outputs by name."""
    from nndsl.inference import fit, model_of, run_model

    loaded = model_of(model, Path("model.onnx"))
    if len(loaded.inputs) != 1:
        names = ", ".join(p.name for p in loaded.inputs)
        raise NndslError(f"the model has several inputs ({names}); predict feeds one array")
    port = loaded.inputs[0]
    return run_model(loaded, {port.name: fit(port, np.asarray(x))})


# ---- what the data binding adds to an exported model ---------------------------------------

def label_names(ids: list[str] | None, vocabulary: list[str] | None) -> list[str] | None:
    """Class names by class id: a text target's labels, the id itself past them (a model
    sized for more classes than the data has)."""
    if ids is None or not vocabulary:
        return ids
    return [vocabulary[k] if k < len(vocabulary) else str(k) for k in range(len(ids))]


def _set_meta(model: Any, key: str, value: str) -> None:
    for entry in model.metadata_props:
        if entry.key == key:
            entry.value = value
            return
    entry = model.metadata_props.add()
    entry.key, entry.value = key, value


def describe_data(model: Any, binding: Any, labels: list[str] | None,
                  target: str | None = None) -> Any:
    """The exported model made to read the data file's own values: class labels (`target`'s
    text labels by class id, else `labels`) as `class_labels`, the whole binding as
    `nndsl_data` (columns per input, labels, statistics) and each standardised input's
    (x - mean) / std folded in at the input, so deployment feeds raw features."""
    import json

    vocabulary = binding.labels.get(target) if target else None
    names = label_names(labels, vocabulary)
    if names is None and vocabulary is not None and len(vocabulary) == 2:
        names = vocabulary  # a binary output's 0 and 1
    if names is not None:
        text = ",".join(names) if not any("," in n for n in names) else json.dumps(names)
        _set_meta(model, "class_labels", text)
    if not binding.empty():
        _set_meta(model, "nndsl_data", json.dumps(binding.as_json()))
    for name, (mean, std) in binding.scale.items():
        if any(i.name == name for i in model.graph.input):
            fold_standardize(model, name, mean, std)
    return model


def _rename_uses(graph: Any, old: str, new: str) -> None:
    """Every node input `old` (also inside subgraphs, which may read outer values) -> `new`."""
    import onnx

    for node in graph.node:
        for k, name in enumerate(node.input):
            if name == old:
                node.input[k] = new
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                _rename_uses(attr.g, old, new)
            for sub in attr.graphs:
                _rename_uses(sub, old, new)


def fold_standardize(model: Any, name: str, mean: list[float], std: list[float]) -> None:
    """Input `name` is standardised inside the graph: Sub(mean) then Div(std), constants of
    the input's dtype shaped like one row, so the model takes the file's raw values."""
    import onnx
    from onnx import helper, numpy_helper

    graph = model.graph
    value = next(i for i in graph.input if i.name == name)
    dtype = onnx.helper.tensor_dtype_to_np_dtype(value.type.tensor_type.elem_type)
    dims = [d.dim_value for d in value.type.tensor_type.shape.dim][1:]
    row = tuple(dims) if dims and all(dims) and int(np.prod(dims)) == len(mean) else (len(mean),)
    inner = f"{name}_standardized"
    taken = {n for node in graph.node for n in (*node.input, *node.output)}
    while inner in taken:
        inner += "_"
    _rename_uses(graph, name, inner)
    graph.initializer.extend([
        numpy_helper.from_array(np.asarray(mean, dtype).reshape(row), f"{inner}_mean"),
        numpy_helper.from_array(np.asarray(std, dtype).reshape(row), f"{inner}_std")])
    nodes = [helper.make_node("Sub", [name, f"{inner}_mean"], [f"{inner}_centered"],
                              name=f"{inner}_sub"),
             helper.make_node("Div", [f"{inner}_centered", f"{inner}_std"], [inner],
                              name=f"{inner}_div"), *graph.node]
    del graph.node[:]
    graph.node.extend(nodes)
    onnx.checker.check_model(model)


def stored_binding(model: Any) -> Any:
    """The data binding an exported model carries (`nndsl_data`), when it standardises an
    input: `nndsl verify` feeds such a model x * std + mean, the raw values it expects."""
    from nndsl.data.binding import from_metadata

    try:
        binding = from_metadata(model, "the model")
    except NndslError:
        return None
    return binding if binding is not None and binding.scale else None
