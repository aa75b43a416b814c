"""Vector-Jacobian products of the primitives: how a cotangent flows back through each one.

`VJPS[name]` holds one rule per positional operand of primitive `name`, in order; `None` marks
an operand that takes no gradient (a condition, indices, a shape, an axis). A rule is called as
`rule(g, y, *args, **kwargs)` with the cotangent `g` (y's shape), the forward output `y` and the
call's own arguments (plain arrays, Python numbers and settings), and returns the gradient of
its operand. It may return a broadcast shape: `sum_to` folds it back onto the operand (that is
how broadcasting is differentiated), and the operand's dtype is restored. Primitives missing
from `VJPS` (comparisons, argmax, shape, one_hot, constants, randomness, sign) carry no
gradient: `NOT_DIFFERENTIABLE` lists them, and the two sets together are `nndsl.prims.PRIMS`.

Conventions where the derivative is not unique:

- ties: `max` reductions and `maximum`/`minimum` split the cotangent evenly among equal
  elements (torch's amax/maximum rule: two equal inputs of `maximum` get half each);
  `max_pool` routes each window's cotangent to its first maximal element in row-major order
  (torch and ONNX MaxPool record one index); `kmax` routes to the positions it selected, whose
  ties go to the lower index, as in the forward.
- `abs` has slope 0 at 0, `sign` none at all; `sqrt` at 0 gives inf (the true slope).
- `pow(a, b)`: d/da = b a^(b-1), taken as 0 where b == 0; d/db = a^b ln a for a > 0 and 0 for
  a <= 0 (a^b is not real-differentiable in b there; torch gives NaN for a < 0).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
from nndsl.backends.numpy.prims import BITS, channels_last, conv_and_patches, patches

Rule = Callable[..., Any]
Pads = Any  # ((lo, hi), ...) per spatial axis

NOT_DIFFERENTIABLE = frozenset({
    "gt", "ge", "lt", "le", "eq", "argmax", "shape", "one_hot", "zeros_like", "ones_like",
    "constant", "sign", "random_uniform_like", "random_normal_like",
    "stop_gradient",  # its whole point: the value passes, the gradient is 0
})


# ---- helpers --------------------------------------------------------------------------------


def sum_to(g: Any, shape: tuple[int, ...]) -> np.ndarray:
    """Undo broadcasting: sum g over the axes that broadcasting added or stretched from 1."""
    g = np.asarray(g)
    if g.shape == shape:
        return g
    if g.ndim > len(shape):
        g = g.sum(axis=tuple(range(g.ndim - len(shape))))
    stretched = tuple(i for i, (a, b) in enumerate(zip(g.shape, shape, strict=True))
                      if b == 1 and a != 1)
    if stretched:
        g = g.sum(axis=stretched, keepdims=True)
    return g if g.shape == shape else np.broadcast_to(g, shape)


def _axes(ndim: int, axis: int | tuple[int, ...] | None) -> tuple[int, ...]:
    if axis is None:
        return tuple(range(ndim))
    return tuple(a % ndim for a in ((axis,) if isinstance(axis, int) else axis))


def _unreduce(g: Any, x: Any, axis: Any, keepdims: bool) -> np.ndarray:
    """A reduction's cotangent (or output) with the reduced axes restored, broadcast to x."""
    shape = x.shape if type(x) is np.ndarray else np.shape(x)
    g = np.asarray(g)
    if not keepdims:  # the reduced axes put back as length 1 (np.expand_dims' view)
        axes = _axes(len(shape), axis)
        g = g.reshape(tuple(1 if i in axes else n for i, n in enumerate(shape)))
    if g.shape == shape:
        return g
    if math.prod(shape) <= SMALL:  # copied: cheaper than np.broadcast_to's checks
        out = np.empty(shape, g.dtype)
        np.copyto(out, g)
        return out
    return np.broadcast_to(g, shape)


