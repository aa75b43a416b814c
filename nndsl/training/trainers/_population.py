"""A primitive table that runs a model for a whole population of weight sets in one pass.

Evolution scores every member of its population each generation. Rather than a Python loop over
members, the evolved weights are stacked along a leading population axis and the model and its
loss run once, on a table whose primitives carry that axis through — `vmap` written against the
primitive table, so it serves every engine (NumPy, torch on any device) and every op built from
the primitives. A value that varies by member is a `Batched` (axis 0 runs over the members);
data, constants and shared weights stay plain arrays and broadcast against it.

Every primitive handles a batched argument except the few combinations no primitive can express
(a convolution whose input and kernel both vary by member, a gather whose table and indices both
do, a matrix product with a batched vector): those raise `Unbatchable`, which `evolve` turns
into an error at the op's line (at `nndsl check`, by a trial run on zeros).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import numpy as np

from nndsl.errors import ExecutionError, NndslError
from nndsl.prims import PRIMS

ELEMENTWISE = ("add", "sub", "mul", "div", "pow", "maximum", "minimum", "neg", "exp", "log",
               "sqrt", "abs", "sign", "tanh", "sigmoid", "atan", "sin", "cos", "erf", "gt", "ge",
               "lt", "le", "eq", "where", "zeros_like", "ones_like", "random_uniform_like",
               "random_normal_like", "stop_gradient")
REDUCTIONS = ("sum", "mean", "max")


class Unbatchable(Exception):
    """A primitive cannot take this combination of per-member arguments."""


@dataclass(frozen=True, slots=True)
class Batched:
    """A value per member: `value` has the population axis first."""

    value: Any


def _member(axis: int, rank: int) -> int:
    """A member's axis as an axis of the batched array (the population axis comes first)."""
    return axis % rank + 1


