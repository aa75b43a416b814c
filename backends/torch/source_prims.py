"""The primitive namespace as a torch *source* writer: running an op's decomposition on it writes
the op as lines of plain torch code (`t3 = torch.tanh(t2)`).

This is how `nndsl compile --emit torch` gives every op a form without a hand-written template:
the same op function that NumPy runs and ONNX exports runs here on `Code` values, each a Python
expression plus two NumPy stand-ins computed by the reference table. The stand-ins come from two
runs whose symbolic sizes (batch, time) differ, so a size that differs between them is only known
when the model runs: `P.shape` returns it as a `Dim` (`x.shape[0]`), which may be computed with
and passed on (reshape) but not used as a Python number (a loop count), which is refused.

Each template mirrors the torch primitive table (backends/torch/prims.py), so the written code
computes what nndsl's torch backend computes. This module writes code; it does not import torch.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from functools import partial
from types import SimpleNamespace
from typing import Any

import numpy as np
from nndsl.backends.numpy.prims import make_numpy_prims

TORCH_DTYPE = {"f32": "torch.float32", "f64": "torch.float64", "i64": "torch.int64"}
REFERENCE = make_numpy_prims(training=False)
RUNS = 2  # the stand-in runs (different symbolic sizes)


class NeedsFixedSize(Exception):
    """An op used a size known only at run time as a Python number (e.g. to unroll a loop)."""


class Code:
    """A tensor in the written code: its expression and its stand-in values (one per run)."""

    __slots__ = ("text", "samples")

    def __init__(self, text: str, samples: Sequence[Any]) -> None:
        self.text, self.samples = text, tuple(samples)

    def __repr__(self) -> str:
        return f"Code({self.text!r})"


class Dim:
    """A size known only when the model runs, as code (`x.shape[0]`) and its stand-in values."""

    __slots__ = ("text", "values")

    def __init__(self, text: str, values: Sequence[int]) -> None:
        self.text, self.values = text, tuple(values)

    def _op(self, other: Any, symbol: str, fn: Callable[[int, int], int],
            right: bool = False) -> Any:
        if not isinstance(other, Dim | int) or isinstance(other, bool):
            return NotImplemented
        a, b = (other, self) if right else (self, other)
        values = tuple(fn(_value(a, i), _value(b, i)) for i in range(RUNS))
        return Dim(f"({render(a)} {symbol} {render(b)})", values)

    def __add__(self, o: Any) -> Any: return self._op(o, "+", lambda a, b: a + b)
    def __radd__(self, o: Any) -> Any: return self._op(o, "+", lambda a, b: a + b, True)
    def __sub__(self, o: Any) -> Any: return self._op(o, "-", lambda a, b: a - b)
    def __rsub__(self, o: Any) -> Any: return self._op(o, "-", lambda a, b: a - b, True)
    def __mul__(self, o: Any) -> Any: return self._op(o, "*", lambda a, b: a * b)
    def __rmul__(self, o: Any) -> Any: return self._op(o, "*", lambda a, b: a * b, True)
    def __floordiv__(self, o: Any) -> Any: return self._op(o, "//", lambda a, b: a // b)
    def __rfloordiv__(self, o: Any) -> Any: return self._op(o, "//", lambda a, b: a // b, True)

    def _refuse(self, *_: Any) -> Any:
        raise NeedsFixedSize(f"the size {self.text} is only known when the model runs")

    __index__ = __int__ = __float__ = __bool__ = _refuse
    __lt__ = __le__ = __gt__ = __ge__ = __truediv__ = __mod__ = _refuse
    __hash__ = object.__hash__


def _value(a: Any, run: int) -> Any:
    """The stand-in of `a` in run `run` (Code and Dim inside lists and tuples too)."""
    if isinstance(a, Code):
        return a.samples[run]
    if isinstance(a, Dim):
        return a.values[run]
    if isinstance(a, list | tuple):
        return type(a)(_value(v, run) for v in a)
    return a


def render(a: Any) -> str:
    """`a` as Python source."""
    if isinstance(a, Code | Dim):
        return a.text
    if isinstance(a, bool) or a is None:
        return repr(a)
    if isinstance(a, float):
        return repr(a) if math.isfinite(a) else f'float("{a}")'
    if isinstance(a, list | tuple):
        inner = ", ".join(render(v) for v in a)
        return f"({inner},)" if isinstance(a, tuple) and len(a) == 1 else (
            f"({inner})" if isinstance(a, tuple) else f"[{inner}]")
    if isinstance(a, np.ndarray | np.generic):
        return render(a.tolist())
    return repr(a)


class Tracer:
    """Collects the lines an op writes; names its temporaries `t1`, `t2`, ... via `fresh`.

    `device` is a tensor expression whose device new constants are made on (a model input)."""

    def __init__(self, fresh: Callable[[], str], device: str | None = None) -> None:
        self.lines: list[str] = []
        self.fresh, self.device = fresh, device

    def assign(self, expr: str, samples: Sequence[Any]) -> Code:
        name = self.fresh()
        self.lines.append(f"{name} = {expr}")
        return Code(name, samples)


def _rank(x: Any) -> int:
    return int(np.ndim(_value(x, 0)))


def _flat_pads(pads: Sequence[Sequence[int]]) -> list[int]:
    """((lo, hi), ...) leading-to-trailing -> F.pad's trailing-first list (zeros dropped)."""
    flat: list[int] = []
    for lo, hi in reversed([tuple(p) for p in pads]):
        flat += [int(lo), int(hi)]
    while len(flat) > 2 and flat[-2:] == [0, 0]:
        flat = flat[:-2]
    return flat


