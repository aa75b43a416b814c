"""The torch table for the primitive namespace: the NumPy meanings (backends/numpy/prims.py),
differentiable by autograd, so one op definition trains on torch and is checked against NumPy.

Type promotion follows NumPy, not torch: the two differ for mixed operands (int64 tensor + 1.5 is
float64 in NumPy and float32 in torch; int64 + float32 tensors is float64 in NumPy), and the
NumPy table is the reference. Python numbers stay "weak" in both, so `mul(0.5, x)` keeps a
float32 `x` float32. This is the only module of nndsl that imports torch.
"""

from __future__ import annotations

import functools
import math
import operator
from collections.abc import Callable, Sequence
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from nndsl.backends.torch import pooling

from nndsl.ir import NUMPY_DTYPE

TORCH_DTYPE = {"f32": torch.float32, "f64": torch.float64, "i64": torch.int64}
_NUMPY_OF = {
    torch.float16: np.dtype("float16"), torch.float32: np.dtype("float32"),
    torch.float64: np.dtype("float64"), torch.int32: np.dtype("int32"),
    torch.int64: np.dtype("int64"), torch.bool: np.dtype("bool"), torch.uint8: np.dtype("uint8"),
    torch.int8: np.dtype("int8"), torch.int16: np.dtype("int16"),
}
_TORCH_OF = {v: k for k, v in _NUMPY_OF.items()}
# what autocast computes in besides NumPy's dtypes (NumPy has no bfloat16): such operands
# promote by torch's rules (bf16 with f32 is f32), as autocast expects
_AUTOCAST = (torch.bfloat16,)
_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
_MAX_POOL = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}
_AVG_POOL = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}
Pads = Sequence[Sequence[int]]


def _np_type(a: Any) -> Any:
    """What np.result_type should see: a dtype for arrays, the value itself for Python numbers."""
    if isinstance(a, torch.Tensor):
        return _NUMPY_OF[a.dtype]
    if isinstance(a, np.ndarray | np.generic):
        return a.dtype
    return a


def _floats_agree(x: Any, y: Any) -> bool:
    """True when torch already combines x and y as NumPy would, so `promote` has nothing to do:
    a floating tensor with a tensor of its dtype or with a Python number (the common case of
    every training step, checked first because promote's general test costs more than the
    arithmetic on a small tensor)."""
    if isinstance(x, torch.Tensor):
        if isinstance(y, torch.Tensor):
            return x.dtype == y.dtype and x.dtype.is_floating_point
        return isinstance(y, float | int) and x.dtype.is_floating_point
    return isinstance(y, torch.Tensor) and isinstance(x, float | int) and \
        y.dtype.is_floating_point


def _is_integral(dtype: torch.dtype) -> bool:
    return not (dtype.is_floating_point or dtype.is_complex)


def _make_tensor_helpers(device: torch.device) -> SimpleNamespace:
    """Conversion helpers bound to the table's device (constants and lone Python numbers)."""

    def tensor(a: Any, dtype: torch.dtype | None = None, like: Any = None) -> torch.Tensor:
        if isinstance(a, torch.Tensor):
            return a if dtype is None or a.dtype == dtype else a.to(dtype)
        dev = like.device if isinstance(like, torch.Tensor) else device
        if dtype is None:  # NumPy's reading of a bare number or array (float -> f64, int -> i64)
            arr = np.asarray(a)
            return torch.tensor(arr, device=dev)
        return torch.tensor(np.asarray(a), dtype=dtype, device=dev)

    def promote(*args: Any, true_div: bool = False) -> list[Any]:
        """Cast operands to NumPy's result type; Python numbers stay numbers when a tensor is
        present (torch treats them as weak too), otherwise everything becomes a tensor."""
        tensors = [a for a in args if isinstance(a, torch.Tensor)]
        if (tensors and all(t.dtype == tensors[0].dtype for t in tensors)
                and all(isinstance(a, torch.Tensor | float | int) for a in args)
                and (tensors[0].dtype.is_floating_point
                     or not (true_div or any(isinstance(a, float) for a in args)))):
            return list(args)  # fast path: one dtype, and no scalar that could widen it
        if any(t.dtype in _AUTOCAST for t in tensors):  # autocast's narrow floats: torch's
            tdtype = functools.reduce(torch.promote_types, [t.dtype for t in tensors])
        else:
            target = np.result_type(*[_np_type(a) for a in args])
            if true_div and target.kind in "biu":
                target = np.dtype("float64")
            tdtype = _TORCH_OF[target]
        like = tensors[0] if tensors else None
        out: list[Any] = []
        for a in args:
            if isinstance(a, torch.Tensor) or not tensors or isinstance(a, np.ndarray | np.generic):
                out.append(tensor(a, tdtype, like))
            else:
                out.append(a)
        return out

    return SimpleNamespace(tensor=tensor, promote=promote)


