"""One-node ONNX forms of common ops (Gemm, Conv with its bias, Relu, Softmax, ...).

The decompositions export correctly but as several nodes (relu as Greater + Where); these
natives give the graph a hand-written exporter would. Each has the op's signature, and the
export parity tests compare it with the NumPy decomposition.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from nndsl.backends.onnx.emitter import ValueType, emitter_of

from nndsl.ops.conv import pads, sizes


def _unary(op_type: str) -> Callable[..., str]:
    def native(P: Any, x: Any) -> str:
        em = emitter_of(P)
        return em.node(op_type, [x], em.type_of(x))

    return native


def _along_axis(op_type: str) -> Callable[..., str]:
    def native(P: Any, x: Any, *, axis: int = -1) -> str:
        em = emitter_of(P)
        return em.node(op_type, [x], em.type_of(x), axis=axis)

    return native


def dense(P: Any, x: Any, *, units: int, use_bias: bool = True, tied: str | None = None,
          weight: Any, bias: Any = None) -> str:
    """Gemm(x, W, b, transB=1) for a 2-D input (tied weights: transB=0)."""
    em = emitter_of(P)
    xt = em.type_of(x)
    if xt.rank != 2:  # [batch, time, features]: MatMul broadcasts over time
        w = weight if tied is not None else P.transpose(weight)
        y = P.matmul(x, w)
        return y if bias is None else P.add(y, bias)
    inputs = [x, weight] + ([bias] if bias is not None else [])
    return em.node("Gemm", inputs, ValueType(xt.dtype, (xt.shape[0], units)),
                   transB=0 if tied is not None else 1)


def _conv(n: int, name: str) -> Callable[..., str]:
    def native(P: Any, x: Any, *, channels: int, kernel: Any, stride: Any = 1,
               padding: Any = "valid", dilation: Any = 1, use_bias: bool = True,
               weight: Any, bias: Any = None) -> str:
        em = emitter_of(P)
        k, d = sizes(name, "kernel", kernel, n), sizes(name, "dilation", dilation, n)
        y = P.conv(x, weight, sizes(name, "stride", stride, n), pads(name, padding, k, d), d)
        if bias is None:
            return y
        conv = em.nodes.pop()  # the same Conv, given the bias as its third input
        conv.input.append(bias)
        em.nodes.append(conv)
        return y

    return native


def flatten(P: Any, x: Any) -> str:
    em = emitter_of(P)
    xt = em.type_of(x)
    size: Any = 1
    for d in xt.shape[1:]:
        size = size * d if isinstance(d, int) and isinstance(size, int) else None
    return em.node("Flatten", [x], ValueType(xt.dtype, (xt.shape[0], size)), axis=1)


NATIVE: dict[str, Callable[..., Any]] = {
    "relu": _unary("Relu"), "sigmoid": _unary("Sigmoid"), "tanh": _unary("Tanh"),
    "softmax": _along_axis("Softmax"), "log_softmax": _along_axis("LogSoftmax"),
    "dense": dense, "conv1d": _conv(1, "conv1d"), "conv2d": _conv(2, "conv2d"),
    "flatten": flatten,
}
