"""Import rules for layers with weights and for the structural ops: ONNX op type -> nndsl op.

Each rule reads one node (and, where an exporter spreads one layer over several nodes, the nodes
after it), checks that the nndsl op computes exactly the same thing, and emits it. What it
cannot express exactly is an error naming the node and what is supported.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx

from nndsl.importer.context import Importer, rule
from nndsl.importer.graph import node_error
from nndsl.ops.conv import pads as border_pads

CONV_OPS = {3: "conv1d", 4: "conv2d"}
POOL_OPS = {("MaxPool", 3): "maxpool1d", ("MaxPool", 4): "maxpool2d",
            ("AveragePool", 3): "avgpool1d", ("AveragePool", 4): "avgpool2d"}
POOL_FILL = {"MaxPool": -np.inf, "AveragePool": 0.0}  # what a Pad before the pool must fill
GLOBAL_POOLS = {"GlobalAveragePool": "global_avgpool", "GlobalMaxPool": "global_maxpool"}


# ---- dense -------------------------------------------------------------------------------------


def source_name(imp: Importer, value: str) -> str:
    """The initializer a constant was computed from (through Transpose, Cast, Identity)."""
    while value not in imp.view.initializers:
        node = imp.view.producer.get(value)
        if node is None or node.op_type not in ("Transpose", "Cast", "Identity") or not node.input:
            return value
        value = node.input[0]
    return value


def bias_after(imp: Importer, value: str, units: int) -> tuple[np.ndarray | None, str,
                                                                 list[onnx.NodeProto]]:
    """A constant `Add` of [units] right after `value` (MatMul + Add is a dense with bias)."""
    user = imp.view.only_user(value)
    if user is None or user.op_type != "Add":
        return None, value, []
    other = user.input[1] if user.input[0] == value else user.input[0]
    const = imp.view.const(other)
    if not isinstance(const, np.ndarray) or const.dtype == object or const.size != units or \
            (const.ndim > 1 and const.shape[-1] != units):
        return None, value, []
    return const.reshape(units), user.output[0], [user]


def emit_dense(imp: Importer, node: onnx.NodeProto, x: str, weight: np.ndarray,
               bias: np.ndarray | None, out: str, weight_value: str,
               tied_form: bool) -> None:
    """dense(units) with weight [units, in]; `tied_form`: the ONNX op used the initializer
    un-transposed ([in, units]), so when another layer owns it this one is `tied=` to it."""
    source = source_name(imp, weight_value)
    owner = imp.owner.get(source)
    params: dict[str, Any] = {"units": weight.shape[0], "use_bias": bias is not None}
    if bias is not None and bias.shape == (1,) and weight.shape[0] > 1:
        params["shared_bias"] = True  # one bias for every unit, dense(shared_bias=true)
    if tied_form and owner is not None and owner.endswith(".weight"):
        params["tied"] = owner.rsplit(".", 1)[0]
    label = imp.label_for(source, "dense") if owner is None else None
    imp.emit(node, "dense", [x], params, out, weights={"weight": weight, "bias": bias},
             label=label, sources={"weight": source})


@rule("Gemm")
def gemm(imp: Importer, node: onnx.NodeProto) -> None:
    """Gemm(x, B, C): y = alpha x B' + beta C, a dense layer (torch nn.Linear's export)."""
    if imp.attr(node, "transA", 0):
        raise node_error(node, "transA=1 is not supported", hint="nndsl dense reads [batch, in]")
    trans_b = imp.attr(node, "transB", 0)
    b = imp.array(node.input[1], node, "weight B")
    alpha = imp.attr(node, "alpha", 1.0)
    weight = b if trans_b else b.T
    weight = weight if alpha == 1.0 else (weight * alpha).astype(b.dtype)
    bias = None
    if len(node.input) > 2 and node.input[2]:
        c = imp.array(node.input[2], node, "bias C")
        c = c if imp.attr(node, "beta", 1.0) == 1.0 else (c * imp.attr(node, "beta")).astype(
            c.dtype)
        if c.size not in (1, weight.shape[0]):
            raise node_error(node, f"bias C of shape {list(c.shape)} is not one per unit")
        bias = c.reshape(-1)  # one number for every unit: a shared bias
    x = imp.tensor(node.input[0], node)
    emit_dense(imp, node, x, weight, bias, node.output[0], node.input[1], not trans_b)


@rule("MatMul")
def matmul(imp: Importer, node: onnx.NodeProto) -> None:
    """MatMul(x, W) (+ Add(b)): a dense layer on [batch, in] or [batch, time, in]."""
    from nndsl.importer.attention import mha_after
    from nndsl.importer.patterns import attention_matmul, hopfield_after, maxout_after

    if not imp.view.is_const(node.input[1]):
        attention_matmul(imp, node)
        return
    w = imp.array(node.input[1], node, "weight")
    if w.ndim != 2:
        raise node_error(node, f"a {w.ndim}-D constant weight is not a dense layer",
                         expected="a 2-D weight [in, units]")
    bias, out, extra = bias_after(imp, node.output[0], w.shape[1])
    x = imp.tensor(node.input[0], node)
    if maxout_after(imp, node, x, w, bias, out, extra) or \
            hopfield_after(imp, node, x, bias, out, extra) or mha_after(imp, node, w, out, extra):
        return
    imp.take(*extra)
    direct = node.input[1] in imp.view.initializers  # nndsl's tied form: x @ W, W [in, units]
    emit_dense(imp, node, x, w.T, bias, out, node.input[1], direct)


# ---- convolution and pooling ---------------------------------------------------------------------


def _pairs(node: onnx.NodeProto, imp: Importer, n: int) -> list[tuple[int, int]]:
    auto = imp.attr(node, "auto_pad", "NOTSET")
    if auto not in ("NOTSET", "VALID"):
        raise node_error(node, f"auto_pad={auto} is not supported",
                         hint="export with explicit pads")
    flat = list(imp.attr(node, "pads", [0] * 2 * n))
    return [(flat[i], flat[i + n]) for i in range(n)]


def padding_param(node: onnx.NodeProto, pairs: list[tuple[int, int]], kernel: list[int],
                  dilation: list[int], stride: list[int]) -> Any:
    """nndsl's `padding` for per-axis (before, after) pads: a border mode or one int (`same`
    where it says what the pads do: at stride 1, the output keeps the input's size)."""
    if all(lo == hi == 0 for lo, hi in pairs):
        return None  # the op's default (valid / 0)
    same = list(border_pads("import", "same", tuple(kernel), tuple(dilation))) == pairs
    if same and (set(stride) == {1} or len({p for pair in pairs for p in pair}) != 1):
        return "same"
    if len({p for pair in pairs for p in pair}) == 1:
        return pairs[0][0]
    raise node_error(node, f"pads {pairs} differ between axes or sides",
                     hint="nndsl pads every spatial axis alike (an int), or `same`")


