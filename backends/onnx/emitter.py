"""The ONNX table for the primitive namespace: the same op functions, run on value *names*.

Each primitive appends ONNX nodes to an `OnnxEmitter` and returns the name of the value it
defines, so an op written once against `P` exports with no ONNX-specific code. The emitter
tracks every value's dtype and (partly symbolic) shape: dtypes to give Python numbers the type
NumPy would (a weak scalar takes the other operand's dtype), ranks to normalise axes, static
sizes to answer `shape()`. Promotion follows `np.result_type`, as in the NumPy reference.

`export_graph` runs the shared interpreter with this table; the result is pinned to opset 17 and
IR version 8 (onnxruntime 1.31 rejects onnx's newer default IR version). Reductions follow opset
17: ReduceSum takes `axes` as an input, ReduceMean/ReduceMax as an attribute.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from types import SimpleNamespace
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from nndsl import __version__
from nndsl.ir import NUMPY_DTYPE, Graph, TensorType

OPSET = 17
IR_VERSION = 8
FUNCTION_DOMAIN = "nndsl"  # the domain of the ops exported as model-local functions
INT64_MAX = 2**63 - 1
INT64_MIN = -(2**63)
BOOL = np.dtype("bool")
INT64 = np.dtype("int64")
FLOAT64 = np.dtype("float64")

Dim = int | str | None  # a static size, a named symbol ("batch"), or unknown
Pads = Sequence[Sequence[int]]


@dataclass(frozen=True, slots=True)
class ValueType:
    """What the emitter knows about a value: its dtype and its (partly symbolic) shape."""

    dtype: np.dtype
    shape: tuple[Dim, ...]

    @property
    def rank(self) -> int:
        return len(self.shape)


class SymbolicDim:
    """An entry of `shape(x)` that is only known when the model runs (e.g. the batch size).

    `reshape` accepts it (the size is read from the running tensor); using it in Python
    arithmetic or comparisons would bake in a value the exported model does not have, so
    that raises and says so.
    """

    __slots__ = ("value", "axis", "symbol")

    def __init__(self, value: str, axis: int, symbol: Dim) -> None:
        self.value, self.axis, self.symbol = value, axis, symbol

    def _refuse(self, *_: Any) -> Any:
        raise NotImplementedError(
            f"dimension {self.axis} ({self.symbol or 'unknown'}) of '{self.value}' is only known "
            "when the exported model runs; keep it with None in reshape instead of computing "
            "with it"
        )

    def __repr__(self) -> str:
        return f"SymbolicDim({self.value!r}, {self.axis}, {self.symbol!r})"

    __hash__ = object.__hash__


for _name in ("index", "int", "float", "bool", "eq", "ne", "lt", "le", "gt", "ge", "neg", "add",
              "radd", "sub", "rsub", "mul", "rmul", "truediv", "rtruediv", "floordiv",
              "rfloordiv", "mod", "rmod", "pow", "rpow"):
    setattr(SymbolicDim, f"__{_name}__", SymbolicDim._refuse)


def _is_number(a: Any) -> bool:
    return isinstance(a, bool | int | float) and not isinstance(a, SymbolicDim)


def _prod(dims: Sequence[int]) -> int:
    return math.prod(dims) if dims else 1


def _normalise_axes(rank: int, axis: int | Sequence[int] | None) -> tuple[int, ...]:
    if axis is None:
        return tuple(range(rank))
    if isinstance(axis, int):
        return (axis % rank,) if rank else ()
    return tuple(sorted(a % rank for a in axis))


def broadcast_shapes(*shapes: tuple[Dim, ...]) -> tuple[Dim, ...]:
    """NumPy broadcasting over static sizes and symbols (a symbol meets a size: the size)."""
    rank = max((len(s) for s in shapes), default=0)
    out: list[Dim] = []
    for i in range(rank):
        dims = {s[len(s) - rank + i] for s in shapes if len(s) - rank + i >= 0} - {1}
        ints = [d for d in dims if isinstance(d, int)]
        if not dims:
            out.append(1)
        elif len(dims) == 1:
            out.append(next(iter(dims)))
        else:
            out.append(ints[0] if ints else None)
    return tuple(out)


def _reshape_shape(shape: tuple[Dim, ...], entries: Sequence[Any]) -> tuple[Dim, ...]:
    """The output shape of reshape, inferring -1 when the sizes (and symbols) allow it."""
    resolved: list[Dim] = []
    for i, d in enumerate(entries):
        if d is None:
            resolved.append(shape[i])
        elif isinstance(d, SymbolicDim):
            resolved.append(d.symbol if isinstance(d.symbol, str) else None)
        else:
            resolved.append(int(d))
    if -1 not in resolved:
        return tuple(resolved)
    others = [d for d in resolved if d != -1]
    sym_in = sorted(d for d in shape if isinstance(d, str))
    sym_out = sorted(d for d in others if isinstance(d, str))
    inferred: Dim = None
    if None not in shape and None not in others and sym_in == sym_out:
        inferred = _prod([d for d in shape if isinstance(d, int)]) // max(
            1, _prod([d for d in others if isinstance(d, int)]))
    return tuple(inferred if d == -1 else d for d in resolved)


def _window_out(size: Dim, lo: int, hi: int, kernel: Dim, stride: int, dilation: int) -> Dim:
    if not isinstance(size, int) or not isinstance(kernel, int):
        return None
    return (size + lo + hi - dilation * (kernel - 1) - 1) // stride + 1


class OnnxEmitter:
    """Graph-building state shared by the primitives: nodes, initializers, value types."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: dict[str, onnx.TensorProto] = {}
        self.inputs: list[onnx.ValueInfoProto] = []
        self.types: dict[str, ValueType] = {}
        self._count = 0
        self._constants: dict[tuple[str, tuple[int, ...], bytes], str] = {}
        self._casts: dict[tuple[str, str], str] = {}  # one Cast per (value, dtype)
        # model-local functions (backends/onnx/functions.py) and what each was made for
        self.functions: list[onnx.FunctionProto] = []
        self.function_keys: dict[Any, tuple[str, ValueType]] = {}

    # --- values -----------------------------------------------------------------------------
    def fresh(self, hint: str) -> str:
        """A new value name; ':' keeps it apart from nndsl identifiers (inputs, layers)."""
        while True:
            self._count += 1
            name = f"{hint}:{self._count}"
            if name not in self.types:
                return name

    def add_input(self, name: str, dtype: str | np.dtype, shape: Sequence[Dim]) -> str:
        """Declare a graph input; `dtype` is an nndsl dtype ('f32') or a NumPy dtype."""
        npd = np.dtype(NUMPY_DTYPE.get(dtype, dtype) if isinstance(dtype, str) else dtype)
        self._define(name, ValueType(npd, tuple(shape)))
        self.inputs.append(helper.make_tensor_value_info(
            name, helper.np_dtype_to_tensor_dtype(npd), list(shape)))
        return name

    def add_initializer(self, name: str, array: np.ndarray) -> str:
        """A named constant tensor (trained weights keep their IR names)."""
        array = np.asarray(array)
        self._define(name, ValueType(array.dtype, tuple(array.shape)))
        self.initializers[name] = numpy_helper.from_array(array, name)
        return name

    def initializer_value(self, name: str) -> np.ndarray | None:
        """The array behind `name` when it is an initializer (a weight or a constant), else None.

        Natives that only re-lay weights out for an ONNX op (gate order, stacking directions)
        fold that into new initializers at export time instead of emitting Gather/Concat nodes.
        """
        tensor = self.initializers.get(name)
        return None if tensor is None else numpy_helper.to_array(tensor)

    def const(self, value: Any, dtype: np.dtype | str | None = None) -> str:
        """A constant initializer (deduplicated); `dtype=None` reads `value` as NumPy does."""
        array = np.asarray(value, dtype=dtype)
        key = (array.dtype.str, array.shape, array.tobytes())
        if key not in self._constants:
            self._constants[key] = self.add_initializer(self.fresh("const"), array)
        return self._constants[key]

    def _define(self, name: str, vtype: ValueType) -> None:
        if name in self.types:
            raise ValueError(f"ONNX value '{name}' is defined twice")
        self.types[name] = vtype

    def type_of(self, name: str) -> ValueType:
        try:
            return self.types[name]
        except KeyError:
            raise KeyError(f"'{name}' is not a value of this ONNX graph") from None

    def node(self, op_type: str, inputs: Sequence[str], out: ValueType | Sequence[ValueType],
             **attrs: Any) -> Any:
        """Append one node; returns its output name (a list of names for several outputs)."""
        outs = [out] if isinstance(out, ValueType) else list(out)
        names = [self.fresh(op_type) for _ in outs]
        for name, vtype in zip(names, outs, strict=True):
            self._define(name, vtype)
        self.nodes.append(helper.make_node(op_type, list(inputs), names, name=names[0], **attrs))
        return names[0] if isinstance(out, ValueType) else names

    # --- operands and promotion -------------------------------------------------------------
    def operand(self, a: Any, dtype: np.dtype | None = None) -> str:
        """The value name for `a` (a name, a Python number or an array), cast to `dtype`."""
        if isinstance(a, SymbolicDim):
            a._refuse()
        if isinstance(a, str):
            self.type_of(a)
            return self.cast(a, dtype) if dtype is not None else a
        if dtype is None:
            return self.const(a)
        return self.const(np.asarray(a).astype(dtype))

    def _np_type(self, a: Any) -> Any:
        if isinstance(a, str):
            return self.type_of(a).dtype
        if _is_number(a):
            return a  # weak, as in NumPy 2: takes the other operand's dtype
        return np.asarray(a).dtype

    def promote(self, *args: Any, true_div: bool = False) -> tuple[np.dtype, list[str]]:
        """NumPy's result dtype of `args`, and every argument as a value of that dtype."""
        target = np.result_type(*[self._np_type(a) for a in args])
        if true_div and target.kind in "biu":
            target = FLOAT64
        return target, [self.operand(a, target) for a in args]

    def cast(self, name: str, dtype: np.dtype | str) -> str:
        dtype = np.dtype(dtype)
        vtype = self.type_of(name)
        if vtype.dtype == dtype:
            return name
        key = (name, dtype.str)
        if key not in self._casts:
            self._casts[key] = self.node("Cast", [name], ValueType(dtype, vtype.shape),
                                         to=helper.np_dtype_to_tensor_dtype(dtype))
        return self._casts[key]

    def int64s(self, values: Sequence[int]) -> str:
        return self.const(np.asarray(list(values), dtype=INT64).reshape(-1))

    # --- the model ----------------------------------------------------------------------------
    def build_model(self, outputs: Sequence[tuple[str, str]], *, name: str = "nndsl",
                    output_types: Mapping[str, TensorType | None] | None = None,
                    check: bool = True) -> onnx.ModelProto:
        """A checked opset-17 model whose outputs are the values `(value, output_name)`."""
        output_types = output_types or {}
        nodes = list(self.nodes)
        produced = {out for n in nodes for out in n.output}
        graph_inputs = {vi.name for vi in self.inputs}
        rename: dict[str, str] = {}
        for value, out_name in outputs:
            if value == out_name:
                continue
            if value in produced and value not in rename and out_name not in self.types:
                rename[value] = out_name  # the producing node writes the output directly
            else:
                nodes.append(helper.make_node("Identity", [rename.get(value, value)], [out_name],
                                              name=out_name))
        nodes = [_renamed(n, rename) for n in nodes]
        out_infos = []
        for value, out_name in outputs:
            vtype = self.type_of(value)
            shape = _merge_shape(vtype.shape, output_types.get(out_name))
            out_infos.append(helper.make_tensor_value_info(
                out_name, helper.np_dtype_to_tensor_dtype(vtype.dtype), list(shape)))
        used = {i for n in nodes for i in n.input}
        inits = [t for n, t in self.initializers.items() if n in used and n not in graph_inputs]
        graph = helper.make_graph(nodes, name, self.inputs, out_infos, initializer=inits)
        opsets = [helper.make_opsetid("", OPSET)]
        if self.functions:
            opsets.append(helper.make_opsetid(FUNCTION_DOMAIN, 1))
        model = helper.make_model(graph, opset_imports=opsets, ir_version=IR_VERSION,
                                  producer_name="nndsl", producer_version=__version__,
                                  functions=self.functions)
        if check:
            onnx.checker.check_model(model, full_check=True)
        return model


