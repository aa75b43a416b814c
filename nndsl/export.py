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
