"""Ops with no ONNX operator of their own, exported as model-local ONNX functions.

An NTM addressing stage, a spiking layer unrolled over time or an unrolled sparse-coding solver
decomposes into tens to thousands of primitive nodes. Exported flat, a file would show those
primitives and `nndsl import` could not tell the layer back. Each is exported instead as one
node of domain `nndsl` whose op type is the op's name, whose attributes are its parameters
(floats as float32 attributes, booleans as ints, lists as int or float lists; a parameter left
at None is absent) and whose inputs are its tensor inputs, then its weights in the op's order.
The node calls a function of the model (`ModelProto.functions`) whose body is the op's own
decomposition, run by the same ONNX primitive table as every other op, so onnxruntime computes
exactly what the flat export computed; constants of the body are `Constant` nodes inside it.

One function is written per op, settings and input types: a second layer of the same kind with
other settings calls a function named `<op>__2`, and so on (`nndsl import` reads the op from the
part before `__`).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Sequence
from typing import Any

import onnx
from nndsl.backends.onnx.emitter import (
    FUNCTION_DOMAIN,
    OnnxEmitter,
    ValueType,
    emitter_of,
    make_onnx_prims,
)
from onnx import helper

from nndsl.ops.registry import OPS, OpDef, register_natives

DOMAIN = FUNCTION_DOMAIN
FUNCTION_OPS = ("cosine_similarity", "content_address", "interpolation_gate", "circular_shift",
                "sharpen", "lif", "sparse_code")
# names onnx.reference's function runner keeps for itself: an attribute named so breaks it
RESERVED_ATTRIBUTES = frozenset({"create", "domain", "eval", "implicit_inputs", "infer_name",
                                 "input", "make_node", "need_context", "op_domain", "op_type",
                                 "output", "run", "onnx_node", "run_params", "verbose"})


def attribute_values(params: dict[str, Any]) -> dict[str, Any]:
    """The node attributes for an op's parameters (None left out, booleans as 0/1)."""
    out: dict[str, Any] = {}
    for key, value in params.items():
        if value is None:
            continue
        if isinstance(value, bool):
            value = int(value)
        elif isinstance(value, tuple):
            value = list(value)
        out[key] = value
    return out


def _body(sub: OnnxEmitter, formals: Sequence[str], out: str) -> list[onnx.NodeProto]:
    """The function body: every constant the op made as a Constant node, then its nodes."""
    used = {i for n in sub.nodes for i in n.input} | {out}
    constants = [helper.make_node("Constant", [], [name], value=tensor, name=name)
                 for name, tensor in sub.initializers.items()
                 if name in used and name not in formals]
    nodes = [*constants, *sub.nodes]
    if out in formals or not sub.nodes:  # an op that returns an input unchanged
        nodes.append(helper.make_node("Identity", [out], ["out"], name="out"))
        return nodes
    return [_rename_output(n, out, "out") for n in nodes]


def _rename_output(node: onnx.NodeProto, old: str, new: str) -> onnx.NodeProto:
    if old not in node.output and old not in node.input:
        return node
    copy = onnx.NodeProto()
    copy.CopyFrom(node)
    copy.output[:] = [new if o == old else o for o in node.output]
    copy.input[:] = [new if i == old else i for i in node.input]
    return copy


def _function(em: OnnxEmitter, opdef: OpDef, formals: list[str], types: list[ValueType],
              params: dict[str, Any]) -> tuple[str, ValueType]:
    """The name of the function computing `opdef` on values of `types` (made on first use) and
    the type of its output."""
    key = (opdef.name, tuple((t.dtype.str, t.shape) for t in types),
           tuple(sorted((k, repr(v)) for k, v in params.items())))
    known = em.function_keys.get(key)
    if known is not None:
        return known
    sub = OnnxEmitter()
    for name, vtype in zip(formals, types, strict=True):
        sub.add_input(name, vtype.dtype, vtype.shape)
    n = len(opdef.inputs)
    P = make_onnx_prims(sub)
    out = opdef.compute(P, *formals[:n], **params, **dict(zip(formals[n:], formals[n:],
                                                              strict=True)))
    taken = {f.name for f in em.functions}
    name = next(f"{opdef.name}__{i}" if i > 1 else opdef.name for i in range(1, len(taken) + 2)
                if (f"{opdef.name}__{i}" if i > 1 else opdef.name) not in taken)
    em.functions.append(helper.make_function(
        DOMAIN, name, formals, ["out"], _body(sub, formals, out),
        opset_imports=[helper.make_opsetid("", 17)], attributes=list(attribute_values(params))))
    em.function_keys[key] = (name, sub.type_of(out))
    return em.function_keys[key]


def function_form(opdef: OpDef) -> Callable[..., str]:
    """The ONNX form of `opdef`: one call of its function (same signature as the op)."""
    clash = sorted(RESERVED_ATTRIBUTES & set(opdef.hyper))
    if clash:
        raise ValueError(f"op {opdef.name!r} cannot export as an ONNX function: its parameter "
                         f"{clash[0]!r} would be an attribute ONNX's reference runtime reserves")

    def native(P: Any, *args: Any, **kwargs: Any) -> str:
        em = emitter_of(P)
        bound = inspect.signature(opdef.compute).bind(P, *args, **kwargs)
        bound.apply_defaults()
        given = dict(bound.arguments)
        tensors = [em.operand(given[name]) for name in opdef.inputs]
        weights = {k: em.operand(given[k]) for k in opdef.weight_params if given.get(k) is not None}
        params = {p.name: given[p.name] for p in opdef.params}
        formals = [*opdef.inputs, *weights]
        values = [*tensors, *weights.values()]
        name, out_type = _function(em, opdef, formals, [em.type_of(v) for v in values], params)
        return em.node(name, values, out_type, domain=DOMAIN, **attribute_values(params))

    functools.update_wrapper(native, opdef.compute)
    native.__signature__ = inspect.signature(opdef.compute)  # type: ignore[attr-defined]
    return native


register_natives("onnx", {name: function_form(OPS[name]) for name in FUNCTION_OPS if name in OPS})