def _renamed(node: onnx.NodeProto, rename: Mapping[str, str]) -> onnx.NodeProto:
    if not rename or not any(n in rename for n in (*node.input, *node.output)):
        return node
    new = onnx.NodeProto()
    new.CopyFrom(node)
    new.input[:] = [rename.get(n, n) for n in node.input]
    new.output[:] = [rename.get(n, n) for n in node.output]
    new.name = rename.get(node.name, node.name)
    return new


def _merge_shape(tracked: tuple[Dim, ...], declared: TensorType | None) -> tuple[Dim, ...]:
    """Output dims: static sizes from either source, else the IR's symbol (e.g. 'batch')."""
    if declared is None or declared.rank != len(tracked):
        return tracked
    return tuple(t if isinstance(t, int) else (d if d is not None else t)
                 for t, d in zip(tracked, declared.shape, strict=True))


# --- the primitive table: primitive name -> fn(emitter, *args) -> value name ---------------------
Emit = Callable[..., Any]


def _binary(op_type: str, *, compare: bool = False, true_div: bool = False) -> Emit:
    def emit(em: OnnxEmitter, x: Any, y: Any) -> str:
        dtype, (a, b) = em.promote(x, y, true_div=true_div)
        shape = broadcast_shapes(em.type_of(a).shape, em.type_of(b).shape)
        return em.node(op_type, [a, b], ValueType(BOOL if compare else dtype, shape))

    return emit