class _Table:
    """The primitives over batched values; P is the engine's own table."""

    def __init__(self, P: Any, size: int) -> None:
        self.P, self.size = P, size

    def rank(self, x: Any) -> int:
        if isinstance(x, Batched):
            return len(self.P.shape(x.value)) - 1
        return 0 if isinstance(x, int | float | bool) else len(self.P.shape(x))

    def aligned(self, args: Sequence[Any]) -> list[Any]:
        """Plain arrays of the arguments, the batched ones given singleton axes after the
        population axis up to the highest rank among them: plain ones broadcast from the
        right, so every operand lines up member by member."""
        top = max(self.rank(a) for a in args)
        out = []
        for a in args:
            if isinstance(a, Batched):
                shape = tuple(self.P.shape(a.value))
                missing = top + 1 - len(shape)
                a = self.P.reshape(a.value, (shape[0], *(1,) * missing, *shape[1:])) \
                    if missing else a.value
            out.append(a)
        return out

    def lift(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """An elementwise primitive: broadcasting does the work once the ranks line up."""

        def prim(*args: Any) -> Any:
            if not any(isinstance(a, Batched) for a in args):
                return fn(*args)
            return Batched(fn(*self.aligned(args)))

        return prim

    def reduce(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        def prim(x: Any, axis: Any = None, keepdims: bool = False) -> Any:
            if not isinstance(x, Batched):
                return fn(x, axis=axis, keepdims=keepdims)
            r = self.rank(x)
            if axis is None:
                if r == 0:
                    return x
                axes: Any = tuple(range(1, r + 1))
            else:
                axes = tuple(_member(a, r) for a in axis) if isinstance(axis, tuple) else \
                    _member(axis, r)
            return Batched(fn(x.value, axis=axes, keepdims=keepdims))

        return prim

    def argmax(self, x: Any, axis: int | None, keepdims: bool = False) -> Any:
        if not isinstance(x, Batched):
            return self.P.argmax(x, axis, keepdims)
        if axis is None:
            if keepdims:
                raise Unbatchable("argmax over every axis, keeping them")
            return Batched(self.P.argmax(self.P.reshape(x.value, (self.size, -1)), 1))
        return Batched(self.P.argmax(x.value, _member(axis, self.rank(x)), keepdims))

    def shape(self, x: Any) -> tuple[int, ...]:
        return tuple(self.P.shape(x.value))[1:] if isinstance(x, Batched) else \
            tuple(self.P.shape(x))

    def reshape(self, x: Any, shape: Sequence[int | None]) -> Any:
        if not isinstance(x, Batched):
            return self.P.reshape(x, shape)
        return Batched(self.P.reshape(x.value, (None, *shape)))

    def transpose(self, x: Any, axes: Sequence[int] | None = None) -> Any:
        if not isinstance(x, Batched):
            return self.P.transpose(x, axes)
        r = self.rank(x)
        order = range(r, 0, -1) if axes is None else (_member(a, r) for a in axes)
        return Batched(self.P.transpose(x.value, (0, *order)))

    def concat(self, xs: Sequence[Any], axis: int) -> Any:
        xs = list(xs)
        ref = next((x for x in xs if isinstance(x, Batched)), None)
        if ref is None:
            return self.P.concat(xs, axis)
        r = max(self.rank(x) for x in xs)
        ones = self.P.reshape(self.P.ones_like(self.P.sum(ref.value, axis=tuple(
            range(1, r + 1)))), (self.size, *(1,) * r))
        parts = [a if isinstance(x, Batched) else self.P.mul(a, ones)
                 for x, a in zip(xs, self.aligned(xs), strict=True)]
        return Batched(self.P.concat(parts, _member(axis, r)))

    def along(self, name: str) -> Callable[..., Any]:
        """A primitive taking (x, axis, ...) whose axis is a member's."""
        fn = getattr(self.P, name)

        def prim(x: Any, axis: int, *rest: Any) -> Any:
            if not isinstance(x, Batched):
                return fn(x, axis, *rest)
            return Batched(fn(x.value, _member(axis, self.rank(x)), *rest))

        return prim

    def kmax(self, x: Any, k: int, axis: int) -> Any:
        if not isinstance(x, Batched):
            return self.P.kmax(x, k, axis)
        return Batched(self.P.kmax(x.value, k, _member(axis, self.rank(x))))

    def pad(self, x: Any, pads: Any, value: float = 0.0) -> Any:
        if not isinstance(x, Batched):
            return self.P.pad(x, pads, value)
        return Batched(self.P.pad(x.value, ((0, 0), *pads), value))

    def take(self, x: Any, indices: Any, axis: int = 0) -> Any:
        if isinstance(indices, Batched):
            if isinstance(x, Batched) or axis % self.rank(x) != 0:
                raise Unbatchable("a gather whose table and indices both vary by member")
            return Batched(self.P.take(x, indices.value, 0))  # [members, *indices, *row]
        if not isinstance(x, Batched):
            return self.P.take(x, indices, axis)
        return Batched(self.P.take(x.value, indices, _member(axis, self.rank(x))))

    def one_hot(self, indices: Any, depth: int, dtype: str = "f32") -> Any:
        return self.lift(lambda i: self.P.one_hot(i, depth, dtype))(indices)

    def cast(self, x: Any, dtype: str) -> Any:
        return self.lift(lambda a: self.P.cast(a, dtype))(x)

    def matmul(self, x: Any, y: Any) -> Any:
        if not isinstance(x, Batched) and not isinstance(y, Batched):
            return self.P.matmul(x, y)
        if any(isinstance(a, Batched) and self.rank(a) < 2 for a in (x, y)):
            raise Unbatchable("a matrix product with a vector that varies by member")
        return Batched(self.P.matmul(*self.aligned((x, y))))

    def folded(self, x: Batched, fn: Callable[[Any], Any]) -> Batched:
        """fn on the members' rows side by side: [members, N, ...] as [members * N, ...]."""
        shape = tuple(self.P.shape(x.value))
        out = fn(self.P.reshape(x.value, (self.size * shape[1], *shape[2:])))
        return Batched(self.P.reshape(out, (self.size, shape[1],
                                            *tuple(self.P.shape(out))[1:])))

    def conv(self, x: Any, w: Any, stride: Any, padding: Any, dilation: Any) -> Any:
        def conv(a: Any, k: Any) -> Any:
            return self.P.conv(a, k, stride, padding, dilation)

        if isinstance(x, Batched) and isinstance(w, Batched):
            raise Unbatchable("a convolution whose input and kernel both vary by member")
        if isinstance(x, Batched):
            return self.folded(x, lambda a: conv(a, w))
        if not isinstance(w, Batched):
            return conv(x, w)
        shape = tuple(self.P.shape(w.value))  # the members' kernels as one bank of filters
        out = conv(x, self.P.reshape(w.value, (self.size * shape[1], *shape[2:])))
        got = tuple(self.P.shape(out))
        out = self.P.reshape(out, (got[0], self.size, shape[1], *got[2:]))
        return Batched(self.P.transpose(out, (1, 0, *range(2, len(got) + 1))))

    def unknown(self, name: str) -> Callable[..., Any]:
        """A primitive this table has no population form for (tests/test_gradient_free.py
        checks there is none): it runs on plain arguments and refuses batched ones."""

        def prim(*args: Any, **kwargs: Any) -> Any:
            if any(isinstance(a, Batched) for a in (*args, *kwargs.values())):
                raise Unbatchable(f"the primitive '{name}', which has no population form")
            return getattr(self.P, name)(*args, **kwargs)

        return prim

    def pool(self, name: str) -> Callable[..., Any]:
        fn = getattr(self.P, name)

        def prim(x: Any, kernel: Any, stride: Any, padding: Any) -> Any:
            if not isinstance(x, Batched):
                return fn(x, kernel, stride, padding)
            return self.folded(x, lambda a: fn(a, kernel, stride, padding))

        return prim


def population_table(P: Any, size: int) -> SimpleNamespace:
    """Engine table P, with every primitive taking `Batched` values of `size` members."""
    t = _Table(P, size)
    table: dict[str, Any] = {name: t.lift(getattr(P, name)) for name in ELEMENTWISE
                             if hasattr(P, name)}
    table |= {name: t.reduce(getattr(P, name)) for name in REDUCTIONS}
    table |= {name: t.along(name) for name in ("slice", "flip")}
    table |= {name: t.pool(name) for name in ("max_pool", "avg_pool")}
    table |= {name: getattr(t, name) for name in ("argmax", "shape", "reshape", "transpose",
                                                  "concat", "kmax", "pad", "take", "one_hot",
                                                  "cast", "matmul", "conv")}
    table["constant"] = P.constant
    for name in set(PRIMS) - set(table):  # a primitive added since: plain arguments only
        table[name] = t.unknown(name)
    return SimpleNamespace(backend="population", training=P.training,
                           rng=getattr(P, "rng", None), **table)


def per_member(value: Any, size: int, to_numpy: Callable[[Any], np.ndarray]) -> np.ndarray:
    """A scalar per member as a NumPy vector (a value no member changes is everyone's)."""
    if isinstance(value, Batched):
        return np.asarray(to_numpy(value.value), dtype=np.float64).reshape(size)
    return np.full(size, float(np.asarray(to_numpy(value))))


@contextmanager
def positioned(trainer: str) -> Iterator[None]:
    """Run a population pass (NumPy warnings off): a primitive that cannot carry the population
    axis, or an op computing outside the primitive table, becomes an error at the op's line."""
    try:
        with np.errstate(all="ignore"):
            yield
    except ExecutionError as e:
        cause = e.__cause__
        if isinstance(cause, Unbatchable):
            what = str(cause)
        elif isinstance(cause, TypeError | AttributeError | ValueError | RuntimeError):
            what = f"a computation outside the primitive table ({type(cause).__name__}: {cause})"
        else:
            raise
        op = e.message.split(" failed")[0]
        raise NndslError(f"trainer '{trainer}' scores its whole population in one pass, which "
                         f"op '{op}' cannot take part in: it needs {what}", e.span,
                         hint="train this model with anneal or backprop, or keep the op's "
                         "weights out of the evolved ones (`freeze = [...]`)") from None
    except Unbatchable as e:  # in a metric, outside the graph
        raise NndslError(f"trainer '{trainer}' scores its whole population in one pass; its "
                         f"fitness metric needs {e}", None) from None
