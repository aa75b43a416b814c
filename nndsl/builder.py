"""Building one model's IR node by node, without an AST: shape inference and weight declaration.

The front end (`nndsl/lower.py`, which walks the AST) and the importers (`nndsl/importer/`,
which walk an ONNX graph) both create nodes through `GraphBuilder.add`, so a node gets its type
from the op's shape rule and its weights from the op's weight rule in exactly one place, and an
imported model is checked by the same rules as a written one.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from nndsl.errors import NndslError, Span, did_you_mean
from nndsl.ir import Call, Graph, Node, TensorType, WeightDecl
from nndsl.ops.registry import OpDef
from nndsl.ops.weight_files import FILE_PARAMS
from nndsl.passes.weights import make_weights

MAX_NODES = 200_000


class Poisoned(Exception):
    """Raised when an input's definition already failed; the error was reported there."""


class GraphBuilder:
    """One model's graph under construction: inputs, typed nodes, weights, layer labels."""

    def __init__(self, name: str, span: Span | None = None) -> None:
        self.name, self.span = name, span
        self.nodes: list[Node] = []
        self.types: dict[str, TensorType | None] = {}
        self.inputs: list[tuple[str, TensorType]] = []
        self.weights: dict[str, WeightDecl] = {}
        self.labels: dict[str, tuple[str, dict[str, str]]] = {}  # label -> (op, param -> weight)
        self.defaults: dict[str, Call] = {}
        self.counters: dict[str, int] = {}
        self.reserved: set[str] = set()
        self.outer: Graph | None = None  # the model a loss graph reads (its labelled layers)

    # ------------------------------------------------------------ names
    def fresh(self, base: str, prefix: str = "") -> str:
        while True:
            self.counters[prefix + base] = self.counters.get(prefix + base, 0) + 1
            name = f"{prefix}{base}_{self.counters[prefix + base]}"
            if name not in self.types and name not in self.reserved and name not in self.labels:
                return name

    def type_of(self, value: str) -> TensorType:
        ty = self.types.get(value)
        if ty is None:
            raise Poisoned
        return ty

    # ------------------------------------------------------------ inputs and defaults
    def add_input(self, name: str, ty: TensorType, span: Span | None = None) -> str:
        """Declare a model input; a model computes in one float precision (f32 or f64)."""
        if name in self.types:
            raise NndslError(f"'{name}' is already defined", span)
        self.types[name] = None  # poisoned unless the type checks
        other = next((n for n, t in self.inputs if {t.dtype, ty.dtype} == {"f32", "f64"}), None)
        if other is not None:  # weights take one precision; NumPy would promote, ONNX refuse
            raise NndslError(f"input '{name}' is {ty.dtype} but '{other}' is "
                             f"{dict(self.inputs)[other].dtype}", span,
                             hint="a model computes in one float precision: declare every "
                             "float input f32, or every one f64")
        self.inputs.append((name, ty))
        self.types[name] = ty
        return name

    def set_default(self, key: str, value: Call) -> None:
        """A model-wide default (`init`, `bias_init`, `regularize`, `constraint`, `weights`)."""
        self.defaults[key] = value

    # ------------------------------------------------------------ nodes
    def add(self, opdef: OpDef, inputs: list[str], params: dict[str, Any],
            span: Span | None = None, *, label: str | None = None,
            options: dict[str, Any] | None = None, name: str | None = None, prefix: str = "",
            via: tuple[Span, ...] = ()) -> str:
        """Create a node: infer its type, declare or bind its weights, record it.

        `params` are the op's hyper-parameters (checked values); `options` the layer options
        (`init=`, literal weights, ...); `prefix` and `via` say which block expansion made it.
        """
        in_types = [self.type_of(v) for v in inputs]
        check_arity(opdef, len(inputs), span)
        try:
            out_type = opdef.output_type(*in_types, **params)
        except NndslError as e:
            e.span = e.span or span
            raise
        weight_map: dict[str, str] = {}
        if opdef.borrows is not None:
            weight_map = self.borrow(opdef, in_types, params, span)
        elif opdef.weights is not None or opdef.weight_params:
            label = label or self.fresh(opdef.name, prefix)
            weight_map = self.bind_weights(opdef, in_types, params, options or {}, label, span)
        free = label and label not in self.types and label not in self.reserved
        name = name or (label if free else None)
        name = name or self.fresh(opdef.name, prefix)
        if len(self.nodes) >= MAX_NODES:
            raise NndslError(f"model '{self.name}' grows past {MAX_NODES:,} nodes", span,
                             hint="check repeat counts and block recursion")
        node = Node(name, opdef.name, tuple(inputs), tuple(params.items()),
                    tuple(weight_map.items()), out_type, label, span, via)
        self.nodes.append(node)
        self.types[name] = out_type
        return name

    def bind_weights(self, opdef: OpDef, in_types: list[TensorType], params: dict[str, Any],
                     options: dict[str, Any], label: str, span: Span | None) -> dict[str, str]:
        specs = opdef.weights(*in_types, **params) if opdef.weights else {}
        if label in self.labels:
            return self.share(label, opdef, specs, span)
        tied = params.get("tied")
        precision = "f64" if any(t.dtype == "f64" for _, t in self.inputs) else "f32"
        decls, mapping = make_weights(opdef, specs, label, options, self.defaults, span,
                                      precision)
        if tied is not None:
            mapping["weight"] = self.tie(tied, specs, span)
            decls = [d for d in decls if d.name != f"{label}.weight"]
        for d in decls:
            self.weights[d.name] = resolve_file(d)
        self.labels[label] = (opdef.name, mapping)
        return mapping

    def share(self, label: str, opdef: OpDef, specs: Mapping[str, Any],
              span: Span | None) -> dict[str, str]:
        """A label used twice shares one set of weights (same op and shapes required)."""
        op_name, mapping = self.labels[label]
        same = op_name == opdef.name and all(
            self.weights[w].shape == tuple(specs[p].shape) for p, w in mapping.items()
            if w in self.weights and p in specs)
        if not same:
            raise NndslError(f"label '{label}' already names a different layer", span,
                             hint="use a new label, or the same layer with the same sizes to "
                             "share its weights")
        return dict(mapping)

    def lender(self, label: str) -> Node | None:
        """The layer labelled `label`: in this graph, else in the model a loss graph reads."""
        outer = self.outer.nodes if self.outer is not None else ()
        return next((n for n in (*reversed(self.nodes), *outer) if n.label == label), None)

    def borrow(self, opdef: OpDef, in_types: list[TensorType], params: dict[str, Any],
               span: Span | None) -> dict[str, str]:
        """The weights of the layer named by `opdef`'s Label parameter, as its own (`energy`
        reads a hopfield layer's W and b): that layer must be an op `opdef` may name, with the
        shapes `opdef`'s weight rule asks for, and any parameter both have must agree."""
        key, lenders = opdef.borrows or ("", ())
        target = params.get(key)
        node = self.lender(target) if isinstance(target, str) else None
        if node is None:
            known = [n.label for n in (*self.nodes, *(self.outer.nodes if self.outer else ()))
                     if n.label and n.op in lenders]
            raise NndslError(f"{opdef.name} {key}=: no layer is labelled '{target}'", span,
                             hint=did_you_mean(str(target), known)
                             or f"label the layer it reads, e.g. `memory: {lenders[0]}(...)`")
        if node.op not in lenders:
            raise NndslError(f"{opdef.name} reads a {' or '.join(lenders)} layer; '{target}' is "
                             f"a {node.op}", span, expected=" or ".join(lenders),
                             received=node.op)
        mapping = dict(node.weights)
        specs = opdef.weights(*in_types, **params) if opdef.weights else {}
        for name, spec in specs.items():
            have = self.weight_shape(mapping[name])
            if have != tuple(spec.shape):
                raise NndslError(f"{opdef.name} of states {list(in_types[0].shape)} needs "
                                 f"'{target}.{name}' of shape {list(spec.shape)}", span,
                                 expected=str(list(spec.shape)), received=str(list(have)))
        for p in opdef.params:
            theirs = node.param(p.name, params.get(p.name))
            if p.name in params and p.name != key and theirs != params[p.name]:
                raise NndslError(f"{opdef.name} {p.name}={params[p.name]} disagrees with "
                                 f"{node.op} '{target}' ({p.name}={theirs})", span,
                                 hint=f"give both the same {p.name}, e.g. "
                                 f"{opdef.name}(..., {p.name}={theirs})")
        return {name: mapping[name] for name in opdef.weight_params}

    def weight_shape(self, name: str) -> tuple[int, ...]:
        decl = self.weights.get(name) or next(
            (w for w in (self.outer.weights if self.outer else ()) if w.name == name), None)
        return decl.shape if decl is not None else ()

    def tie(self, target: str, specs: Mapping[str, Any], span: Span | None) -> str:
        if target not in self.labels:
            raise NndslError(f"tied=: no layer is labelled '{target}'", span,
                             hint=did_you_mean(target, self.labels)
                             or "label the layer to tie to, e.g. `enc: dense(3)`")
        wname = self.labels[target][1].get("weight")
        if wname is None or wname not in self.weights:
            raise NndslError(f"tied=: layer '{target}' has no weight to tie to", span)
        have, want = self.weights[wname].shape, tuple(specs["weight"].shape)
        if have != want:
            raise NndslError(f"tied=: '{target}.weight' has shape {list(have)}, this layer "
                             f"needs its transpose of shape {list(want)}", span,
                             expected=str(list(want)), received=str(list(have)))
        return wname

    def graph(self, outputs: list[str]) -> Graph:
        return Graph(self.name, tuple(self.inputs), tuple(self.nodes), tuple(outputs),
                     tuple(self.weights.values()), self.span)


def resolve_file(decl: WeightDecl) -> WeightDecl:
    """An initializer reading a file (`from_npz("model.npz", ...)`) names it relative to the
    spec that wrote the call, as imports are: the path is joined to that spec's folder here."""
    init, key = decl.init, FILE_PARAMS.get(decl.init.name)
    path = init.get(key) if key is not None else None
    if not isinstance(path, str) or init.span is None or os.path.isabs(path):
        return decl
    full = os.path.normpath(os.path.join(os.path.dirname(init.span.file), path))
    kwargs = tuple((k, full if k == key else v) for k, v in init.kwargs)
    return replace(decl, init=Call(init.name, kwargs, init.span))


def check_arity(opdef: OpDef, n: int, span: Span | None) -> None:
    want = len(opdef.inputs)
    if opdef.variadic and n < max(want, 1):
        raise NndslError(f"{opdef.name} needs at least {max(want, 1)} inputs, got {n}", span)
    if not opdef.variadic and n != want:
        noun = "input" if want == 1 else "inputs"
        hint = f"apply it with '->': `x -> {opdef.name}(...)`" if n < want and want == 1 else None
        raise NndslError(f"{opdef.name} takes {want} tensor {noun}, got {n}", span, hint=hint)
