"""Reading an ONNX graph for import: who produces and who reads each value, node attributes, and
constant folding.

Exporters surround the layers with nodes that compute constants: initializers re-laid out
(`Transpose(W)`), `Constant` nodes, and shape arithmetic (torch's `Shape -> Gather -> Unsqueeze
-> Concat` for `x.view(x.size(0), -1)`). The importer evaluates those at import time (`fold`),
with NumPy, so a rule sees the constant it needs. A shape entry only known when the model runs
(the batch size) stays a `Symbol`, so `Reshape(x, [batch, -1])` still reads as "keep the batch".
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from nndsl.errors import NndslError
from nndsl.ir import TensorType

FLOAT_DTYPES = {onnx.TensorProto.FLOAT: "f32", onnx.TensorProto.DOUBLE: "f64",
                onnx.TensorProto.INT64: "i64"}


@dataclass(frozen=True)
class Symbol:
    """A dimension known only when the model runs (e.g. 'batch'), inside a folded shape."""

    name: str
    source: str  # the value whose size it is
    axis: int

    def __repr__(self) -> str:
        return self.name


@dataclass(frozen=True)
class Filled:
    """`ConstantOfShape` over a shape that holds symbols: `value` everywhere (e.g. zero states)."""

    shape: tuple[Any, ...]
    value: float


def describe(node: onnx.NodeProto) -> str:
    """How errors name a node: its name (or first output) and op type."""
    return f"node '{node.name or (node.output[0] if node.output else '?')}' ({node.op_type})"


def node_error(node: onnx.NodeProto, message: str, **extra: Any) -> NndslError:
    return NndslError(f"{describe(node)}: {message}", **extra)


def attrs(node: onnx.NodeProto) -> dict[str, Any]:
    """A node's attributes as Python values (strings decoded)."""
    out = {}
    for a in node.attribute:
        value = helper.get_attribute_value(a)
        if isinstance(value, bytes):
            value = value.decode("utf-8")
        elif isinstance(value, list) and value and isinstance(value[0], bytes):
            value = [v.decode("utf-8") for v in value]
        out[a.name] = value
    return out


class OnnxView:
    """The graph of a model: initializers, producers and consumers, folded constants."""

    def __init__(self, model: onnx.ModelProto,
                 type_of: Callable[[str], TensorType | None]) -> None:
        self.model, self.graph = model, model.graph
        self.type_of = type_of  # the IR type of a value already imported (for Shape)
        self.initializers = {t.name: numpy_helper.to_array(t) for t in self.graph.initializer}
        self.producer: dict[str, onnx.NodeProto] = {}
        self.consumers: dict[str, list[onnx.NodeProto]] = {}
        for node in self.graph.node:
            for out in node.output:
                if out:
                    self.producer[out] = node
            for name in dict.fromkeys(node.input):  # Mul(d, d) reads d once
                if name:
                    self.consumers.setdefault(name, []).append(node)
        self.outputs = [o.name for o in self.graph.output]
        self._folded: dict[str, Any] = {}

    # ---- structure -----------------------------------------------------------------------
    def users(self, value: str) -> list[onnx.NodeProto]:
        return self.consumers.get(value, [])

    def only_user(self, value: str) -> onnx.NodeProto | None:
        """The one node reading `value`, when exactly one does and it is not a graph output."""
        users = self.users(value)
        return users[0] if len(users) == 1 and value not in self.outputs else None

    # ---- constants -----------------------------------------------------------------------
    def const(self, value: str) -> Any:
        """The constant behind `value` (an array, or `Filled`), or None when it is computed
        from the model's inputs."""
        if not value:
            return None
        if value in self.initializers:
            return self.initializers[value]
        if value not in self._folded:
            self._folded[value] = self._fold(value)
        return self._folded[value]

    def is_const(self, value: str) -> bool:
        return self.const(value) is not None

    def _fold(self, value: str) -> Any:
        node = self.producer.get(value)
        if node is None or node.op_type not in FOLD:
            return None
        if node.op_type == "Shape":
            ty = self.type_of(node.input[0])
            return None if ty is None else _shape_of(node, ty)
        args = [self.const(name) if name else None for name in node.input]
        if any(a is None for a, name in zip(args, node.input, strict=True) if name):
            return None
        if any(isinstance(a, Filled) for a in args):  # a slice or view of a constant fill
            keeps = node.op_type in FILL_VIEWS and isinstance(args[0], Filled)
            return Filled((), args[0].value) if keeps else None
        try:
            result = FOLD[node.op_type](args, attrs(node))
        except (ValueError, TypeError, IndexError) as e:
            raise node_error(node, f"cannot evaluate this constant ({e})") from None
        if isinstance(result, Symbol):  # one entry taken out of a shape: keep it an array
            result = np.asarray(result, dtype=object)
        outputs = list(node.output)
        return result if outputs.index(value) == 0 else None