def _dims(axis: Any, rank: int) -> str:
    return render(tuple(range(rank)) if axis is None else axis)


# ---- templates: primitive -> (tracer, *args) -> the expression (or a ready value) -------------


def _binary(symbol: str) -> Callable[..., str]:
    return lambda t, x, y: f"{render(x)} {symbol} {render(y)}"


def _func(name: str) -> Callable[..., str]:
    return lambda t, *args: f"{name}({', '.join(render(a) for a in args)})"


def _extreme(name: str, bound: str) -> Callable[..., str]:
    def template(t: Tracer, x: Any, y: Any) -> str:
        if not isinstance(y, Code):
            x, y = y, x
        if not isinstance(x, Code):  # a tensor and a number: clamp
            return f"torch.clamp({render(y)}, {bound}={render(x)})"
        return f"torch.{name}({render(x)}, {render(y)})"

    return template


def _where(t: Tracer, cond: Any, x: Any, y: Any) -> str:
    c = render(cond) if _value(cond, 0).dtype == bool else f"({render(cond)} != 0)"
    return f"torch.where({c}, {render(x)}, {render(y)})"


def _reduce(name: str) -> Callable[..., str]:
    def template(t: Tracer, x: Any, axis: Any = None, keepdims: bool = False) -> str:
        return f"torch.{name}({render(x)}, dim={_dims(axis, _rank(x))}, keepdim={keepdims})"

    return template


def _argmax(t: Tracer, x: Any, axis: Any, keepdims: bool = False) -> str:
    if axis is None:
        flat = f"torch.argmax({render(x)})"
        return f"{flat}.reshape({render((1,) * _rank(x))})" if keepdims else flat
    return f"torch.argmax({render(x)}, dim={axis}, keepdim={keepdims})"


def _reshape(t: Tracer, x: Any, shape: Sequence[Any]) -> str:
    dims = [f"{render(x)}.shape[{i}]" if d is None else render(d) for i, d in enumerate(shape)]
    return f"{render(x)}.reshape({', '.join(dims)})"


def _transpose(t: Tracer, x: Any, axes: Any = None) -> str:
    perm = tuple(reversed(range(_rank(x)))) if axes is None else tuple(axes)
    return f"{render(x)}.permute{render(perm) if len(perm) != 1 else '(' + str(perm[0]) + ')'}"


def _slice(t: Tracer, x: Any, axis: int, start: Any, stop: Any) -> str:
    rank = _rank(x)
    bounds = f"{'' if start is None else render(start)}:{'' if stop is None else render(stop)}"
    axis %= rank
    if axis == rank - 1 and rank > 2:
        return f"{render(x)}[..., {bounds}]"
    return f"{render(x)}[{', '.join([':'] * axis + [bounds])}]"


def _pad(t: Tracer, x: Any, pads: Any, value: float = 0.0) -> Any:
    flat = _flat_pads(pads)
    if not any(flat):
        return x
    return f"F.pad({render(x)}, {render(flat)}, value={render(float(value))})"


def _take(t: Tracer, x: Any, indices: Any, axis: int = 0) -> str:
    idx = render(indices)
    if np.asarray(_value(indices, 0)).dtype.kind not in "iu":
        idx = f"{idx}.long()"
    axis %= _rank(x)
    return f"{render(x)}[{', '.join([':'] * axis + [idx])}]"


def _one_hot(t: Tracer, indices: Any, depth: Any, dtype: str = "f32") -> str:
    i = render(indices)
    return (f"({i}.unsqueeze(-1) == torch.arange({render(depth)}, device={i}.device))"
            f".to({TORCH_DTYPE[dtype]})")


def _constant(t: Tracer, value: Any, dtype: str = "f32") -> str:
    device = f", device={t.device}.device" if t.device else ""
    return (f"torch.tensor({render(np.asarray(value).tolist())}, dtype={TORCH_DTYPE[dtype]}"
            f"{device})")


