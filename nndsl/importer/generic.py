"""Weightless layers recognised by their own export: nndsl's exporter writes each op by running
its decomposition on the ONNX primitive table, so the importer can run it the same way, for an
input of the node's type, and look for that node sequence in the graph.

This covers every activation and weightless one-input layer of the catalog without a rule per
op (`step`, `sign`, `elu`, `selu`, `swish`, ... and ops added later). Float parameters are
found by probing: the op is exported with unusual values for them, the constants where those
values appear are read from the graph, and the op is exported again with what was read, which
must match node for node, constant for constant.
"""

from __future__ import annotations

import functools
import itertools
from typing import Any, Literal, get_args, get_origin

import numpy as np
import onnx
from onnx import numpy_helper

from nndsl import ops
from nndsl.importer.context import Importer
from nndsl.importer.elementwise import f32
from nndsl.ir import TensorType
from nndsl.ops.registry import OpDef

PROBE = 0.123456789  # a parameter value no exporter writes by chance
MAX_CHOICES = 16  # Literal and bool combinations tried per op


def candidates() -> list[OpDef]:
    """Ops that can be read this way: one tensor input, no weights, present at inference."""
    return [d for d in sorted(ops.OPS.values(), key=lambda d: d.name)
            if d.kind in ("activation", "layer") and len(d.inputs) == 1 and not d.variadic
            and d.weights is None and not d.weight_params and not d.training_only
            and all(not p.required for p in d.params)]


def _choices(opdef: OpDef) -> list[dict[str, Any]]:
    """Parameter settings to try: the defaults, then each Literal/bool combination with the
    float parameters probed (a float that only enters a derived constant, like rrelu's mean of
    its bounds, is found at its default only)."""
    options: list[list[tuple[str, Any]]] = []
    for p in opdef.params:
        if p.annotation is float:
            options.append([(p.name, PROBE + 0.001 * len(options))])
        elif p.annotation is bool:
            options.append([(p.name, v) for v in (p.default, not p.default)])
        elif get_origin(p.annotation) is Literal:
            options.append([(p.name, v) for v in get_args(p.annotation)])
        else:
            options.append([(p.name, p.default)])
    probed = [dict(c) for c in itertools.islice(itertools.product(*options), MAX_CHOICES)]
    return [{p.name: p.default for p in opdef.params}, *probed]


def _emit(opdef: OpDef, ty: TensorType, params: dict[str, Any]) -> Any:
    """The op exported alone for input `x` of type `ty`: (nodes, constants, output)."""
    return _emitted(opdef.name, ty, tuple(params.items()))


@functools.lru_cache(maxsize=4096)
def _emitted(name: str, ty: TensorType, items: tuple[tuple[str, Any], ...]) -> Any:
    """`_emit`, once per op, input type and settings (every node of a graph tries them)."""
    from nndsl.backends.onnx.emitter import OnnxEmitter, make_onnx_prims

    opdef, params = ops.get(name), dict(items)
    em = OnnxEmitter()
    x = em.add_input("x", ty.dtype, ty.shape)
    try:
        opdef.output_type(ty, **params)
        out = opdef.function_for(make_onnx_prims(em))(make_onnx_prims(em), x, **params)
    except Exception:  # the op refuses this input or these settings: not a candidate here
        return None
    consts = {n: numpy_helper.to_array(t) for n, t in em.initializers.items()}
    return (em.nodes, consts, out) if em.nodes and isinstance(out, str) else None


def _attrs(node: onnx.NodeProto) -> list[tuple[str, bytes]]:
    return sorted((a.name, a.SerializeToString()) for a in node.attribute)