def _size(values: list[int]) -> Any:
    """One int when every axis has the same size, else the list."""
    return values[0] if len(set(values)) == 1 else tuple(values)


@rule("Conv")
def conv(imp: Importer, node: onnx.NodeProto) -> None:
    """Conv(x, W, b): conv1d / conv2d (cross-correlation, NCHW, as nndsl's)."""
    w = imp.array(node.input[1], node, "weight")
    if w.ndim not in CONV_OPS:
        raise node_error(node, f"a {w.ndim - 2}-D convolution has no nndsl layer",
                         expected="1-D or 2-D (conv1d, conv2d)")
    if imp.attr(node, "group", 1) != 1:
        raise node_error(node, "grouped convolution (group > 1) has no nndsl layer")
    n = w.ndim - 2
    kernel = list(w.shape[2:])
    stride = list(imp.attr(node, "strides", [1] * n))
    dilation = list(imp.attr(node, "dilations", [1] * n))
    padding = padding_param(node, _pairs(node, imp, n), kernel, dilation, stride)
    bias = imp.array(node.input[2], node, "bias") if len(node.input) > 2 and node.input[2] \
        else None
    params: dict[str, Any] = {"channels": w.shape[0], "kernel": _size(kernel),
                              "stride": _size(stride), "padding": padding or "valid",
                              "dilation": _size(dilation), "use_bias": bias is not None}
    x = imp.tensor(node.input[0], node)
    imp.emit(node, CONV_OPS[w.ndim], [x], params, node.output[0],
             weights={"weight": w, "bias": bias},
             label=imp.label_for(source_name(imp, node.input[1]), CONV_OPS[w.ndim]))


