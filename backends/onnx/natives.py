"""One-node ONNX forms of common ops (Gemm, Conv with its bias, Relu, Softmax, ...).

The decompositions export correctly but as several nodes (relu as Greater + Where); these
natives give the graph a hand-written exporter would. Each has the op's signature, and the
export parity tests compare it with the NumPy decomposition.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from nndsl.backends.onnx.emitter import ValueType, emitter_of

from nndsl.ops.conv import pads, sizes
from nndsl.ops.registry import register_natives
from nndsl.ops.upsampling import transpose_geometry


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
          shared_bias: bool = False, weight: Any, bias: Any = None) -> str:
    """Gemm(x, W, b, transB=1) for a 2-D input (tied weights: transB=0); Gemm broadcasts a
    shared bias [1] over the units."""
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


def layer_norm(P: Any, x: Any, *, axis: int = -1, eps: float = 1e-5, use_bias: bool = True,
               gamma: Any, beta: Any = None) -> str:
    """One LayerNormalization node (opset 17): the same axes, epsilon and biased variance."""
    em = emitter_of(P)
    xt = em.type_of(x)
    inputs = [x, em.cast(gamma, xt.dtype)] + ([em.cast(beta, xt.dtype)] if beta is not None
                                              else [])
    return em.node("LayerNormalization", inputs, xt, axis=axis % xt.rank, epsilon=eps)


def conv_transpose2d(P: Any, x: Any, *, channels: int, kernel: Any, stride: Any = 1,
                     padding: Any = "valid", output_padding: Any = 0, use_bias: bool = True,
                     weight: Any, bias: Any = None) -> str:
    """ConvTranspose with the border crops as `pads` and torch's output_padding as its own."""
    em = emitter_of(P)
    g = transpose_geometry(kernel, stride, padding, output_padding)
    xt = em.type_of(x)
    out = tuple(g.out_size(a, n) for a, n in enumerate(xt.shape[2:]))
    inputs = [x, em.cast(weight, xt.dtype)] + ([em.cast(bias, xt.dtype)] if bias is not None
                                               else [])
    return em.node("ConvTranspose", inputs, ValueType(xt.dtype, (xt.shape[0], channels, *out)),
                   kernel_shape=list(g.kernel), strides=list(g.stride),
                   output_padding=list(g.extra),
                   pads=[lo for lo, _ in g.crops] + [hi for _, hi in g.crops])


RESIZE_MODES = {  # our mode -> Resize attributes giving torch's F.interpolate(align_corners=False)
    "nearest": dict(mode="nearest", coordinate_transformation_mode="asymmetric",
                    nearest_mode="floor"),
    "bilinear": dict(mode="linear", coordinate_transformation_mode="pytorch_half_pixel"),
}


def upsample(P: Any, x: Any, *, scale: Any, mode: str = "nearest") -> str:
    """One Resize node (opset 13 form) with constant scales [1, 1, s, t]."""
    em = emitter_of(P)
    xt = em.type_of(x)
    sh, sw = sizes("upsample", "scale", scale, 2)
    scales = em.const(np.asarray([1.0, 1.0, sh, sw], dtype=np.float32))
    out = (*xt.shape[:2], *(n * f if isinstance(n, int) else None
                           for n, f in zip(xt.shape[2:], (sh, sw), strict=True)))
    return em.node("Resize", [x, "", scales], ValueType(xt.dtype, out), **RESIZE_MODES[mode])


NATIVE: dict[str, Callable[..., Any]] = {
    "relu": _unary("Relu"), "sigmoid": _unary("Sigmoid"), "tanh": _unary("Tanh"),
    "softmax": _along_axis("Softmax"), "log_softmax": _along_axis("LogSoftmax"),
    "dense": dense, "conv1d": _conv(1, "conv1d"), "conv2d": _conv(2, "conv2d"),
    "flatten": flatten, "layer_norm": layer_norm, "conv_transpose2d": conv_transpose2d,
    "upsample": upsample,
}
register_natives("onnx", NATIVE)