def _unary(op_type: str, *, floating: bool = False) -> Emit:
    """`floating`: integer and bool inputs become float64 first, as NumPy's ufuncs do."""

    def emit(em: OnnxEmitter, x: Any) -> str:
        x = em.operand(x)
        if floating and em.type_of(x).dtype.kind in "biu":
            x = em.cast(x, FLOAT64)
        return em.node(op_type, [x], em.type_of(x))

    return emit


def _where(em: OnnxEmitter, cond: Any, x: Any, y: Any) -> str:
    c = em.operand(cond)
    c = em.cast(c, BOOL)  # NumPy: any non-zero value selects x
    dtype, (a, b) = em.promote(x, y)
    shape = broadcast_shapes(*(em.type_of(v).shape for v in (c, a, b)))
    return em.node("Where", [c, a, b], ValueType(dtype, shape))


def _cast(em: OnnxEmitter, x: Any, dtype: str) -> str:
    return em.cast(em.operand(x), NUMPY_DTYPE[dtype])


def _reduce(op_type: str, *, axes_input: bool, dtype_rule: Callable[[np.dtype], np.dtype]) -> Emit:
    """`axes_input`: opset 17 takes ReduceSum's axes as an input, the others' as an attribute."""

    def emit(em: OnnxEmitter, x: Any, axis: Any = None, keepdims: bool = False) -> str:
        x = em.operand(x)
        x = em.cast(x, dtype_rule(em.type_of(x).dtype))
        vtype = em.type_of(x)
        axes = _normalise_axes(vtype.rank, axis)
        if not axes:  # NumPy: reducing over no axes (or a 0-d array) is the identity
            return x
        shape = tuple((1 if i in axes else d) for i, d in enumerate(vtype.shape)
                      if keepdims or i not in axes)
        out = ValueType(vtype.dtype, shape)
        if axes_input:
            return em.node(op_type, [x, em.int64s(axes)], out, keepdims=int(keepdims))
        return em.node(op_type, [x], out, axes=list(axes), keepdims=int(keepdims))

    return emit