def _pad_before(imp: Importer, node: onnx.NodeProto, n: int) -> tuple[str, list[tuple[int, int]]]:
    """The pool's input, and the pads of a Pad node right before it (nndsl's export pads
    explicitly: −∞ before a max pool, 0 before an average pool)."""
    producer = imp.view.producer.get(node.input[0])
    if producer is None or producer.op_type != "Pad" or imp.view.only_user(node.input[0]) is None:
        return node.input[0], [(0, 0)] * n
    flat = [int(v) for v in imp.array(producer.input[1], producer, "pads")]
    rank = len(flat) // 2
    fill = imp.view.const(producer.input[2]) if len(producer.input) > 2 else np.zeros(())
    pairs = [(flat[i], flat[i + rank]) for i in range(rank)]
    if imp.attr(producer, "mode", "constant") != "constant" or any(pairs[:rank - n]) or \
            fill is None or float(np.ravel(fill)[0]) != POOL_FILL[node.op_type]:
        raise node_error(producer, "only a constant pad of the spatial axes before a pool "
                         "imports", hint=f"{node.op_type} pads with {POOL_FILL[node.op_type]}")
    imp.take(producer)
    return producer.input[0], pairs[rank - n:]


@rule("Pad")
def pad(imp: Importer, node: onnx.NodeProto) -> None:
    """A Pad imports only as the padding of the pool after it (taken by that pool's rule)."""
    user = imp.view.only_user(node.output[0])
    if user is None or user.op_type not in POOL_FILL:
        raise node_error(node, "a Pad that does not feed a pool has no nndsl layer",
                         hint="nndsl pads inside conv and pool layers (padding=)")


@rule("MaxPool", "AveragePool")
def pool(imp: Importer, node: onnx.NodeProto) -> None:
    """MaxPool / AveragePool: maxpool1d/2d, avgpool1d/2d (padded zeros counted, as torch)."""
    kernel = list(imp.attr(node, "kernel_shape"))
    n = len(kernel)
    source, before = _pad_before(imp, node, n)
    own = _pairs(node, imp, n)
    if any(own) and any(p for pair in before for p in pair):
        raise node_error(node, "pads both in a Pad node and on the pool")
    pairs = own if any(p for pair in own for p in pair) else before
    if imp.attr(node, "ceil_mode", 0) or any(d != 1 for d in imp.attr(node, "dilations", [1])):
        raise node_error(node, "ceil_mode and dilated pools have no nndsl layer")
    if node.op_type == "AveragePool" and any(own) and not imp.attr(node, "count_include_pad", 0):
        raise node_error(node, "an average pool that leaves padded zeros out of the mean "
                         "(count_include_pad=0) has no nndsl layer",
                         hint="nndsl's avgpool counts them, as torch's default")
    if len(node.output) > 1 and node.output[1]:
        raise node_error(node, "the max pool's indices output is not supported")
    stride = list(imp.attr(node, "strides", [1] * n))
    x = imp.tensor(source, node)
    rank = imp.builder.type_of(x).rank
    if (node.op_type, rank) not in POOL_OPS:
        raise node_error(node, f"a pool over a rank-{rank} input has no nndsl layer")
    params = {"size": _size(kernel), "stride": None if stride == kernel else _size(stride),
              "padding": padding_param(node, pairs, kernel, [1] * n, stride) or 0}
    imp.emit(node, POOL_OPS[(node.op_type, rank)], [x], params, node.output[0])


@rule(*GLOBAL_POOLS)
def global_pool(imp: Importer, node: onnx.NodeProto) -> None:
    """GlobalAveragePool / GlobalMaxPool [b, c, ...] -> [b, c, 1, ...]; with the Flatten that
    usually follows, nndsl's global pools ([b, c])."""
    x = imp.tensor(node.input[0], node)
    rank = imp.builder.type_of(x).rank
    pooled = imp.emit(node, GLOBAL_POOLS[node.op_type], [x], {}, node.output[0])
    user = imp.view.only_user(node.output[0])
    if user is not None and user.op_type == "Flatten" and imp.attr(user, "axis", 1) == 1:
        imp.take(user)
        imp.alias(user.output[0], pooled)
        return
    ones = (1,) * (rank - 2)
    imp.emit(node, "reshape", [pooled], {"shape": (-1, *ones)}, node.output[0])