SMALL = 1 << 14  # elements: an array this small is copied rather than viewed (_unreduce)


def _fold(patches: np.ndarray, shape: tuple[int, ...], kernel: tuple[int, ...],
          stride: tuple[int, ...], dilation: tuple[int, ...]) -> np.ndarray:
    """Add window patches [..., *out, *kernel] back onto an array of `shape` (col2im).

    The inverse bookkeeping of `patches`: one strided, vectorised add per kernel offset.
    """
    k = len(kernel)
    out = np.zeros(shape, dtype=patches.dtype)
    sizes = patches.shape[-2 * k:-k]
    lead = (slice(None),) * (len(shape) - k)
    for offset in np.ndindex(*kernel):
        out[lead + _window(offset, dilation, stride, sizes)] += patches[(..., *offset)]
    return out


def _window(offset: tuple[int, ...], dilation: Any, stride: Any,
            sizes: tuple[int, ...]) -> tuple[slice, ...]:
    """The input positions that kernel offset `offset` meets, over every output position."""
    return tuple(slice(o * d, o * d + s * (n - 1) + 1, s)
                 for o, d, s, n in zip(offset, dilation, stride, sizes, strict=True))


def _crop(g: np.ndarray, pads: Pads) -> np.ndarray:
    """Drop the padding ((lo, hi) per trailing axis) that the forward added."""
    k = len(pads)
    index = tuple(slice(lo, g.shape[g.ndim - k + i] - hi) for i, (lo, hi) in enumerate(pads))
    return g[(slice(None),) * (g.ndim - k) + index]


def _padded(shape: tuple[int, ...], pads: Pads) -> tuple[int, ...]:
    k = len(pads)
    return (*shape[:-k], *(n + lo + hi for n, (lo, hi) in zip(shape[-k:], pads, strict=True)))


# ---- rules of the coarse primitives ---------------------------------------------------------


def _masked(g: Any, keep: Any) -> np.ndarray:
    """np.where(keep, g, 0.0), bit for bit, without a branch per element (a relu's random mask
    makes np.where's branches mispredict): g's bits times the 0/1 mask, which leaves each
    kept value (NaN, infinity and -0.0 included) as it is and makes the others +0.0."""
    g = np.asarray(g)
    bits = BITS.get(g.dtype)
    if bits is None or type(keep) is not np.ndarray or keep.dtype != np.bool_ or (
            keep.shape != g.shape and np.broadcast_shapes(g.shape, keep.shape) != g.shape):
        return np.where(keep, g, 0.0)
    return np.multiply(g.view(bits), keep.view(np.uint8), dtype=bits).view(g.dtype)


def _tie_share(a: Any, b: Any) -> np.ndarray:
    """a's share of maximum(a, b)'s cotangent: 1 where a wins, ½ on a tie, 0 where b wins."""
    return np.where(np.greater(a, b), 1.0, np.where(np.equal(a, b), 0.5, 0.0))


def _max_x(g: Any, y: Any, x: Any, axis: Any = None, keepdims: bool = False) -> np.ndarray:
    hit = np.asarray(x) == _unreduce(y, x, axis, keepdims)
    ties = hit.sum(axis=_axes(hit.ndim, axis), keepdims=True)
    return _unreduce(g, x, axis, keepdims) * hit / ties


def _matmul_operands(g: Any, a: Any, b: Any) -> tuple[Any, Any, Any]:
    """a, b and g with the axes NumPy's matmul drops for 1-D operands put back."""
    a2 = a[None, :] if np.ndim(a) == 1 else a
    b2 = b[:, None] if np.ndim(b) == 1 else b
    g2 = np.asarray(g)
    if np.ndim(b) == 1:
        g2 = g2[..., None]
    if np.ndim(a) == 1:
        g2 = np.expand_dims(g2, -2)
    return a2, b2, g2