def _argmax(em: OnnxEmitter, x: Any, axis: int | None, keepdims: bool = False) -> str:
    x = em.operand(x)
    vtype = em.type_of(x)
    if axis is None:  # NumPy: the index into the flattened array
        flat = _reshape(em, x, (-1,))
        out = em.node("ArgMax", [flat], ValueType(INT64, ()), axis=0, keepdims=0)
        return _reshape(em, out, (1,) * vtype.rank) if keepdims else out
    axis %= vtype.rank
    shape = tuple(1 if i == axis else d for i, d in enumerate(vtype.shape)
                  if keepdims or i != axis)
    return em.node("ArgMax", [x], ValueType(INT64, shape), axis=axis, keepdims=int(keepdims),
                   select_last_index=0)


def _shape(em: OnnxEmitter, x: Any) -> tuple[Any, ...]:
    """Static sizes as ints; symbolic ones as `SymbolicDim` (usable in reshape only)."""
    x = em.operand(x)
    return tuple(d if isinstance(d, int) else SymbolicDim(x, i, d)
                 for i, d in enumerate(em.type_of(x).shape))


def _reshape(em: OnnxEmitter, x: Any, shape: Sequence[Any]) -> str:
    x = em.operand(x)
    entries = list(shape)
    pieces: list[str] = []
    spec: list[int] = []
    for d in entries:
        if isinstance(d, SymbolicDim):  # read the size from the running tensor
            if spec:
                pieces.append(em.int64s(spec))
                spec = []
            full = em.node("Shape", [d.value], ValueType(INT64, (em.type_of(d.value).rank,)))
            pieces.append(em.node("Gather", [full, em.int64s([d.axis])], ValueType(INT64, (1,)),
                                  axis=0))
        elif d is None:
            spec.append(0)  # Reshape with allowzero=0: 0 copies the input's size at this index
        elif int(d) == 0:
            raise NotImplementedError("reshape to a zero-size dimension cannot be exported "
                                      "(ONNX reads 0 as 'keep this dimension')")
        else:
            spec.append(int(d))
    if pieces:
        if spec:
            pieces.append(em.int64s(spec))
        target = em.node("Concat", pieces, ValueType(INT64, (len(entries),)), axis=0)
    else:
        target = em.int64s(spec)
    vtype = em.type_of(x)
    return em.node("Reshape", [x, target],
                   ValueType(vtype.dtype, _reshape_shape(vtype.shape, entries)))


