"""Weight penalties (kind `regularizer`: `fn(P, w, *, ...)` -> a 0-d penalty added to the loss)
and constraints (kind `constraint`: `fn(P, w, *, ...)` -> the projected weight, applied after
each optimizer step).

The λ convention: a penalty is added once per step to the
batch-mean loss, with no 1/m, and

- `l2(strength)` adds (strength / 2) Σ w², whose gradient is strength * w: the same as torch's
  coupled `weight_decay=strength` (the ½ is there so that the gradient is λw). In the lecture
  notes' (λ / 2m) Σ w² form, strength = λ / m.
- `l1(strength)` adds strength Σ |w|, gradient strength * sign(w) with sign(0) = 0.
- `elastic(l1, l2)` adds l1 Σ |w| + (l2 / 2) Σ w², the sum of the two above.

Which weights are penalised (by default weights, not biases) is the trainer's choice.
Each penalty also gives its gradient in closed form (`grad=`), the formula in its docstring: the
torch engine adds it to the loss gradient as torch's weight_decay does, because taking it by
autograd cost more than the whole rest of a small model's backward pass.
"""

from __future__ import annotations

from typing import Any

from nndsl.errors import NndslError
from nndsl.ops.registry import op

# The norm floor of unit_norm, so that an all-zero vector stays 0 instead of becoming NaN.
TINY = 1e-12


def _non_negative(name: str, **values: float) -> None:
    for key, value in values.items():
        if value < 0:
            raise NndslError(f"{name} needs {key} >= 0, got {key}={value}")


def _norms(P: Any, w: Any, axis: int | tuple[int, ...]) -> Any:
    return P.sqrt(P.sum(P.mul(w, w), axis=axis, keepdims=True))


@op("l1", "regularizer", grad=lambda P, w, *, strength: P.mul(strength, P.sign(w)))
def l1_penalty(P: Any, w: Any, *, strength: float) -> Any:
    """strength Σ |w|; gradient strength sign(w), 0 at w = 0: the lasso penalty."""
    _non_negative("l1", strength=strength)
    return P.mul(strength, P.sum(P.abs(w)))


@op("l2", "regularizer", grad=lambda P, w, *, strength: P.mul(strength, w))
def l2_penalty(P: Any, w: Any, *, strength: float) -> Any:
    """(strength / 2) Σ w^2; gradient strength w, as torch's weight_decay=strength."""
    _non_negative("l2", strength=strength)
    return P.mul(0.5 * strength, P.sum(P.mul(w, w)))


@op("elastic", "regularizer",
    grad=lambda P, w, *, l1, l2: P.add(P.mul(l1, P.sign(w)), P.mul(l2, w)))
def elastic(P: Any, w: Any, *, l1: float, l2: float) -> Any:
    """l1 Σ |w| + (l2 / 2) Σ w^2: l1(l1) + l2(l2), the elastic net."""
    _non_negative("elastic", l1=l1, l2=l2)
    return P.add(P.mul(l1, P.sum(P.abs(w))), P.mul(0.5 * l2, P.sum(P.mul(w, w))))


@op("max_norm", "constraint")
def max_norm(P: Any, w: Any, *, c: float, axis: int | tuple[int, ...]) -> Any:
    """w * c / max(‖w‖, c), the norm taken along axis: every vector rescaled to ‖w‖ <= c.

    The axis is required: for a dense weight [out, in] each unit's incoming vector is axis=1;
    for a conv weight [out, in, *k] it is [1, 2, 3]. Vectors already within c are unchanged.
    """
    if c <= 0:
        raise NndslError(f"max_norm needs c > 0, got c={c}")
    return P.mul(w, P.div(c, P.maximum(_norms(P, w, axis), c)))


@op("non_neg", "constraint")
def non_neg(P: Any, w: Any) -> Any:
    """max(w, 0): negative weights are set to 0."""
    return P.maximum(w, 0.0)


@op("unit_norm", "constraint")
def unit_norm(P: Any, w: Any, *, axis: int | tuple[int, ...]) -> Any:
    """w / ‖w‖, the norm along axis (sparse coding's dictionary columns of norm 1); 0 stays 0."""
    return P.div(w, P.maximum(_norms(P, w, axis), TINY))