def _matrices(g: Any, a: Any, b: Any) -> bool:
    """Two matrices and a matrix cotangent: the product rules without `_matmul_operands`."""
    return type(a) is np.ndarray and type(b) is np.ndarray and type(g) is np.ndarray and \
        a.ndim == 2 and b.ndim == 2 and g.ndim == 2


def _matmul_a(g: Any, y: Any, a: Any, b: Any) -> np.ndarray:
    if _matrices(g, a, b):
        return g @ b.T  # the same product as below, on the same views
    a2, b2, g2 = _matmul_operands(g, a, b)
    ga = g2 @ np.swapaxes(b2, -1, -2)
    return ga[..., 0, :] if np.ndim(a) == 1 else ga


def _matmul_b(g: Any, y: Any, a: Any, b: Any) -> np.ndarray:
    if _matrices(g, a, b):
        return a.T @ g
    a2, b2, g2 = _matmul_operands(g, a, b)
    gb = np.swapaxes(a2, -1, -2) @ g2
    return gb[..., 0] if np.ndim(b) == 1 else gb


def _conv_x(g: Any, y: Any, x: Any, w: Any, stride: Any, padding: Pads,
            dilation: Any = None, cols: Any = None) -> np.ndarray:
    """Each output position's cotangent spread over its window: per kernel offset, the
    [pixels, out channels] @ [out channels, channels] product (one batched matmul for all
    offsets, each offset's result contiguous), added channels-last onto the padded input, so
    that every add moves runs of whole pixels rather than a few strided numbers."""
    g = np.asarray(g)
    k = len(stride)
    out_ch, channels, *kernel = np.shape(w)
    batch, _, *spatial = np.shape(x)
    sizes = g.shape[2:]
    rows = np.moveaxis(g, 1, -1).reshape(-1, out_ch)  # [N * out, O]
    taps = np.moveaxis(np.asarray(w), (0, 1), (-2, -1)).reshape(-1, out_ch, channels)
    parts = np.matmul(rows, taps)  # [*K, N * out, C]
    pads = [tuple(p) for p in padding]
    padded = [n + lo + hi for n, (lo, hi) in zip(spatial, pads, strict=True)]
    full = np.zeros((batch, *padded, channels), dtype=parts.dtype)
    dilation = tuple(dilation or (1,) * k)
    for part, offset in zip(parts, np.ndindex(*kernel), strict=True):
        full[(slice(None), *_window(offset, dilation, stride, sizes))] += \
            part.reshape(batch, *sizes, channels)
    return _crop(np.moveaxis(full, -1, 1), pads)


def _conv_w(g: Any, y: Any, x: Any, w: Any, stride: Any, padding: Pads,
            dilation: Any = None, cols: Any = None) -> np.ndarray:
    """`cols`: the forward's patches of x (SAVING below), else made again."""
    k = len(stride)
    if cols is None:  # [N, *out, *K, C]
        cols = patches(x, tuple(np.shape(w)[2:]), tuple(stride), dilation, padding)
    summed = [0, *range(2, 2 + k)]  # batch and output positions
    return np.moveaxis(np.tensordot(g, cols, axes=(summed, list(range(1 + k)))), -1, 1)