def _transpose(em: OnnxEmitter, x: Any, axes: Sequence[int] | None = None) -> str:
    x = em.operand(x)
    vtype = em.type_of(x)
    perm = (list(reversed(range(vtype.rank))) if axes is None
            else [a % vtype.rank for a in axes])
    return em.node("Transpose", [x], ValueType(vtype.dtype, tuple(vtype.shape[p] for p in perm)),
                   perm=perm)


def _concat(em: OnnxEmitter, xs: Sequence[Any], axis: int) -> str:
    dtype, names = em.promote(*xs)
    shapes = [em.type_of(n).shape for n in names]
    axis %= len(shapes[0])
    sizes = [s[axis] for s in shapes]
    shape = list(shapes[0])
    shape[axis] = sum(sizes) if all(isinstance(d, int) for d in sizes) else None
    return em.node("Concat", names, ValueType(dtype, tuple(shape)), axis=axis)


def _slice(em: OnnxEmitter, x: Any, axis: int, start: int | None, stop: int | None) -> str:
    x = em.operand(x)
    vtype = em.type_of(x)
    axis %= vtype.rank
    size = vtype.shape[axis]
    shape = list(vtype.shape)
    shape[axis] = len(range(*slice(start, stop).indices(size))) if isinstance(size, int) else None
    starts = em.int64s([0 if start is None else start])
    ends = em.int64s([INT64_MAX if stop is None else stop])
    return em.node("Slice", [x, starts, ends, em.int64s([axis])],
                   ValueType(vtype.dtype, tuple(shape)))


