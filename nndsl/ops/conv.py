"""Convolution and pooling on channels-first inputs [batch, channels, *spatial].

Conventions fixed here:

- `conv1d`/`conv2d` compute cross-correlation (no kernel flip), as torch and
  ONNX Conv do; weight `[out_channels, in_channels, *kernel]`, bias `[out_channels]`.
- `padding`, per spatial axis with dilated span e = d·(k − 1):
  `valid` pads nothing; `full` pads e on both sides (out = in + e at stride 1); an int p pads p
  on both sides; `same` pads e in total, ⌊e/2⌋ before and ⌈e/2⌉ after, whatever the stride
  (out = ⌈in / s⌉). For odd kernels that is the usual symmetric k//2; for even kernels the
  extra row/column goes after, as torch `padding='same'` and ONNX `SAME_UPPER` do.
- Output size ⌊(in + pad_before + pad_after − e − 1) / s⌋ + 1. Spatial sizes must be integers,
  except that a symbolic size passes through when it cannot change (stride 1 and `same`).
- Pools: `stride` defaults to `size`; max pools pad with −∞, average pools count padded zeros
  (torch count_include_pad=True); `l2pool2d` is √(Σ x²) over the window (torch
  LPPool2d(2), ONNX LpPool(p=2)), with gradient 0 for an all-zero window. Global pools reduce
  every spatial axis: [batch, C, ...] → [batch, C]. `kmaxpool` keeps the k largest values
  along an axis in their original order.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from nndsl.errors import NndslError
from nndsl.ir import TensorType, format_shape
from nndsl.ops.registry import Weight, WeightSpec
from nndsl.ops.shapes import (
    known_dim,
    layer_op,
    need_min_rank,
    need_rank,
    per_channel,
    positive,
)

Padding = Literal["valid", "same", "full"] | int
Size = int | tuple[int, ...]
LAYOUT = {1: "[batch, channels, length]", 2: "[batch, channels, height, width]"}
RESHAPE_HINT = {1: "give the input a channel axis, e.g. `reshape([1, -1])`",
                2: "give the input channel and spatial axes, e.g. `reshape([1, H, W])`"}


def sizes(name: str, key: str, value: Size, n: int) -> tuple[int, ...]:
    """`kernel`, `stride`, ... as n positive ints (one int stands for all n axes)."""
    out = (value,) * n if isinstance(value, int) else tuple(value)
    if len(out) != n or any(v < 1 for v in out):
        raise NndslError(f"{name} `{key}` must be a positive integer or {n} of them, got {value}",
                         expected=f"{key}=K or {key}=[{', '.join('K' * n)}]",
                         received=f"{key}={value}")
    return out


def pads(name: str, padding: Padding, kernel: tuple[int, ...],
         dilation: tuple[int, ...]) -> tuple[tuple[int, int], ...]:
    """(before, after) per spatial axis for a border mode or an int (see the module docstring)."""
    spans = [d * (k - 1) for k, d in zip(kernel, dilation, strict=True)]
    if isinstance(padding, int) and not isinstance(padding, bool) and padding >= 0:
        return tuple((padding, padding) for _ in spans)
    modes = {"valid": lambda e: (0, 0), "same": lambda e: (e // 2, e - e // 2),
             "full": lambda e: (e, e)}
    if padding not in modes:
        raise NndslError(f"{name} padding {padding!r} is not a border mode",
                         expected="valid | same | full | an integer >= 0",
                         received=f"padding={padding}")
    return tuple(modes[padding](e) for e in spans)


def window_type(name: str, x: TensorType, n: int, out_channels: int | None, kernel: Size,
                stride: Size, dilation: Size, padding: Padding) -> TensorType:
    """Output type of a sliding-window op over the last n axes of [batch, channels, *spatial]."""
    need_rank(name, x, {n + 2: LAYOUT[n]}, RESHAPE_HINT[n])
    k, s, d = (sizes(name, key, v, n) for key, v in
               (("kernel", kernel), ("stride", stride), ("dilation", dilation)))
    out: list[int | str] = []
    for dim, kk, ss, dd, (lo, hi) in zip(x.shape[2:], k, s, d, pads(name, padding, k, d),
                                         strict=True):
        span = dd * (kk - 1) + 1
        if isinstance(dim, str):
            if ss == 1 and lo + hi == span - 1:
                out.append(dim)
                continue
            raise NndslError(
                f"{name} needs integer spatial sizes, got '{dim}' in {format_shape(x.shape)}",
                expected=f"{LAYOUT[n]} with integer spatial sizes", received=str(x),
                hint="declare the spatial sizes, or use padding=same with stride 1",
            )
        if dim + lo + hi < span:
            raise NndslError(
                f"{name} window of {span} does not fit the padded input size {dim + lo + hi}",
                expected=f"a padded spatial size of at least {span}", received=str(x),
                hint="use a smaller kernel, padding=same, or a larger input",
            )
        out.append((dim + lo + hi - span) // ss + 1)
    channels = out_channels if out_channels is not None else x.shape[1]
    return x.with_shape((x.shape[0], channels, *out))


# ---- convolution ----------------------------------------------------------------------------


def _conv_rule(name: str, n: int) -> Any:
    def infer(x: TensorType, *, channels: int, kernel: Size, stride: Size, padding: Padding,
              dilation: Size, **_: Any) -> TensorType:
        y = window_type(name, x, n, channels, kernel, stride, dilation, padding)
        known_dim(name, x, 1, "input channels")
        positive(name, channels=channels)
        return y

    return infer


def _conv_weights(name: str, n: int) -> Any:
    def weights(x: TensorType, *, channels: int, kernel: Size, use_bias: bool,
                **_: Any) -> dict[str, WeightSpec]:
        need_rank(name, x, {n + 2: LAYOUT[n]}, RESHAPE_HINT[n])
        c_in, k = known_dim(name, x, 1, "input channels"), sizes(name, "kernel", kernel, n)
        fan_in, fan_out = c_in * math.prod(k), channels * math.prod(k)
        specs = {"weight": WeightSpec((channels, c_in, *k), fan_in=fan_in, fan_out=fan_out)}
        if use_bias:
            specs["bias"] = WeightSpec((channels,), "bias", fan_in=fan_in, fan_out=fan_out)
        return specs

    return weights


def _conv(P: Any, x: Any, weight: Any, bias: Any, name: str, n: int, kernel: Size,
          stride: Size, padding: Padding, dilation: Size) -> Any:
    k, d = sizes(name, "kernel", kernel, n), sizes(name, "dilation", dilation, n)
    y = P.conv(x, weight, sizes(name, "stride", stride, n), pads(name, padding, k, d), d)
    return y if bias is None else P.add(y, per_channel(P, bias, n + 2))


@layer_op("conv1d", infer=_conv_rule("conv1d", 1), weights=_conv_weights("conv1d", 1),
          samples=(((2, 3, 9),),),
          sample_params={"channels": 4, "kernel": 4, "padding": "same", "dilation": 2})
def conv1d(P: Any, x: Any, *, channels: int, kernel: Size, stride: Size = 1,
           padding: Padding = "valid", dilation: Size = 1, use_bias: bool = True,
           weight: Weight, bias: Weight = None) -> Any:
    """y[o, l] = b[o] + Σ_c,k W[o, c, k] x[c, s·l + d·k − pad]: cross-correlation, [batch, C, L]."""
    return _conv(P, x, weight, bias, "conv1d", 1, kernel, stride, padding, dilation)


@layer_op("conv2d", infer=_conv_rule("conv2d", 2), weights=_conv_weights("conv2d", 2),
          samples=(((2, 3, 7, 6),),),
          sample_params={"channels": 4, "kernel": (3, 2), "stride": 2, "padding": 1})
def conv2d(P: Any, x: Any, *, channels: int, kernel: Size, stride: Size = 1,
           padding: Padding = "valid", dilation: Size = 1, use_bias: bool = True,
           weight: Weight, bias: Weight = None) -> Any:
    """y = b + W ⋆ x: 2-D cross-correlation, W [channels, in_channels, kh, kw], NCHW."""
    return _conv(P, x, weight, bias, "conv2d", 2, kernel, stride, padding, dilation)


# ---- pooling --------------------------------------------------------------------------------


def _pool_rule(name: str, n: int) -> Any:
    def infer(x: TensorType, *, size: Size, stride: Size | None, padding: Padding,
              **_: Any) -> TensorType:
        y = window_type(name, x, n, None, size, stride if stride is not None else size, 1,
                        padding)
        k = sizes(name, "size", size, n)
        wide = max(max(p) - kk + 1 for kk, p in zip(k, pads(name, padding, k, (1,) * n),
                                                      strict=True))
        if wide > 0:  # a window wholly in the padding pools no input (max: −∞); ONNX refuses it
            raise NndslError(f"{name} padding {padding} is not smaller than its window {size}",
                             expected="padding < size on every axis",
                             received=f"padding={padding}, size={size}",
                             hint="use a smaller padding, or padding=same")
        return y

    return infer


def _pool_args(name: str, n: int, size: Size, stride: Size | None,
               padding: Padding) -> tuple[tuple[int, ...], tuple[int, ...], Any]:
    """(kernel, stride, pads) of a pool; the stride defaults to the window size."""
    k = sizes(name, "size", size, n)
    s = sizes(name, "stride", stride, n) if stride is not None else k
    return k, s, pads(name, padding, k, (1,) * n)


POOL_2D_SAMPLES: dict[str, Any] = {"samples": (((2, 3, 6, 5),),), "sample_params": {"size": 2}}


@layer_op("maxpool1d", infer=_pool_rule("maxpool1d", 1), samples=(((2, 3, 7),),),
          sample_params={"size": 3, "stride": 2})
def maxpool1d(P: Any, x: Any, *, size: Size, stride: Size | None = None,
              padding: Padding = 0) -> Any:
    """y[l] = max over the window x[s·l : s·l + size] (padding with −∞)."""
    return P.max_pool(x, *_pool_args("maxpool1d", 1, size, stride, padding))


@layer_op("avgpool1d", infer=_pool_rule("avgpool1d", 1), samples=(((2, 3, 7),),),
          sample_params={"size": 3, "stride": 2})
def avgpool1d(P: Any, x: Any, *, size: Size, stride: Size | None = None,
              padding: Padding = 0) -> Any:
    """y[l] = mean over the window x[s·l : s·l + size] (padded zeros counted)."""
    return P.avg_pool(x, *_pool_args("avgpool1d", 1, size, stride, padding))


@layer_op("maxpool2d", infer=_pool_rule("maxpool2d", 2), **POOL_2D_SAMPLES)
def maxpool2d(P: Any, x: Any, *, size: Size, stride: Size | None = None,
              padding: Padding = 0) -> Any:
    """y[i, j] = max over the size×size window at (s·i, s·j) (padding with −∞)."""
    return P.max_pool(x, *_pool_args("maxpool2d", 2, size, stride, padding))


@layer_op("avgpool2d", infer=_pool_rule("avgpool2d", 2), **POOL_2D_SAMPLES)
def avgpool2d(P: Any, x: Any, *, size: Size, stride: Size | None = None,
              padding: Padding = 0) -> Any:
    """y[i, j] = mean over the size×size window at (s·i, s·j) (padded zeros counted)."""
    return P.avg_pool(x, *_pool_args("avgpool2d", 2, size, stride, padding))


@layer_op("l2pool2d", infer=_pool_rule("l2pool2d", 2), **POOL_2D_SAMPLES)
def l2pool2d(P: Any, x: Any, *, size: Size, stride: Size | None = None,
             padding: Padding = 0) -> Any:
    """y[i, j] = √(Σ x² over the size×size window at (s·i, s·j)): an L2 pool."""
    k, s, p = _pool_args("l2pool2d", 2, size, stride, padding)
    total = P.mul(math.prod(k), P.avg_pool(P.mul(x, x), k, s, p))
    nonzero = P.gt(total, 0.0)  # √ has an infinite slope at 0: an all-zero window gets gradient 0
    return P.where(nonzero, P.sqrt(P.where(nonzero, total, P.ones_like(total))),
                   P.zeros_like(total))


def _global_rule(name: str) -> Any:
    def infer(x: TensorType, **_: Any) -> TensorType:
        need_min_rank(name, x, 3, "[batch, channels, *spatial]",
                      "global pools reduce the spatial axes of [batch, channels, ...]")
        return x.with_shape(x.shape[:2])

    return infer


@layer_op("global_avgpool", infer=_global_rule("global_avgpool"), samples=(((2, 3, 4, 5),),))
def global_avgpool(P: Any, x: Any) -> Any:
    """y[b, c] = mean of x[b, c, ...] over every spatial axis."""
    return P.mean(P.reshape(x, (None, None, -1)), axis=-1)


@layer_op("global_maxpool", infer=_global_rule("global_maxpool"), samples=(((2, 3, 4, 5),),))
def global_maxpool(P: Any, x: Any) -> Any:
    """y[b, c] = max of x[b, c, ...] over every spatial axis."""
    return P.max(P.reshape(x, (None, None, -1)), axis=-1)


def _kmax_type(x: TensorType, *, k: int, axis: int, **_: Any) -> TensorType:
    positive("kmaxpool", k=k)
    if not -x.rank <= axis < x.rank or axis % x.rank == 0:
        raise NndslError(f"kmaxpool axis {axis} is not a feature axis of a {x.rank}-D input",
                         expected=f"an axis in [1, {x.rank - 1}] or [{-x.rank + 1}, -1]",
                         received=f"axis={axis}")
    dim = x.shape[axis]
    if isinstance(dim, int) and dim < k:
        raise NndslError(f"kmaxpool keeps k={k} values but axis {axis} has only {dim}",
                         expected=f"k <= {dim}", received=f"k={k}")
    return x.with_shape(tuple(k if i == axis % x.rank else d for i, d in enumerate(x.shape)))


@layer_op("kmaxpool", infer=_kmax_type, samples=(((2, 3, 8),),), sample_params={"k": 3})
def kmaxpool(P: Any, x: Any, *, k: int, axis: int = -1) -> Any:
    """The k largest values of x along `axis`, kept in their original order (k-max pooling)."""
    return P.kmax(x, k, axis)