def _shape_of(node: onnx.NodeProto, ty: TensorType) -> np.ndarray:
    a = attrs(node)
    dims = [d if isinstance(d, int) else Symbol(d, node.input[0], i)
            for i, d in enumerate(ty.shape)]
    start, end = a.get("start", 0), a.get("end", len(dims))
    return _array(dims[start:end])


def _array(items: Iterable[Any]) -> np.ndarray:
    """Shape entries as int64, or as objects when a symbol is among them."""
    items = list(items)
    if any(isinstance(i, Symbol) for i in items):
        out = np.empty(len(items), dtype=object)
        out[:] = items
        return out
    return np.asarray(items, dtype=np.int64)


def _constant(args: list[Any], a: dict[str, Any]) -> Any:
    if "value" in a:
        return numpy_helper.to_array(a["value"])
    for key, dtype in (("value_float", np.float32), ("value_floats", np.float32),
                       ("value_int", np.int64), ("value_ints", np.int64)):
        if key in a:
            return np.asarray(a[key], dtype=dtype)
    raise ValueError("a Constant without a numeric value")


def _cast(args: list[Any], a: dict[str, Any]) -> Any:
    x = args[0]
    if x.dtype == object:
        return x
    return x.astype(helper.tensor_dtype_to_np_dtype(a["to"]))


def _reshape(args: list[Any], a: dict[str, Any]) -> Any:
    x, shape = args
    target = [x.shape[i] if int(d) == 0 and not a.get("allowzero") else int(d)
              for i, d in enumerate(shape)]
    return x.reshape(target)


def _axes(args: list[Any], a: dict[str, Any]) -> list[int]:
    axes = args[1] if len(args) > 1 and args[1] is not None else a.get("axes", [])
    return [int(v) for v in np.asarray(axes).ravel()]


def _unsqueeze(args: list[Any], a: dict[str, Any]) -> Any:
    x, axes = args[0], _axes(args, a)
    rank = x.ndim + len(axes)
    for axis in sorted(ax % rank for ax in axes):
        x = np.expand_dims(x, axis)
    return x


def _squeeze(args: list[Any], a: dict[str, Any]) -> Any:
    x, axes = args[0], _axes(args, a)
    return np.squeeze(x, axis=tuple(axes)) if axes else np.squeeze(x)


def _slice(args: list[Any], a: dict[str, Any]) -> Any:
    x, starts, ends = args[:3]
    axes = args[3] if len(args) > 3 and args[3] is not None else range(len(starts))
    steps = args[4] if len(args) > 4 and args[4] is not None else [1] * len(starts)
    index = [slice(None)] * x.ndim
    for s, e, ax, st in zip(starts, ends, axes, steps, strict=True):
        index[int(ax)] = slice(int(s), int(e), int(st))
    return x[tuple(index)]


def _constant_of_shape(args: list[Any], a: dict[str, Any]) -> Any:
    value = numpy_helper.to_array(a["value"]) if "value" in a else np.zeros(1, np.float32)
    shape = args[0]
    if shape.dtype == object:
        return Filled(tuple(shape), float(value.ravel()[0]))
    return np.full([int(d) for d in shape], value.ravel()[0], dtype=value.dtype)


def _numeric(fn: Callable[..., Any]) -> Callable[[list[Any], dict[str, Any]], Any]:
    def fold(args: list[Any], a: dict[str, Any]) -> Any:
        if any(x.dtype == object for x in args):
            raise TypeError("arithmetic on a size known only when the model runs")
        return np.asarray(fn(*args)).astype(np.result_type(*args))

    return fold


FILL_VIEWS = ("Slice", "Squeeze", "Unsqueeze", "Reshape", "Gather", "Identity", "Transpose")
FOLD: dict[str, Callable[[list[Any], dict[str, Any]], Any]] = {
    "Constant": _constant,
    "Identity": lambda args, a: args[0],
    "Cast": _cast,
    "Reshape": _reshape,
    "Transpose": lambda args, a: np.transpose(args[0], a.get("perm")),
    "Unsqueeze": _unsqueeze,
    "Squeeze": _squeeze,
    "Concat": lambda args, a: np.concatenate(args, axis=a["axis"]),
    "Gather": lambda args, a: np.take(args[0], args[1].astype(np.int64), axis=a.get("axis", 0)),
    "Slice": _slice,
    "Shape": lambda args, a: None,  # read from the IR type of the input (OnnxView._fold)
    "ConstantOfShape": _constant_of_shape,
    "Add": _numeric(np.add), "Sub": _numeric(np.subtract), "Mul": _numeric(np.multiply),
    "Div": _numeric(np.divide), "Neg": _numeric(np.negative), "Sqrt": _numeric(np.sqrt),
}