def _flip(em: OnnxEmitter, x: Any, axis: int) -> str:
    """ONNX has no Flip: a Slice with step -1 from the last element past the first."""
    x = em.operand(x)
    vtype = em.type_of(x)
    return em.node("Slice", [x, em.int64s([-1]), em.int64s([INT64_MIN]),
                             em.int64s([axis % vtype.rank]), em.int64s([-1])], vtype)


def _pad(em: OnnxEmitter, x: Any, pads: Pads, value: float = 0.0) -> str:
    x = em.operand(x)
    vtype = em.type_of(x)
    pairs = [(int(lo), int(hi)) for lo, hi in pads]
    if not any(lo or hi for lo, hi in pairs):
        return x
    shape = tuple(d + lo + hi if isinstance(d, int) else None
                  for d, (lo, hi) in zip(vtype.shape, pairs, strict=True))
    flat = [lo for lo, _ in pairs] + [hi for _, hi in pairs]  # ONNX: all begins, then all ends
    fill = em.const(np.asarray(value, dtype=vtype.dtype))
    return em.node("Pad", [x, em.int64s(flat), fill], ValueType(vtype.dtype, shape),
                   mode="constant")


def _take(em: OnnxEmitter, x: Any, indices: Any, axis: int = 0) -> str:
    x = em.operand(x)
    idx = em.cast(em.operand(indices), INT64)  # NumPy truncates float indices too
    vtype = em.type_of(x)
    axis %= vtype.rank
    shape = vtype.shape[:axis] + em.type_of(idx).shape + vtype.shape[axis + 1:]
    return em.node("Gather", [x, idx], ValueType(vtype.dtype, shape), axis=axis)


def _one_hot(em: OnnxEmitter, indices: Any, depth: int, dtype: str = "f32") -> str:
    """indices[..., None] == arange(depth), exactly as NumPy (ONNX OneHot would wrap negative
    indices; here they give all-zero rows)."""
    idx = em.operand(indices)
    vtype = em.type_of(idx)
    column = em.node("Unsqueeze", [idx, em.int64s([-1])],
                     ValueType(vtype.dtype, (*vtype.shape, 1)))
    hits = _binary("Equal", compare=True)(em, column, np.arange(depth, dtype=INT64))
    return em.cast(hits, NUMPY_DTYPE[dtype])


def _filled_like(fill: int) -> Emit:
    def emit(em: OnnxEmitter, x: Any) -> str:
        x = em.operand(x)
        vtype = em.type_of(x)
        shape = em.node("Shape", [x], ValueType(INT64, (vtype.rank,)))
        value = numpy_helper.from_array(np.full((1,), fill, dtype=vtype.dtype), "value")
        return em.node("ConstantOfShape", [shape], vtype, value=value)

    return emit


def _constant(em: OnnxEmitter, value: Any, dtype: str = "f32") -> str:
    return em.const(value, NUMPY_DTYPE[dtype])


def _matmul(em: OnnxEmitter, x: Any, y: Any) -> str:
    dtype, (a, b) = em.promote(x, y)
    sa, sb = em.type_of(a).shape, em.type_of(b).shape
    xa = (1, *sa) if len(sa) == 1 else sa
    xb = (*sb, 1) if len(sb) == 1 else sb
    shape = (*broadcast_shapes(xa[:-2], xb[:-2]), xa[-2], xb[-1])
    if len(sb) == 1:
        shape = shape[:-1]
    if len(sa) == 1:
        shape = shape[:-2] + shape[-1:] if len(sb) != 1 else shape[:-1]
    return em.node("MatMul", [a, b], ValueType(dtype, tuple(shape)))