def _flat_pads(pads: Pads) -> list[int]:
    """((lo, hi), ...) for leading-to-trailing axes -> F.pad's trailing-axis-first flat list."""
    flat: list[int] = []
    for lo, hi in reversed([tuple(p) for p in pads]):
        flat += [int(lo), int(hi)]
    return flat


def _axes(ndim: int, axis: int | Sequence[int] | None) -> tuple[int, ...]:
    if axis is None:
        return tuple(range(ndim))
    if isinstance(axis, int):
        return (axis % ndim,) if ndim else ()
    return tuple(a % ndim for a in axis)


def make_torch_prims(
    training: bool = False,
    generator: torch.Generator | None = None,
    device: str | torch.device = "cpu",
    numpy_source: Callable[[], np.random.Generator] | None = None,
    global_draw: Callable[[tuple[int, ...]], tuple[tuple[int, ...], Any] | None] | None = None,
) -> SimpleNamespace:
    """A torch primitive table; `generator` seeds the training-mode random primitives, unless
    `numpy_source` gives the NumPy generator to draw them from instead (the reference stream:
    the same draws as the NumPy table, moved to the device). `global_draw` (a data-parallel
    rank's) maps a random array's shape to the global batch's shape and this rank's slice of
    it, so that ranks draw what one process would."""
    dev = torch.device(device)
    h = _make_tensor_helpers(dev)
    tensor, promote = h.tensor, h.promote

    def binary(fn: Callable[[Any, Any], Any], true_div: bool = False) -> Callable[[Any, Any], Any]:
        def prim(x: Any, y: Any) -> Any:
            if not _floats_agree(x, y):
                x, y = promote(x, y, true_div=true_div)
            return fn(x, y)

        return prim

    def tensor_binary(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> Any:
        """For torch functions that want two tensors (maximum, minimum)."""

        def prim(x: Any, y: Any) -> torch.Tensor:
            x, y = promote(x, y)
            like = x if isinstance(x, torch.Tensor) else y
            return fn(tensor(x, like.dtype, like), tensor(y, like.dtype, like))

        return prim

    def floating(fn: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[Any], torch.Tensor]:
        """Float-valued unary functions: integers and bools become float64, as in NumPy."""

        def prim(x: Any) -> torch.Tensor:
            x = tensor(x)
            return fn(x.to(torch.float64) if _is_integral(x.dtype) else x)

        return prim

    def unary(fn: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[Any], torch.Tensor]:
        return lambda x: fn(tensor(x))

    def where(cond: Any, x: Any, y: Any) -> torch.Tensor:
        cond = tensor(cond)
        x, y = promote(x, y)
        like = next((a for a in (x, y) if isinstance(a, torch.Tensor)), cond)
        dtype = x.dtype if isinstance(x, torch.Tensor) else (
            y.dtype if isinstance(y, torch.Tensor) else None)
        return torch.where(cond if cond.dtype == torch.bool else cond != 0,
                           tensor(x, dtype, like), tensor(y, dtype, like))

    def cast(x: Any, dtype: str) -> torch.Tensor:
        return tensor(x, TORCH_DTYPE[dtype])

    def reduce_sum(x: Any, axis: Any = None, keepdims: bool = False) -> torch.Tensor:
        x = tensor(x)
        if x.dtype == torch.bool:  # NumPy counts booleans as int64
            x = x.to(torch.int64)
        dims = _axes(x.ndim, axis)
        return torch.sum(x, dim=dims, keepdim=keepdims) if dims else x

    def reduce_mean(x: Any, axis: Any = None, keepdims: bool = False) -> torch.Tensor:
        x = tensor(x)
        if _is_integral(x.dtype):
            x = x.to(torch.float64)
        dims = _axes(x.ndim, axis)
        return torch.mean(x, dim=dims, keepdim=keepdims) if dims else x

    def reduce_max(x: Any, axis: Any = None, keepdims: bool = False) -> torch.Tensor:
        x = tensor(x)
        dims = _axes(x.ndim, axis)
        return torch.amax(x, dim=dims, keepdim=keepdims) if dims else x

    def argmax(x: Any, axis: int | None, keepdims: bool = False) -> torch.Tensor:
        x = tensor(x)
        if axis is None:  # NumPy: index into the flattened array
            out = torch.argmax(x.reshape(-1))
            return out.reshape((1,) * x.ndim) if keepdims else out
        return torch.argmax(x, dim=axis, keepdim=keepdims)

    def reshape(x: Any, shape: Sequence[int | None]) -> torch.Tensor:
        x = tensor(x)
        return x.reshape(tuple(x.shape[i] if d is None else int(d) for i, d in enumerate(shape)))

    def transpose(x: Any, axes: Sequence[int] | None = None) -> torch.Tensor:
        x = tensor(x)
        perm = tuple(reversed(range(x.ndim))) if axes is None else _axes(x.ndim, axes)
        return x.permute(perm)

    def concat(xs: Sequence[Any], axis: int) -> torch.Tensor:
        return torch.cat([tensor(a) for a in promote(*xs)], dim=axis)

    def slice_(x: Any, axis: int, start: int | None, stop: int | None) -> torch.Tensor:
        x = tensor(x)
        index = [slice(None)] * x.ndim
        index[axis] = slice(start, stop)
        return x[tuple(index)]

    def pad(x: Any, pads: Pads, value: float = 0.0) -> torch.Tensor:
        x = tensor(x)
        flat = _flat_pads(pads)
        return F.pad(x, flat, mode="constant", value=value) if any(flat) else x

    def take(x: Any, indices: Any, axis: int = 0) -> torch.Tensor:
        x = tensor(x)
        idx = tensor(indices, like=x).to(torch.int64)  # NumPy casts (truncates) indices too
        axis %= x.ndim
        idx = torch.where(idx < 0, idx + x.shape[axis], idx)
        out = torch.index_select(x, axis, idx.reshape(-1))
        return out.reshape(x.shape[:axis] + idx.shape + x.shape[axis + 1:])

    def one_hot(indices: Any, depth: int, dtype: str = "f32") -> torch.Tensor:
        idx = tensor(indices)
        return (idx[..., None] == torch.arange(depth, device=idx.device)).to(TORCH_DTYPE[dtype])

    def constant(value: Any, dtype: str = "f32") -> torch.Tensor:
        if isinstance(value, torch.Tensor):
            return value.to(device=dev, dtype=TORCH_DTYPE[dtype])
        return torch.tensor(np.asarray(value, dtype=NUMPY_DTYPE[dtype]), device=dev)

    def matmul(x: Any, y: Any) -> torch.Tensor:
        both = isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor)
        if not (both and _floats_agree(x, y)):
            x, y = (tensor(a) for a in promote(x, y))
        return torch.matmul(x, y)

    def conv(x: Any, w: Any, stride: Sequence[int], padding: Pads,
             dilation: Sequence[int] | None) -> torch.Tensor:
        x, w = (tensor(a) for a in promote(x, w))
        k = len(stride)
        pads = [tuple(int(v) for v in p) for p in padding]
        if all(lo == hi for lo, hi in pads):
            return _CONV[k](x, w, stride=tuple(stride), padding=tuple(lo for lo, _ in pads),
                            dilation=tuple(dilation or (1,) * k))
        x = F.pad(x, _flat_pads(pads))  # torch's own padding is symmetric only
        return _CONV[k](x, w, stride=tuple(stride), dilation=tuple(dilation or (1,) * k))

    def pool(table: dict[int, Any], pad_value: float,
             faster: Callable[..., torch.Tensor | None] | None = None
             ) -> Callable[..., torch.Tensor]:
        def prim(x: Any, kernel: Sequence[int], stride: Sequence[int],
                 padding: Pads) -> torch.Tensor:
            x = tensor(x)
            flat = _flat_pads(padding)
            if any(flat):  # pad explicitly: pads count in avg_pool, lose every max in max_pool
                x = F.pad(x, flat, mode="constant", value=pad_value)
            found = faster(x, kernel, stride) if faster is not None else None
            if found is not None:
                return found
            return table[len(kernel)](x, kernel_size=tuple(kernel), stride=tuple(stride))

        return prim

    def kmax(x: Any, k: int, axis: int) -> torch.Tensor:
        x = tensor(x)
        # a stable descending sort keeps the lower index first among ties, as NumPy's argsort
        order = torch.sort(x, dim=axis, descending=True, stable=True).indices
        idx = torch.sort(order.narrow(axis, 0, k), dim=axis).values
        return torch.gather(x, axis, idx)

    def draw(x: Any, numpy_draw: str, torch_draw: Callable[..., Any]) -> torch.Tensor:
        """Random numbers shaped like x; a data-parallel rank draws the global batch's and
        keeps its rows (`global_draw`). A 0-d x (one number) is never sliced."""
        x = tensor(x)
        wide = global_draw(tuple(x.shape)) if global_draw is not None and x.ndim else None
        shape, part = wide if wide is not None else (tuple(x.shape), None)
        if numpy_source is not None:
            array = getattr(numpy_source(), numpy_draw)(shape)
            out = torch.as_tensor(array.astype(str(x.dtype).removeprefix("torch.")))
            return (out if part is None else out[part]).to(x.device)
        out = torch_draw(shape, generator=generator, dtype=x.dtype, device=x.device)
        return out if part is None else out[part]

    def random_uniform_like(x: Any) -> torch.Tensor:
        return draw(x, "random", torch.rand)

    def random_normal_like(x: Any) -> torch.Tensor:
        return draw(x, "standard_normal", torch.randn)

    return SimpleNamespace(
        backend="torch",
        training=training,
        rng=generator,
        add=binary(operator.add), sub=binary(operator.sub), mul=binary(operator.mul),
        div=binary(operator.truediv, true_div=True), pow=binary(operator.pow),
        maximum=tensor_binary(torch.maximum), minimum=tensor_binary(torch.minimum),
        neg=unary(operator.neg), exp=floating(torch.exp), log=floating(torch.log),
        sqrt=floating(torch.sqrt), abs=unary(torch.abs), sign=unary(torch.sign),
        tanh=floating(torch.tanh), sigmoid=floating(torch.sigmoid), atan=floating(torch.atan),
        sin=floating(torch.sin), cos=floating(torch.cos), erf=floating(torch.erf),
        stop_gradient=lambda x: tensor(x).detach(),
        gt=binary(operator.gt), ge=binary(operator.ge), lt=binary(operator.lt),
        le=binary(operator.le), eq=binary(operator.eq),
        where=where,
        cast=cast,
        sum=reduce_sum, mean=reduce_mean, max=reduce_max, argmax=argmax,
        shape=lambda x: tuple(int(d) for d in tensor(x).shape),
        reshape=reshape,
        transpose=transpose,
        concat=concat,
        slice=slice_,
        flip=lambda x, axis: torch.flip(tensor(x), dims=(axis,)),
        pad=pad,
        take=take,
        one_hot=one_hot,
        zeros_like=lambda x: torch.zeros_like(tensor(x)),
        ones_like=lambda x: torch.ones_like(tensor(x)),
        constant=constant,
        matmul=matmul,
        conv=conv,
        max_pool=pool(_MAX_POOL, -math.inf, pooling.max_pool),
        avg_pool=pool(_AVG_POOL, 0.0),
        kmax=kmax,
        random_uniform_like=random_uniform_like,
        random_normal_like=random_normal_like,
    )


# The torch forms of ops register themselves with the op catalog when this table exists.
from nndsl.backends.torch import natives as _natives  # noqa: E402, F401
