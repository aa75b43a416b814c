"""Ops the front end creates for arithmetic in expressions, and the literal-value initializer."""

from __future__ import annotations

from typing import Any

import numpy as np

from nndsl.errors import NndslError
from nndsl.ir import TensorType
from nndsl.ops.registry import op


def _broadcast(a: TensorType, b: TensorType) -> TensorType:
    """NumPy broadcasting over shapes that may hold symbols (equal symbols match)."""
    out = []
    for x, y in zip(reversed(a.shape), reversed(b.shape), strict=False):
        if x == y or y == 1:
            out.append(x)
        elif x == 1:
            out.append(y)
        else:
            raise NndslError(f"shapes {list(a.shape)} and {list(b.shape)} do not broadcast",
                             expected="equal sizes or 1 on every axis",
                             received=f"{x} vs {y}")
    longer = a.shape if len(a.shape) > len(b.shape) else b.shape
    rest = longer[: len(longer) - len(out)]
    return TensorType((*rest, *reversed(out)), a.dtype if a.rank >= b.rank else b.dtype)


@op("scalar", "layer", infer=lambda *, value: TensorType((), "f32"), samples=((),),
    sample_params={"value": 2.5})
def scalar(P: Any, *, value: float) -> Any:
    """value (a scalar from an arithmetic expression such as `0.5 * x`)."""
    return P.constant(value)


@op("neg", "layer")
def neg(P: Any, x: Any) -> Any:
    """-x"""
    return P.neg(x)


@op("div", "layer", infer=_broadcast, samples=(((2, 8), (2, 8)),))
def div(P: Any, a: Any, b: Any) -> Any:
    """a / b (broadcasting)"""
    return P.div(a, b)


def _positive_bases(rng: Any) -> tuple[Any, ...]:
    # bases > 0: the exponent's gradient a^b ln a is real there (0 for a <= 0 by convention)
    return rng.uniform(0.5, 2.0, (2, 8)), rng.standard_normal((2, 8))


@op("pow", "layer", infer=_broadcast, sample_inputs=_positive_bases)
def pow_(P: Any, a: Any, b: Any) -> Any:
    """a ** b (broadcasting): the `**` operator; a < 0 with a fractional b gives NaN."""
    return P.pow(a, b)


@op("literal", "initializer")
def literal(rng: np.random.Generator, shape: tuple[int, ...], fan_in: int, fan_out: int, *,
            value: Any) -> np.ndarray:
    """the given value (a number broadcasts to the whole shape)"""
    return np.broadcast_to(np.asarray(value, dtype=np.float64), shape).copy()
