"""Nodes of domain `nndsl`: the ops nndsl exports as model-local functions (an NTM addressing
stage, a spiking or sparse-coding layer; backends/onnx/functions.py). The op type names the op
(`lif`, or `lif__2` for a second function of it), the attributes hold its parameters and the
inputs are its tensor inputs, then its weights in the op's order. The function body is not
read: it is what nndsl writes for the op, and the import's own export writes it again (the
round-trip tests compare the two)."""

from __future__ import annotations

from typing import Any, get_args, get_origin

import onnx

from nndsl import ops
from nndsl.importer.context import Importer
from nndsl.importer.elementwise import f32
from nndsl.importer.graph import attrs, node_error
from nndsl.importer.rules import source_name
from nndsl.ops.registry import OpDef, Param

DOMAIN = "nndsl"


def _value(param: Param, raw: Any) -> Any:
    """An attribute back as the parameter's Python value (float32 attributes as written)."""
    kinds = [param.annotation, *get_args(param.annotation)]
    if isinstance(raw, list):
        return tuple(f32(v) if isinstance(v, float) else v for v in raw)
    if bool in kinds and isinstance(raw, int) and int not in kinds:
        return bool(raw)
    if isinstance(raw, float):
        return f32(raw)
    if float in kinds and isinstance(raw, int) and get_origin(param.annotation) is None:
        return float(raw)
    return raw


def _op(node: onnx.NodeProto) -> OpDef:
    name = node.op_type.split("__")[0]
    opdef = ops.OPS.get(name)
    if opdef is None or opdef.kind not in ("layer", "activation"):
        raise node_error(node, f"'{node.op_type}' of domain {DOMAIN} names no nndsl layer",
                         hint="this importer knows the nndsl ops of its own version")
    return opdef


def import_function_node(imp: Importer, node: onnx.NodeProto) -> None:
    """One nndsl op from its function-call node: inputs, then weights, then parameters."""
    opdef = _op(node)
    given = attrs(node)
    unknown = sorted(set(given) - set(opdef.hyper))
    if unknown:
        raise node_error(node, f"{opdef.name} has no parameter {', '.join(unknown)}")
    params = {k: _value(opdef.hyper[k], v) for k, v in given.items()}
    n = len(opdef.inputs)
    tensors = [imp.tensor(v, node) for v in node.input[:n]]
    weight_values = list(node.input[n:])
    if len(weight_values) > len(opdef.weight_params):
        raise node_error(node, f"{opdef.name} takes {len(opdef.weight_params)} weights, the "
                         f"node passes {len(weight_values)}")
    named = dict(zip(opdef.weight_params, weight_values, strict=False))
    weights = {k: imp.array(v, node, k) for k, v in named.items()}
    sources = {k: source_name(imp, v) for k, v in named.items()}
    first = next(iter(sources.values()), None)
    label = imp.label_for(first, opdef.name) if first is not None else None
    imp.emit(node, opdef.name, tensors, params, node.output[0], weights=weights, label=label,
             sources=sources)
