"""Helpers shared by the layer families (layers.py, conv.py, recurrent.py): registration with
defaults filled in for the rules, and the shape checks their `infer`/`weights` rules make.

Every check raises `NndslError` with message, expected, received and hint but no span: the
shape pass adds the node's position.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from nndsl.errors import NndslError
from nndsl.ir import Call, TensorType, format_shape
from nndsl.ops.registry import OPS, op

FLATTEN_HINT = "insert `flatten` before `{name}`"
BATCH_HINT = "inputs are batched: declare the input as [batch, ...]"
SYMBOL_HINT = "a named size such as `batch` is known only at run time; it matches only itself"


def const(value: float) -> Call:
    """The initializer `const(value)`, for weights whose start value is fixed (gamma, alpha)."""
    return Call("const", (("value", float(value)),))


def layer_op(name: str, kind: str = "layer", **fields: Any) -> Callable[..., Any]:
    """`op(name, kind, ...)`, whose shape and weight rules receive every hyper-parameter.

    The rules are called with the parameters the user gave; the op's own defaults (read from its
    signature) are filled in first, so a rule never repeats a default.
    """

    def filled(rule: Callable[..., Any]) -> Callable[..., Any]:
        def call(*types: TensorType, **params: Any) -> Any:
            defaults = {p.name: p.default for p in OPS[name].params if not p.required}
            return rule(*types, **{**defaults, **params})

        call.__doc__ = rule.__doc__
        return call

    for key in ("infer", "weights", "index_bound"):
        if fields.get(key) is not None:
            fields[key] = filled(fields[key])
    return op(name, kind, **fields)


def need_rank(name: str, x: TensorType, layouts: dict[int, str], hint: str | None = None) -> None:
    """Raise unless x's rank is one of `layouts` (rank -> written layout such as [batch, C])."""
    if x.rank in layouts:
        return
    rank, layout = next(iter(layouts.items()))
    raise NndslError(
        f"{name} expects a {rank}-D input {layout}, got {format_shape(x.shape)}",
        expected=" or ".join(layouts.values()), received=str(x), hint=hint,
    )


def need_min_rank(name: str, x: TensorType, rank: int, layout: str,
                  hint: str | None = None) -> None:
    """Raise unless x has at least `rank` axes (`layout` writes them, e.g. [batch, C, ...])."""
    if x.rank >= rank:
        return
    raise NndslError(
        f"{name} expects an input with at least {rank} axes {layout}, "
        f"got {format_shape(x.shape)}",
        expected=layout, received=str(x), hint=hint,
    )


def known_dim(name: str, x: TensorType, axis: int, what: str) -> int:
    """x.shape[axis] as an int; a symbolic size there is an error (weights need the number)."""
    dim = x.shape[axis]
    if isinstance(dim, int):
        return dim
    raise NndslError(
        f"{name} needs a known number of {what}, got '{dim}' in {format_shape(x.shape)}",
        expected=f"an integer size for the {what}", received=str(x),
        hint=f"declare the input with an integer size for the {what}",
    )


def positive(name: str, **values: int | float | None) -> None:
    """Raise unless every given value (None skipped) is > 0."""
    for key, value in values.items():
        if value is not None and not value > 0:
            raise NndslError(f"{name} `{key}` must be positive, got {value}",
                             expected=f"{key} > 0", received=f"{key}={value}")


def probability(name: str, key: str, value: float, closed_low: bool, closed_high: bool) -> None:
    """Raise unless value lies in the interval [0, 1] with the given ends closed or open."""
    ok = (value >= 0 if closed_low else value > 0) and (value <= 1 if closed_high else value < 1)
    if not ok:
        interval = f"{'[' if closed_low else '('}0, 1{']' if closed_high else ')'}"
        raise NndslError(f"{name} `{key}` must be in {interval}, got {value}",
                         expected=f"{key} in {interval}", received=f"{key}={value}")


def merge_dims(name: str, a: Any, b: Any, where: str) -> Any:
    """Two sizes of one axis that must agree. A symbol agrees only with itself: `batch` against
    `time` or against 4 holds for some runs and fails others, so it is refused here."""
    if a == b:
        return a
    raise NndslError(f"{name} inputs disagree on {where}: {a} vs {b}",
                     expected=f"equal sizes on {where}", received=f"{a} and {b}",
                     hint=SYMBOL_HINT if isinstance(a, str) or isinstance(b, str) else None)


def per_channel(P: Any, v: Any, rank: int) -> Any:
    """A [C] vector shaped [1, C, 1, ...] so it broadcasts over axis 1 of a rank-`rank` input."""
    return P.reshape(v, (1, -1, *(1,) * (rank - 2)))


def same_dtype(name: str, xs: tuple[TensorType, ...]) -> None:
    """Raise unless all inputs but scalars share one dtype (no implicit casts of tensors)."""
    if len({x.dtype for x in xs if x.rank > 0}) > 1:
        raise NndslError(f"{name} inputs have different dtypes",
                         expected="one dtype", received=", ".join(str(x) for x in xs))


def broadcast(name: str, *xs: TensorType) -> TensorType:
    """NumPy broadcasting of the input shapes; a symbol matches itself and 1 (see merge_dims)."""
    same_dtype(name, xs)
    rank = max(x.rank for x in xs)
    out: list[Any] = []
    for i in range(rank):
        dims = [x.shape[x.rank - rank + i] for x in xs if x.rank - rank + i >= 0]
        dim: Any = 1
        for d in dims:
            if d == 1 or d == dim:
                continue
            if dim != 1:
                raise NndslError(
                    f"{name} inputs do not broadcast: "
                    + " and ".join(format_shape(x.shape) for x in xs),
                    expected="equal sizes, or 1, on every axis",
                    received=", ".join(str(x) for x in xs),
                    hint=SYMBOL_HINT if isinstance(d, str) or isinstance(dim, str) else None,
                )
            dim = d
        out.append(dim)
    return TensorType(tuple(out), max(xs, key=lambda x: x.rank).dtype)


def at_least_two(name: str, xs: tuple[TensorType, ...]) -> None:
    if len(xs) < 2:
        raise NndslError(f"{name} expects at least 2 inputs, got {len(xs)}",
                         hint=f"write {name}(a, b, ...)")
