"""ONNX -> nndsl: a readable spec and the trained weights (`nndsl import MODEL.onnx`).

The graph is walked in order; every node that does not compute a constant is handed to the rule
registered for its op type (`RULES`, filled by the modules below), which creates nndsl layers
through the same `GraphBuilder` as the front end. Constants (initializers, `Constant` nodes,
shape arithmetic) are folded on demand. The result is an IR graph, written out as spec text
whose weights come from an .npz (`defaults { weights = from_npz("model.npz") }`), and that .npz.

Supported: the ops nndsl exports and the patterns torch.onnx.export (opset 17) writes for
Linear, Conv1d/2d, pools, BatchNorm, the activations, LSTM/GRU/RNN, Flatten/view, Dropout, and
the nodes of domain `nndsl` (ops nndsl exports as model-local functions).
Anything else is an error naming the node and what is supported.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from nndsl import ops
from nndsl.builder import GraphBuilder
from nndsl.errors import NndslError
from nndsl.importer import (  # noqa: F401  (the rule modules register themselves)
    decoder,
    elementwise,
    generic,
    patterns,
    recurrent,
    rules,
)
from nndsl.importer.context import RULES, Importer, identifier
from nndsl.importer.functions import DOMAIN, import_function_node
from nndsl.importer.graph import FLOAT_DTYPES, describe, node_error
from nndsl.importer.spec_text import spec_text
from nndsl.ir import Graph, TensorType

OPSETS = range(13, 22)  # Softmax's axis semantics and Unsqueeze/Squeeze axes inputs from 13


@dataclass
class Imported:
    """An imported model: its IR graph, the spec text and the weights by nndsl name."""

    graph: Graph
    spec: str
    weights: dict[str, np.ndarray]


def supported_ops() -> list[str]:
    """The ONNX op types the importer reads (besides constant-computing nodes, folded)."""
    return sorted(RULES)


def import_model(model: onnx.ModelProto, name: str, weights_file: str | None = None,
                 source: str = "an ONNX model") -> Imported:
    """Import `model` as nndsl model `name`; the spec reads its weights from `weights_file`."""
    _check_opset(model)
    builder = GraphBuilder(identifier(name, "model"))
    imp = Importer(model, builder)
    for vi in model.graph.input:
        if vi.name not in imp.view.initializers:
            _declare(imp, vi)
    for node in model.graph.node:
        if id(node) in imp.consumed or all(imp.view.is_const(o) for o in node.output if o):
            continue
        _import_node(imp, node)
        imp.take(node)
    outputs = _outputs(imp, model)
    graph = builder.graph(outputs)
    hints = {v: identifier(o.name, "y") for v, o in zip(outputs, model.graph.output, strict=True)}
    producer = f"{model.producer_name} {model.producer_version}".strip() or "unknown producer"
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    header = [f"Imported from {source} by `nndsl import` ({producer}, opset {opset})."]
    if weights_file is not None and graph.weights:
        header.append(f"Weights: {weights_file} ({len(imp.arrays)} arrays named "
                      "<label>.<param>, as `nndsl train` writes weights.npz).")
    return Imported(graph, spec_text(graph, hints, header, weights_file), dict(imp.arrays))


def _import_node(imp: Importer, node: onnx.NodeProto) -> None:
    """A weightless catalog op whose own export is the several nodes found here (silu, selu,
    step, ...; nndsl/importer/generic.py), else the rule for the node's op type, else (when there
    is none or it refuses the node) such an op of one node. A node of domain `nndsl` is an op
    nndsl exported as a function (nndsl/importer/functions.py)."""
    if node.domain == DOMAIN:
        import_function_node(imp, node)
        return
    if generic.match(imp, node, min_nodes=2):
        return
    fn = RULES.get(node.op_type) if node.domain in ("", "ai.onnx") else None
    if fn is None:
        if not generic.match(imp, node):
            raise node_error(node, "is not an op nndsl imports",
                             hint="supported: " + ", ".join(supported_ops()) + ", and the "
                             "node sequences nndsl exports for its weightless layers")
        return
    try:
        fn(imp, node)
    except NndslError:
        if not generic.match(imp, node):
            raise


def _check_opset(model: onnx.ModelProto) -> None:
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if opset not in OPSETS:
        raise NndslError(f"the model uses ONNX opset {opset}; nndsl imports opsets "
                         f"{OPSETS.start} to {OPSETS.stop - 1}",
                         hint="re-export it, e.g. torch.onnx.export(..., opset_version=17)")


def _declare(imp: Importer, vi: onnx.ValueInfoProto) -> None:
    """A graph input: its dtype, and its shape with axis 0 read as the batch."""
    tensor = vi.type.tensor_type
    dtype = FLOAT_DTYPES.get(tensor.elem_type)
    if dtype is None or not tensor.HasField("shape"):
        raise NndslError(f"input '{vi.name}' is not a float32, float64 or int64 tensor of "
                         "known rank", hint="nndsl inputs are f32, f64 or i64 tensors")
    dims: list[int | str] = []
    for i, d in enumerate(tensor.shape.dim):
        if i == 0:
            dims.append("batch")  # a model runs on any batch size
        elif d.HasField("dim_value"):
            dims.append(d.dim_value)
        else:
            dims.append(identifier(d.dim_param, f"d{i}") if d.dim_param else f"d{i}")
    taken = set(imp.builder.types) | {"batch"}
    name, base, n = identifier(vi.name, "x"), identifier(vi.name, "x"), 1
    while name in taken:
        n += 1
        name = f"{base}_{n}"
    imp.builder.add_input(name, TensorType(tuple(dims), dtype))
    imp.values[vi.name] = name


def _outputs(imp: Importer, model: onnx.ModelProto) -> list[str]:
    """The nndsl value of every graph output; an input or a value returned twice gets its own
    identity node, since each output of a spec is one named value."""
    outputs: list[str] = []
    for out in model.graph.output:
        value = imp.values.get(out.name)
        if value is None:
            producer = imp.view.producer.get(out.name)
            where = describe(producer) if producer is not None else "a constant"
            raise NndslError(f"output '{out.name}' comes from {where}, which nndsl does not "
                             "compute", hint="an output must depend on the model's inputs")
        if value in outputs or value in dict(imp.builder.inputs):
            value = imp.builder.add(ops.get("identity"), [value], {})
        outputs.append(value)
    return outputs


def import_file(path: Path, weights_file: str | None = None) -> Imported:
    """Load and check an ONNX file, then import it (the model is named after the file)."""
    from nndsl.export import load_onnx

    model = load_onnx(path)
    name = model.graph.name if model.producer_name == "nndsl" else path.stem
    return import_model(model, name, weights_file, source=path.name)
