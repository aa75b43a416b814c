"""The NumPy table for the primitive namespace: the reference meaning of every primitive."""

from __future__ import annotations

import operator
from types import SimpleNamespace
from typing import Any

import numpy as np
from nndsl.backends.numpy.memory import keep_freed_memory
from numpy.lib.stride_tricks import sliding_window_view

from nndsl.ir import NUMPY_DTYPE


def _sigmoid(x: np.ndarray) -> np.ndarray:
    # exp of a non-positive number only: no overflow for large |x| in either direction
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e)).astype(np.result_type(x), copy=False)


# a float dtype's bits as the integer of the same width (for selecting without branches)
BITS = {np.dtype(np.float16): np.int16, np.dtype(np.float32): np.int32,
        np.dtype(np.float64): np.int64}


def where(c: Any, a: Any, b: Any) -> Any:
    """np.where(c, a, b), bit for bit. For a boolean c and float arrays a, b of c's shape and
    one dtype the choice is integer arithmetic on their bits, b ^ ((a ^ b) * c), and a * c when
    b is all zeros (a relu's or dropout's): np.where takes a branch per element, which a
    random mask mispredicts half of the time (4-6x slower). NaN, infinity and -0.0 are bits
    like any others, so every value is the one np.where picks."""
    if type(c) is not np.ndarray or c.dtype != np.bool_ or type(a) is not np.ndarray \
            or type(b) is not np.ndarray or a.shape != c.shape or b.shape != c.shape \
            or a.dtype != b.dtype or a.dtype not in BITS:
        return np.where(c, a, b)
    bits = BITS[a.dtype]
    ai, bi, mask = a.view(bits), b.view(bits), c.view(np.uint8)
    if not bi.any():  # b is +0.0 everywhere
        return np.multiply(ai, mask, dtype=bits).view(a.dtype)
    out = np.bitwise_xor(ai, bi)
    np.multiply(out, mask, out=out)
    np.bitwise_xor(out, bi, out=out)
    return out.view(a.dtype)


def _erf(x: np.ndarray) -> np.ndarray:
    from math import erf

    return np.vectorize(erf, otypes=[np.result_type(x)])(x)


def _reshape(x: np.ndarray, shape: tuple[int | None, ...]) -> np.ndarray:
    return x.reshape(tuple(x.shape[i] if d is None else d for i, d in enumerate(shape)))


def _slice(x: np.ndarray, axis: int, start: int, stop: int) -> np.ndarray:
    index = [slice(None)] * x.ndim
    index[axis] = slice(start, stop)
    return x[tuple(index)]


def _pad(x: np.ndarray, pads: Any, value: float = 0.0) -> np.ndarray:
    """np.pad with a constant, without its generality's cost (it dominated small convs)."""
    pads = [tuple(p) for p in pads]
    if not any(lo or hi for lo, hi in pads):
        return np.asarray(x)
    x = np.asarray(x)
    out = np.full([n + lo + hi for n, (lo, hi) in zip(x.shape, pads, strict=True)], value,
                  dtype=x.dtype)
    out[tuple(slice(lo, lo + n) for n, (lo, _) in zip(x.shape, pads, strict=True))] = x
    return out


def pad_trailing(x: np.ndarray, padding: Any, value: float = 0.0) -> np.ndarray:
    """Pad the trailing len(padding) axes ((lo, hi) each); the leading axes are left alone."""
    return _pad(x, [(0, 0)] * (np.ndim(x) - len(padding)) + [tuple(p) for p in padding], value)


def channels_last(x: np.ndarray, padding: Any, value: float = 0.0) -> np.ndarray:
    """x [N, C, *S] padded on its spatial axes, as a contiguous [N, *S, C] array (one copy)."""
    moved = np.moveaxis(np.asarray(x), 1, -1)
    return np.ascontiguousarray(_pad(moved, [(0, 0), *[tuple(p) for p in padding], (0, 0)],
                                     value))


def _windows(x: np.ndarray, kernel: tuple[int, ...], stride: tuple[int, ...],
             dilation: tuple[int, ...] | None = None) -> np.ndarray:
    """[N, C, *out, *K] view of every (strided, dilated) window over the trailing axes."""
    k = len(kernel)
    dilation = dilation or (1,) * k
    span = tuple((kk - 1) * d + 1 for kk, d in zip(kernel, dilation, strict=True))
    view = sliding_window_view(x, span, axis=tuple(range(x.ndim - k, x.ndim)))
    out_index = tuple(slice(None, None, s) for s in stride)
    win_index = tuple(slice(None, None, d) for d in dilation)
    return view[(slice(None), slice(None), *out_index, *win_index)]


def patches(x: np.ndarray, kernel: tuple[int, ...], stride: tuple[int, ...],
            dilation: tuple[int, ...] | None, padding: Any) -> np.ndarray:
    """[N, *out, *K, C]: every (strided, dilated) window of x [N, C, *S] after padding, with
    the channels last (im2col). Copying whole pixels per kernel offset is several times faster
    than copying a channels-first window view, a few numbers at a time."""
    k = len(kernel)
    dilation = dilation or (1,) * k
    xp = channels_last(x, padding)
    out = [(n - d * (kk - 1) - 1) // s + 1
           for n, kk, s, d in zip(xp.shape[1:-1], kernel, stride, dilation, strict=True)]
    cols = np.empty((xp.shape[0], *out, *kernel, xp.shape[-1]), dtype=xp.dtype)
    for offset in np.ndindex(*kernel):
        index = tuple(slice(o * d, o * d + s * (n - 1) + 1, s)
                      for o, d, s, n in zip(offset, dilation, stride, out, strict=True))
        cols[(slice(None),) * (1 + k) + offset] = xp[(slice(None), *index)]
    return cols