# ---- structure -----------------------------------------------------------------------------------


@rule("Flatten")
def flatten(imp: Importer, node: onnx.NodeProto) -> None:
    if imp.attr(node, "axis", 1) != 1:
        raise node_error(node, "only Flatten(axis=1) keeps the batch axis", expected="axis=1")
    imp.emit(node, "flatten", [imp.tensor(node.input[0], node)], {}, node.output[0])


@rule("Reshape")
def reshape(imp: Importer, node: onnx.NodeProto) -> None:
    """Reshape(x, [batch, ...]): nndsl reshape (per example) or, for [batch, -1], flatten."""
    from nndsl.importer.graph import Symbol
    from nndsl.importer.patterns import reshape_pattern

    if reshape_pattern(imp, node):
        return
    x = imp.tensor(node.input[0], node)
    target = list(imp.view.const(node.input[1]) if imp.view.is_const(node.input[1]) else [])
    if not target:
        raise node_error(node, "its target shape is computed when the model runs",
                         hint="nndsl reshapes to sizes fixed per example")
    first, rest = target[0], target[1:]
    keeps_batch = (isinstance(first, Symbol) and first.axis == 0) or \
        (not isinstance(first, Symbol) and int(first) == 0)
    if not keeps_batch or any(isinstance(d, Symbol) for d in rest):
        raise node_error(node, f"reshape to {target} does not keep the batch axis as it is",
                         expected="[0 or the batch size, sizes per example]")
    rest = [int(d) for d in rest]
    if isinstance(first, Symbol) and rest == [-1]:
        imp.emit(node, "flatten", [x], {}, node.output[0])
        return
    if 0 in rest:  # ONNX 0 copies the input size at that position
        shape = imp.builder.type_of(x).shape
        rest = [int(shape[i + 1]) if d == 0 else d for i, d in enumerate(rest)]
    imp.emit(node, "reshape", [x], {"shape": tuple(rest)}, node.output[0])


@rule("Concat")
def concat(imp: Importer, node: onnx.NodeProto) -> None:
    xs = [imp.tensor(v, node) for v in node.input]
    rank = imp.builder.type_of(xs[0]).rank
    axis = imp.attr(node, "axis")
    imp.emit(node, "concat", xs, {"axis": axis - rank if axis >= 0 else axis}, node.output[0])


@rule("Identity", "Dropout")
def passthrough(imp: Importer, node: onnx.NodeProto) -> None:
    """Identity, and Dropout at inference (its mask output must be unused)."""
    if node.op_type == "Dropout":
        if len(node.output) > 1 and node.output[1] and imp.view.users(node.output[1]):
            raise node_error(node, "the dropout mask output is used")
        if len(node.input) > 2 and node.input[2]:
            mode = imp.view.const(node.input[2])
            if mode is None or bool(np.ravel(mode)[0]):
                raise node_error(node, "dropout in training mode does not import",
                                 hint="export the model in eval() mode")
    x = imp.tensor(node.input[0], node)
    if node.output[0] in imp.view.outputs and x in dict(imp.builder.inputs):
        imp.emit(node, "identity", [x], {}, node.output[0])
        return
    imp.alias(node.output[0], x)


@rule("Gather")
def gather(imp: Importer, node: onnx.NodeProto) -> None:
    """Gather(W, ids) with a constant table W [vocab, dim]: an embedding lookup."""
    table = imp.view.const(node.input[0])
    if table is None or imp.attr(node, "axis", 0) != 0:
        raise node_error(node, "only a row lookup in a constant table (an embedding) imports",
                         hint="Gather(W [vocab, dim], ids, axis=0)")
    w = imp.array(node.input[0], node, "table")
    if w.ndim != 2:
        raise node_error(node, f"a {w.ndim}-D table is not an embedding", expected="[vocab, dim]")
    ids = imp.tensor(node.input[1], node)
    imp.emit(node, "embedding", [ids], {"vocab": w.shape[0], "dim": w.shape[1]},
             node.output[0], weights={"weight": w},
             label=imp.label_for(source_name(imp, node.input[0]), "embedding"))