def _conv(em: OnnxEmitter, x: Any, w: Any, stride: Sequence[int], padding: Pads,
          dilation: Sequence[int] | None) -> str:
    dtype, (x, w) = em.promote(x, w)
    k = len(stride)
    dilation = tuple(dilation or (1,) * k)
    pairs = [(int(lo), int(hi)) for lo, hi in padding]
    sx, sw = em.type_of(x).shape, em.type_of(w).shape
    spatial = tuple(_window_out(s, lo, hi, kk, st, d) for s, (lo, hi), kk, st, d
                    in zip(sx[2:], pairs, sw[2:], stride, dilation, strict=True))
    attrs: dict[str, Any] = dict(strides=list(stride), dilations=list(dilation),
                                 pads=[lo for lo, _ in pairs] + [hi for _, hi in pairs])
    if all(isinstance(d, int) for d in sw[2:]):
        attrs["kernel_shape"] = list(sw[2:])
    return em.node("Conv", [x, w], ValueType(dtype, (sx[0], sw[0], *spatial)), **attrs)


def _pool(op_type: str, pad_value: float) -> Emit:
    """Pad explicitly (so pads count in avg_pool and never win in max_pool), then pool."""

    def emit(em: OnnxEmitter, x: Any, kernel: Sequence[int], stride: Sequence[int],
             padding: Pads) -> str:
        x = em.operand(x)
        k = len(kernel)
        x = _pad(em, x, [(0, 0)] * (em.type_of(x).rank - k) + [tuple(p) for p in padding],
                 pad_value)
        vtype = em.type_of(x)
        spatial = tuple(_window_out(s, 0, 0, kk, st, 1)
                        for s, kk, st in zip(vtype.shape[-k:], kernel, stride, strict=True))
        return em.node(op_type, [x], ValueType(vtype.dtype, (*vtype.shape[:-k], *spatial)),
                       kernel_shape=list(kernel), strides=list(stride))

    return emit


def _kmax(em: OnnxEmitter, x: Any, k: int, axis: int) -> str:
    """TopK (ties: lower index first, as NumPy's stable argsort), indices re-sorted, gathered."""
    x = em.operand(x)
    vtype = em.type_of(x)
    axis %= vtype.rank
    shape = tuple(k if i == axis else d for i, d in enumerate(vtype.shape))
    kk = em.int64s([k])
    _, idx = em.node("TopK", [x, kk], [ValueType(vtype.dtype, shape), ValueType(INT64, shape)],
                     axis=axis, largest=1, sorted=1)
    ordered, _ = em.node("TopK", [idx, kk], [ValueType(INT64, shape), ValueType(INT64, shape)],
                         axis=axis, largest=0, sorted=1)
    return em.node("GatherElements", [x, ordered], ValueType(vtype.dtype, shape), axis=axis)


def _training_only(name: str) -> Emit:
    def emit(em: OnnxEmitter, x: Any) -> str:
        raise NotImplementedError(
            f"{name} is a training-mode primitive; ONNX export runs with training=False, so "
            "an op must not call it at inference (read P.training first)")

    return emit


def _integral_to(dtype: np.dtype) -> Callable[[np.dtype], np.dtype]:
    return lambda d: dtype if d.kind in "biu" else d