def _conv(t: Tracer, x: Any, w: Any, stride: Any, padding: Any, dilation: Any) -> str:
    k = len(stride)
    pairs = [tuple(int(v) for v in p) for p in padding]
    dilation = tuple(dilation or (1,) * k)
    source = render(x)
    pad = tuple(lo for lo, _ in pairs)
    if any(lo != hi for lo, hi in pairs):
        source, pad = f"F.pad({source}, {render(_flat_pads(pairs))})", (0,) * k
    return (f"F.conv{k}d({source}, {render(w)}, stride={render(tuple(stride))}, "
            f"padding={render(pad)}, dilation={render(dilation)})")


def _pool(kind: str, fill: float) -> Callable[..., str]:
    def template(t: Tracer, x: Any, kernel: Any, stride: Any, padding: Any) -> str:
        flat = _flat_pads(padding)
        source = render(x)
        if any(flat):
            source = f"F.pad({source}, {render(flat)}, value={render(fill)})"
        return f"F.{kind}_pool{len(kernel)}d({source}, {render(tuple(kernel))}, " \
               f"{render(tuple(stride))})"

    return template


def _kmax(t: Tracer, x: Any, k: int, axis: int) -> str:
    samples = [REFERENCE.kmax(_value(x, i), k, axis) for i in range(RUNS)]
    order = t.assign(f"torch.sort({render(x)}, dim={axis}, descending=True, stable=True)"
                     ".indices", samples)
    kept = t.assign(f"torch.sort({order.text}.narrow({axis}, 0, {k}), dim={axis}).values",
                    samples)
    return f"torch.gather({render(x)}, {axis}, {kept.text})"


TEMPLATES: dict[str, Callable[..., Any]] = {
    "add": _binary("+"), "sub": _binary("-"), "mul": _binary("*"), "div": _binary("/"),
    "pow": _binary("**"), "maximum": _extreme("maximum", "min"),
    "minimum": _extreme("minimum", "max"),
    "neg": lambda t, x: f"-{render(x)}",
    **{name: _func(f"torch.{name}") for name in ("exp", "log", "sqrt", "abs", "sign", "tanh",
                                                  "sigmoid", "atan", "sin", "cos", "erf")},
    "stop_gradient": lambda t, x: f"{render(x)}.detach()",
    "gt": _binary(">"), "ge": _binary(">="), "lt": _binary("<"), "le": _binary("<="),
    "eq": _binary("=="),
    "where": _where,
    "cast": lambda t, x, dtype: f"{render(x)}.to({TORCH_DTYPE[dtype]})",
    "sum": _reduce("sum"), "mean": _reduce("mean"), "max": _reduce("amax"),
    "argmax": _argmax,
    "reshape": _reshape,
    "transpose": _transpose,
    "concat": lambda t, xs, axis: f"torch.cat({render(list(xs))}, dim={axis})",
    "slice": _slice,
    "flip": lambda t, x, axis: f"torch.flip({render(x)}, dims=({axis},))",
    "pad": _pad,
    "take": _take,
    "one_hot": _one_hot,
    "zeros_like": _func("torch.zeros_like"), "ones_like": _func("torch.ones_like"),
    "constant": _constant,
    "matmul": _binary("@"),
    "conv": _conv,
    "max_pool": _pool("max", -math.inf), "avg_pool": _pool("avg", 0.0),
    "kmax": _kmax,
    "random_uniform_like": _func("torch.rand_like"),
    "random_normal_like": _func("torch.randn_like"),
}


def _shape(x: Any) -> tuple[Any, ...]:
    """Sizes equal in both runs are numbers; the others are `Dim`s read from the tensor."""
    shapes = [np.shape(_value(x, i)) for i in range(RUNS)]
    return tuple(a if a == b else Dim(f"{render(x)}.shape[{axis}]", (a, b))
                 for axis, (a, b) in enumerate(zip(*shapes, strict=True)))


def _primitive(t: Tracer, name: str, *args: Any, **kwargs: Any) -> Any:
    """Run primitive `name` on the stand-ins and write its line (numbers stay numbers)."""
    samples = [getattr(REFERENCE, name)(*_value(args, i), **_value(kwargs, i))
               for i in range(RUNS)]
    if not _involves_code(args) and not _involves_code(tuple(kwargs.values())) \
            and name not in ("constant", "random_uniform_like", "random_normal_like"):
        return samples[0]  # arithmetic on plain numbers: no tensor, no code
    expr = TEMPLATES[name](t, *args, **kwargs)
    return expr if isinstance(expr, Code) else t.assign(expr, samples)


def _involves_code(args: Sequence[Any]) -> bool:
    return any(isinstance(a, Code) or (isinstance(a, list | tuple) and _involves_code(a))
               for a in args)


def make_source_prims(tracer: Tracer, training: bool = False) -> SimpleNamespace:
    """The primitive table over `tracer`: what an op sees as `P` while its code is written."""
    table = {name: partial(_primitive, tracer, name) for name in TEMPLATES}
    return SimpleNamespace(backend="torch_source", training=training, rng=None, shape=_shape,
                           **table)
