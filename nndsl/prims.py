"""The primitive namespace `P`: the only operations an op's math may use.

Every backend (NumPy, torch, ONNX) supplies one table with exactly these names; ops are
written once against it. Arguments written `x`, `y`, `w` are backend arrays (or Python numbers
where noted); everything else is a plain Python value. Axes may be negative.

`P.training` (bool) tells whether the graph runs in training mode (dropout, noise, batch-norm
statistics); `P.rng` is only used by the training-mode random primitives.
"""

from __future__ import annotations

PRIMS: dict[str, str] = {
    # elementwise arithmetic; either side may be a Python number
    "add": "add(x, y) -> x + y",
    "sub": "sub(x, y) -> x - y",
    "mul": "mul(x, y) -> x * y",
    "div": "div(x, y) -> x / y",
    "pow": "pow(x, y) -> x ** y",
    "maximum": "maximum(x, y) -> elementwise max",
    "minimum": "minimum(x, y) -> elementwise min",
    # elementwise unary
    "neg": "neg(x) -> -x",
    "exp": "exp(x)",
    "log": "log(x) -> natural log",
    "sqrt": "sqrt(x)",
    "abs": "abs(x)",
    "sign": "sign(x) -> -1, 0 or 1",
    "tanh": "tanh(x)",
    "sigmoid": "sigmoid(x) -> 1 / (1 + exp(-x)), stable for large |x|",
    "atan": "atan(x)",
    "sin": "sin(x)",
    "cos": "cos(x)",
    "erf": "erf(x)",
    "stop_gradient": (
        "stop_gradient(x) -> x, through which no gradient flows (straight-through estimators: "
        "h + stop_gradient(step(h) - h) is step(h) forward with h's gradient backward)"
    ),
    # comparisons (results are booleans, for `where`) and selection
    "gt": "gt(x, y) -> x > y",
    "ge": "ge(x, y) -> x >= y",
    "lt": "lt(x, y) -> x < y",
    "le": "le(x, y) -> x <= y",
    "eq": "eq(x, y) -> x == y",
    "where": "where(cond, x, y) -> x where cond else y",
    "cast": "cast(x, dtype) -> x converted to dtype 'f32' | 'f64' | 'i64'",
    # reductions
    "sum": "sum(x, axis=None, keepdims=False); axis is an int, a tuple of ints or None",
    "mean": "mean(x, axis=None, keepdims=False)",
    "max": "max(x, axis=None, keepdims=False)",
    "argmax": "argmax(x, axis, keepdims=False) -> int64 indices (not differentiable)",
    # shape and movement
    "shape": "shape(x) -> tuple of ints (concrete backends only; avoid in exportable math)",
    "reshape": "reshape(x, shape) -> shape entries are ints, -1 (inferred) or None (keep dim i)",
    "transpose": "transpose(x, axes=None) -> permute axes (reverse them when None)",
    "concat": "concat(xs, axis) -> join a list of arrays along axis",
    "slice": "slice(x, axis, start, stop) -> x[..., start:stop, ...] along axis",
    "flip": "flip(x, axis) -> reverse along axis",
    "pad": "pad(x, pads, value=0.0) -> pads is ((before, after), ...) for every axis",
    "take": "take(x, indices, axis=0) -> gather rows of x (embedding lookup)",
    "one_hot": "one_hot(indices, depth, dtype='f32') -> a trailing axis of size depth",
    "zeros_like": "zeros_like(x)",
    "ones_like": "ones_like(x)",
    "constant": "constant(value, dtype='f32') -> a constant array from nested lists or an ndarray",
    # linear algebra, convolution and pooling (coarse ops every backend does natively)
    "matmul": "matmul(x, y) -> batched matrix product",
    "conv": (
        "conv(x, w, stride, padding, dilation) -> cross-correlation over the trailing "
        "len(stride) axes; x [N, C, *S], w [O, C, *K]; padding ((lo, hi), ...) per spatial axis"
    ),
    "max_pool": "max_pool(x, kernel, stride, padding) -> x [N, C, *S]; padding as in conv",
    "avg_pool": "avg_pool(x, kernel, stride, padding) -> mean over each window, pads counted",
    "kmax": "kmax(x, k, axis) -> the k largest values along axis, in their original order",
    # training-mode randomness (never exported: training-only ops vanish from ONNX)
    "random_uniform_like": "random_uniform_like(x) -> U[0, 1) samples with x's shape",
    "random_normal_like": "random_normal_like(x) -> N(0, 1) samples with x's shape",
}