EMIT: dict[str, Emit] = {
    "add": _binary("Add"), "sub": _binary("Sub"), "mul": _binary("Mul"),
    "div": _binary("Div", true_div=True), "pow": _binary("Pow"),
    "maximum": _binary("Max"), "minimum": _binary("Min"),
    "neg": _unary("Neg"), "exp": _unary("Exp", floating=True),
    "log": _unary("Log", floating=True), "sqrt": _unary("Sqrt", floating=True),
    "abs": _unary("Abs"), "sign": _unary("Sign"), "tanh": _unary("Tanh", floating=True),
    "sigmoid": _unary("Sigmoid", floating=True), "atan": _unary("Atan", floating=True),
    "sin": _unary("Sin", floating=True), "cos": _unary("Cos", floating=True),
    "erf": _unary("Erf", floating=True),
    "stop_gradient": _unary("Identity"),  # inference has no gradient to stop
    "gt": _binary("Greater", compare=True), "ge": _binary("GreaterOrEqual", compare=True),
    "lt": _binary("Less", compare=True), "le": _binary("LessOrEqual", compare=True),
    "eq": _binary("Equal", compare=True),
    "where": _where,
    "cast": _cast,
    "sum": _reduce("ReduceSum", axes_input=True,
                   dtype_rule=lambda d: INT64 if d == BOOL else d),  # NumPy sums bools as int64
    "mean": _reduce("ReduceMean", axes_input=False, dtype_rule=_integral_to(FLOAT64)),
    "max": _reduce("ReduceMax", axes_input=False, dtype_rule=lambda d: d),
    "argmax": _argmax,
    "shape": _shape,
    "reshape": _reshape,
    "transpose": _transpose,
    "concat": _concat,
    "slice": _slice,
    "flip": _flip,
    "pad": _pad,
    "take": _take,
    "one_hot": _one_hot,
    "zeros_like": _filled_like(0),
    "ones_like": _filled_like(1),
    "constant": _constant,
    "matmul": _matmul,
    "conv": _conv,
    "max_pool": _pool("MaxPool", -math.inf),
    "avg_pool": _pool("AveragePool", 0.0),
    "kmax": _kmax,
    "random_uniform_like": _training_only("random_uniform_like"),
    "random_normal_like": _training_only("random_normal_like"),
}


def make_onnx_prims(emitter: OnnxEmitter) -> SimpleNamespace:
    """The primitive table over `emitter`: what an op sees as `P` during export."""
    table = {name: partial(fn, emitter) for name, fn in EMIT.items()}
    return SimpleNamespace(backend="onnx", training=False, rng=None, **table)


def emitter_of(P: SimpleNamespace) -> OnnxEmitter:
    """The emitter behind an ONNX primitive table, for natives that emit whole ONNX ops (LSTM).

    Every primitive of `make_onnx_prims` is bound to the emitter, so it is read from there
    rather than stored as an attribute: the table holds exactly the primitives (and `backend`,
    `training`, `rng`), the same set as the NumPy and torch tables.
    """
    bound = getattr(P, "shape", None)
    if not (isinstance(bound, partial) and bound.args and isinstance(bound.args[0], OnnxEmitter)):
        raise TypeError("not an ONNX primitive table (make it with make_onnx_prims)")
    return bound.args[0]


def export_graph(graph: Graph, weights: Mapping[str, np.ndarray], *,
                 check: bool = True) -> onnx.ModelProto:
    """An ONNX model (opset 17, IR 8) of `graph` at inference, with `weights` as initializers.

    Inputs and outputs keep their IR names; symbolic dims become `dim_param`s ("batch").
    Weights are cast to their declared dtype. `check` runs onnx's full checker (with strict
    shape inference).
    """
    from nndsl.interpreter import run  # imports the op catalog

    missing = [w.name for w in graph.weights if w.name not in weights]
    if missing:
        raise ValueError(f"no values for weights: {', '.join(missing)}")
    em = OnnxEmitter()
    feeds = {name: em.add_input(name, ty.dtype, ty.shape) for name, ty in graph.inputs}
    declared = {w.name: w.dtype for w in graph.weights}
    names = {
        wname: em.add_initializer(wname, np.asarray(
            array, dtype=NUMPY_DTYPE[declared[wname]] if wname in declared else None))
        for wname, array in weights.items()
    }
    result = run(graph, make_onnx_prims(em), feeds, names)
    types = graph.types()
    return em.build_model([(result.env[o], o) for o in graph.outputs], name=graph.name,
                          output_types={o: types.get(o) for o in graph.outputs}, check=check)


# The ONNX forms of ops register themselves with the op catalog when the emitter exists.
from nndsl.backends.onnx import functions as _functions  # noqa: E402, F401
from nndsl.backends.onnx import natives as _natives  # noqa: E402, F401
from nndsl.backends.onnx import recurrent as _recurrent  # noqa: E402, F401