def _conv(x: np.ndarray, w: np.ndarray, stride: tuple[int, ...], padding: Any,
          dilation: tuple[int, ...]) -> np.ndarray:
    return conv_and_patches(x, w, stride, padding, dilation)[0]


def conv_and_patches(x: np.ndarray, w: np.ndarray, stride: tuple[int, ...], padding: Any,
                     dilation: tuple[int, ...] | None) -> tuple[np.ndarray, np.ndarray]:
    """The convolution and the patches it multiplied (reverse mode keeps them for dw)."""
    k = len(stride)
    cols = patches(x, tuple(w.shape[2:]), stride, dilation, padding)  # [N, *out, *K, C]
    window = list(range(1 + k, 2 + 2 * k))  # *K and C, against w's [O, *K, C]
    out = np.tensordot(cols, np.moveaxis(w, 1, -1), axes=(window, list(range(1, 2 + k))))
    return np.moveaxis(out, -1, 1), cols  # [N, O, *out]


def _pool(reduce: Any, pad_value: float) -> Any:
    def pool(x: np.ndarray, kernel: tuple[int, ...], stride: tuple[int, ...], padding: Any) -> Any:
        k = len(kernel)
        x = pad_trailing(x, padding, pad_value)
        win = _windows(x, kernel, stride)
        return reduce(win, axis=tuple(range(x.ndim, x.ndim + k)))

    return pool


def _max_pool(x: np.ndarray, kernel: tuple[int, ...], stride: tuple[int, ...],
              padding: Any) -> np.ndarray:
    """The largest value of each window as a running maximum over the kernel offsets, one
    strided view each: the same values as a max over the window view, several times faster
    (NumPy reduces a small trailing window of a strided view slowly)."""
    k = len(kernel)
    x = pad_trailing(x, padding, -np.inf)
    sizes = [(n - kk) // s + 1 for n, kk, s in zip(x.shape[-k:], kernel, stride, strict=True)]
    lead = (slice(None),) * (x.ndim - k)
    out = None
    for offset in np.ndindex(*kernel):
        view = x[lead + tuple(slice(o, o + s * (n - 1) + 1, s)
                              for o, s, n in zip(offset, stride, sizes, strict=True))]
        out = view if out is None else np.maximum(out, view)
    return np.array(out)


def _kmax(x: np.ndarray, k: int, axis: int) -> np.ndarray:
    if x.shape[axis] < k:  # a symbolic size the checker could not compare with k
        raise ValueError(f"k={k} is more than the {x.shape[axis]} values along axis {axis}")
    idx = np.sort(np.argsort(-x, axis=axis, kind="stable").take(range(k), axis=axis), axis=axis)
    return np.take_along_axis(x, idx, axis=axis)


def _one_hot(indices: np.ndarray, depth: int, dtype: str = "f32") -> np.ndarray:
    return (np.asarray(indices)[..., None] == np.arange(depth)).astype(NUMPY_DTYPE[dtype])


def make_numpy_prims(training: bool = False, seed: int = 0) -> SimpleNamespace:
    """A fresh NumPy primitive table; `training` switches dropout/noise/batch-norm behaviour."""
    keep_freed_memory()  # once per process: a step's arrays reuse pages (backends/numpy/memory)
    rng = np.random.default_rng(seed)
    return SimpleNamespace(
        **_FIXED_PRIMS,
        training=training,
        rng=rng,
        random_uniform_like=lambda x: rng.random(np.shape(x)).astype(np.result_type(x)),
        random_normal_like=lambda x: rng.standard_normal(np.shape(x)).astype(np.result_type(x)),
    )


# the table's primitives that draw nothing: made once (a training step makes a table per step)
_FIXED_PRIMS: dict[str, Any] = dict(
    backend="numpy",
    add=operator.add, sub=operator.sub, mul=operator.mul, div=operator.truediv,
    pow=operator.pow, maximum=np.maximum, minimum=np.minimum,
    neg=operator.neg, exp=np.exp, log=np.log, sqrt=np.sqrt, abs=np.abs, sign=np.sign,
    tanh=np.tanh, sigmoid=_sigmoid, atan=np.arctan, sin=np.sin, cos=np.cos, erf=_erf,
    stop_gradient=np.asarray,
    gt=operator.gt, ge=operator.ge, lt=operator.lt, le=operator.le, eq=np.equal,
    where=where,
    cast=lambda x, dtype: np.asarray(x).astype(NUMPY_DTYPE[dtype]),
    sum=lambda x, axis=None, keepdims=False: np.sum(x, axis=axis, keepdims=keepdims),
    mean=lambda x, axis=None, keepdims=False: np.mean(x, axis=axis, keepdims=keepdims),
    max=lambda x, axis=None, keepdims=False: np.max(x, axis=axis, keepdims=keepdims),
    argmax=lambda x, axis, keepdims=False: np.argmax(x, axis=axis, keepdims=keepdims),
    shape=lambda x: tuple(np.shape(x)),
    reshape=_reshape,
    transpose=lambda x, axes=None: np.transpose(x, axes),
    concat=lambda xs, axis: np.concatenate(list(xs), axis=axis),
    slice=_slice,
    flip=lambda x, axis: np.flip(x, axis=axis),
    pad=_pad,
    take=lambda x, indices, axis=0: np.take(x, np.asarray(indices).astype(np.int64), axis),
    one_hot=_one_hot,
    zeros_like=np.zeros_like, ones_like=np.ones_like,
    constant=lambda value, dtype="f32": np.asarray(value, dtype=NUMPY_DTYPE[dtype]),
    matmul=np.matmul,
    conv=_conv,
    max_pool=_max_pool,
    avg_pool=_pool(np.mean, 0.0),
    kmax=_kmax,
)