def _max_pool_x(g: Any, y: Any, x: Any, kernel: Any, stride: Any, padding: Pads) -> np.ndarray:
    """Each window's cotangent to its first element equal to the window's maximum `y`, the
    kernel offsets taken in row-major order (np.argmax's choice over the flattened window,
    NaN counting as the maximum as it does there): one strided view per offset, laid out
    channels-last so that each compares and adds whole pixels, not a few strided numbers.
    `y` is one of its window's values, so a window not placed before the last offset is
    placed there without comparing; windows that tile x without overlap write their values
    instead of adding them to zeros."""
    k = len(kernel)
    xp = channels_last(x, padding, -np.inf)
    g, y = (channels_last(a, [(0, 0)] * k) for a in (g, y))
    nan = np.isnan(y)
    nan = nan if nan.any() else None
    sizes = y.shape[1:1 + k]
    tiled = all(s == kk and n * s == m for s, kk, n, m in
                zip(stride, kernel, sizes, xp.shape[1:1 + k], strict=True))
    dx = (np.empty if tiled else np.zeros)(xp.shape, dtype=g.dtype)
    offsets = list(np.ndindex(*kernel))
    free = None  # windows whose maximum is not placed yet (None: all of them)
    for i, offset in enumerate(offsets):
        index = (slice(None), *_window(offset, (1,) * k, stride, sizes), ...)
        if i == len(offsets) - 1:
            hit = free if free is not None else np.ones(y.shape, dtype=bool)
        else:
            view = xp[index]
            hit = view == y if nan is None else (view == y) | (nan & np.isnan(view))
            if free is not None:
                hit &= free
            free = ~hit if free is None else np.logical_xor(free, hit, out=free)
        if tiled:
            dx[index] = _masked(g, hit)
        else:
            dx[index] += _masked(g, hit)
    return _crop(np.moveaxis(dx, -1, 1), padding)


def _avg_pool_x(g: Any, y: Any, x: Any, kernel: Any, stride: Any, padding: Pads) -> np.ndarray:
    k = len(kernel)
    g = np.asarray(g) / math.prod(kernel)  # pads count: every window divides by its full size
    patches = np.broadcast_to(np.expand_dims(g, tuple(range(g.ndim, g.ndim + k))),
                              g.shape + tuple(kernel))
    full = _fold(patches, _padded(np.shape(x), padding), tuple(kernel), tuple(stride), (1,) * k)
    return _crop(full, padding)


def _kmax_x(g: Any, y: Any, x: Any, k: int, axis: int) -> np.ndarray:
    # the forward's own selection (backends/numpy/prims.py `_kmax`): stable, lower index first
    idx = np.sort(np.argsort(-x, axis=axis, kind="stable").take(range(k), axis=axis), axis=axis)
    dx = np.zeros(np.shape(x), dtype=np.result_type(g))
    np.put_along_axis(dx, idx, g, axis=axis)
    return dx


def _take_x(g: Any, y: Any, x: Any, indices: Any, axis: int = 0) -> np.ndarray:
    idx = np.asarray(indices).astype(np.int64).ravel()
    shape = np.shape(x)
    axis %= len(shape)
    rows = np.asarray(g).reshape(*shape[:axis], idx.size, *shape[axis + 1:])
    dx = np.zeros((shape[axis], *shape[:axis], *shape[axis + 1:]), dtype=rows.dtype)
    np.add.at(dx, idx, np.moveaxis(rows, axis, 0))  # repeated indices add up
    return np.moveaxis(dx, 0, axis)


def _slice_x(g: Any, y: Any, x: Any, axis: int, start: Any, stop: Any) -> np.ndarray:
    dx = np.zeros(np.shape(x), dtype=np.result_type(g))
    index = [slice(None)] * dx.ndim
    index[axis] = slice(start, stop)
    dx[tuple(index)] = g
    return dx


def _concat_xs(g: Any, y: Any, xs: list[Any], axis: int) -> list[np.ndarray]:
    ends = np.cumsum([np.shape(a)[axis] for a in xs])[:-1]
    return np.split(np.asarray(g), ends, axis=axis)


def _transpose_x(g: Any, y: Any, x: Any, axes: Any = None) -> np.ndarray:
    if axes is None:
        return np.transpose(g)
    return np.transpose(g, np.argsort([a % np.ndim(x) for a in axes]))


def _sqrt_x(g: Any, y: Any, x: Any) -> np.ndarray:
    with np.errstate(divide="ignore"):  # inf at 0 is the true slope, not an accident
        return g / (2.0 * y)


def _pow_a(g: Any, y: Any, a: Any, b: Any) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return g * np.where(np.equal(b, 0), 0.0, b * np.power(a, np.subtract(b, 1)))