class Alignment:
    """Emitted nodes matched one by one to graph nodes reading the same values."""

    def __init__(self, imp: Importer, x: str, probes: dict[float, str]) -> None:
        self.imp, self.probes = imp, probes
        self.values = {"x": x}  # emitted value -> graph value
        self.nodes: list[onnx.NodeProto] = []
        self.read: dict[str, float] = {}  # probed parameter -> the value found

    def input_fits(self, emitted: str, actual: str, consts: dict[str, np.ndarray]) -> bool:
        if emitted in self.values or not emitted:
            return self.values.get(emitted, "") == actual
        want, have = consts.get(emitted), self.imp.view.const(actual)
        if want is None or not isinstance(have, np.ndarray) or have.dtype == object:
            return False
        probe = self.probe(float(want.ravel()[0])) if want.size == 1 else None
        if probe is not None and have.size == 1:
            name, value = probe, float(have.ravel()[0])
            value = f32(value) if have.dtype == np.float32 else value  # as it was written
            self.read.setdefault(name, value)
            return self.read[name] == value
        return want.dtype == have.dtype and np.array_equal(want, have)

    def probe(self, value: float) -> str | None:
        """The parameter whose probe value this constant holds (in float32 or float64)."""
        return next((name for probe, name in self.probes.items()
                     if abs(value - probe) <= 1e-6 * probe), None)

    def node(self, emitted: onnx.NodeProto, consts: dict[str, np.ndarray]) -> bool:
        sources = [self.values[i] for i in emitted.input if i in self.values]
        if not sources:
            return False
        taken = {id(n) for n in self.nodes}
        for actual in self.imp.view.users(sources[0]):
            if id(actual) in taken or actual.op_type != emitted.op_type or \
                    len(actual.input) != len(emitted.input) or _attrs(actual) != _attrs(emitted):
                continue
            saved = dict(self.read)
            if all(self.input_fits(e, a, consts) for e, a in zip(emitted.input, actual.input,
                                                                   strict=True)):
                self.nodes.append(actual)
                self.values.update(zip(emitted.output, actual.output, strict=True))
                return True
            self.read = saved
        return False


def _align(imp: Importer, x: str, found: Any, probes: dict[float, str]) -> Alignment | None:
    nodes, consts, out = found
    align = Alignment(imp, x, probes)
    if not all(align.node(n, consts) for n in nodes):
        return None
    inside = {id(n) for n in align.nodes}
    result = align.values[out]
    for n in align.nodes:  # nothing outside may read a value inside the pattern
        for o in n.output:
            if o != result and (o in imp.view.outputs or
                                any(id(u) not in inside for u in imp.view.users(o))):
                return None
    return align


def match(imp: Importer, node: onnx.NodeProto, min_nodes: int = 1) -> bool:
    """Import `node` (and the nodes around it) as the weightless catalog op whose export covers
    the most nodes, if one covers at least `min_nodes`."""
    best: tuple[int, Any] | None = None
    for x in (v for v in node.input if v in imp.values):
        ty = imp.builder.types.get(imp.values[x])
        for opdef in candidates() if ty is not None else ():
            found = _fit(imp, node, x, ty, opdef)
            if found is not None and (best is None or len(found[1].nodes) > best[0]):
                best = (len(found[1].nodes), (x, opdef, *found))
    if best is None or best[0] < min_nodes:
        return False
    x, opdef, params, final, out = best[1]
    imp.take(*final.nodes)
    imp.emit(node, opdef.name, [imp.values[x]], params, final.values[out])
    return True


def _fit(imp: Importer, node: onnx.NodeProto, x: str, ty: TensorType,
         opdef: OpDef) -> tuple[dict[str, Any], Alignment, str] | None:
    """(settings, alignment, output) of `opdef` on `x` when its export is found at `node`."""
    for params in _choices(opdef):
        found = _emit(opdef, ty, params)
        probes = {v: k for k, v in params.items() if opdef.hyper[k].annotation is float}
        align = _align(imp, x, found, probes) if found is not None else None
        if align is None or not any(n is node for n in align.nodes):
            continue
        params = {**params, **align.read}
        check = _emit(opdef, ty, params)  # the settings read back must give the same nodes
        final = _align(imp, x, check, {}) if check is not None else None
        if final is not None and [id(n) for n in final.nodes] == [id(n) for n in align.nodes]:
            return params, final, check[2]
    return None