def _pow_b(g: Any, y: Any, a: Any, b: Any) -> np.ndarray:
    positive = np.greater(a, 0)
    return g * np.where(positive, y * np.log(np.where(positive, a, 1.0)), 0.0)


TWO_OVER_SQRT_PI = 2.0 / math.sqrt(math.pi)

def _conv_saving(x: Any, w: Any, stride: Any, padding: Pads,
                 dilation: Any = None) -> tuple[np.ndarray, dict[str, Any]]:
    """The conv primitive's value, and its patches for `_conv_w` (not made twice)."""
    y, cols = conv_and_patches(x, w, stride, padding, dilation)
    return y, {"cols": cols}


# primitives whose forward keeps something for its rules: name -> forward returning
# (value, keyword arguments added to the rules' call)
SAVING: dict[str, Callable[..., tuple[Any, dict[str, Any]]]] = {"conv": _conv_saving}

VJPS: dict[str, tuple[Rule | None, ...]] = {
    # elementwise arithmetic (either side may be a Python number: it gets no rule call)
    "add": (lambda g, y, a, b: g, lambda g, y, a, b: g),
    "sub": (lambda g, y, a, b: g, lambda g, y, a, b: -g),
    "mul": (lambda g, y, a, b: g * b, lambda g, y, a, b: g * a),
    "div": (lambda g, y, a, b: g / b, lambda g, y, a, b: -g * y / b),
    "pow": (_pow_a, _pow_b),
    "maximum": (lambda g, y, a, b: g * _tie_share(a, b), lambda g, y, a, b: g * _tie_share(b, a)),
    "minimum": (lambda g, y, a, b: g * _tie_share(b, a), lambda g, y, a, b: g * _tie_share(a, b)),
    # elementwise unary
    "neg": (lambda g, y, x: -g,),
    "exp": (lambda g, y, x: g * y,),
    "log": (lambda g, y, x: g / x,),
    "sqrt": (_sqrt_x,),
    "abs": (lambda g, y, x: g * np.sign(x),),
    "tanh": (lambda g, y, x: g * (1.0 - y * y),),
    "sigmoid": (lambda g, y, x: g * y * (1.0 - y),),
    "atan": (lambda g, y, x: g / (1.0 + x * x),),
    "sin": (lambda g, y, x: g * np.cos(x),),
    "cos": (lambda g, y, x: -g * np.sin(x),),
    "erf": (lambda g, y, x: g * TWO_OVER_SQRT_PI * np.exp(-x * x),),
    # selection and conversion
    "where": (None, lambda g, y, c, a, b: _masked(g, c),
              lambda g, y, c, a, b: _masked(g, np.logical_not(c))),
    "cast": (lambda g, y, x, dtype: g,),
    # reductions
    "sum": (lambda g, y, x, axis=None, keepdims=False: _unreduce(g, x, axis, keepdims),),
    "mean": (lambda g, y, x, axis=None, keepdims=False:
             _unreduce(g, x, axis, keepdims) * (np.size(y) / np.size(x)),),
    "max": (_max_x,),
    # shape and movement
    "reshape": (lambda g, y, x, shape: np.reshape(g, np.shape(x)),),
    "transpose": (_transpose_x,),
    "concat": (_concat_xs,),
    "slice": (_slice_x,),
    "flip": (lambda g, y, x, axis: np.flip(g, axis=axis),),
    "pad": (lambda g, y, x, pads, value=0.0: g[tuple(slice(lo, lo + n) for (lo, _), n
                                                    in zip(pads, np.shape(x), strict=True))],),
    "take": (_take_x, None),
    # linear algebra, convolution and pooling
    "matmul": (_matmul_a, _matmul_b),
    "conv": (_conv_x, _conv_w),
    "max_pool": (_max_pool_x,),
    "avg_pool": (_avg_pool_x,),
    "kmax": (_kmax_x,),
}
