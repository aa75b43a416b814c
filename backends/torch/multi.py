"""torch's multi-tensor updates (nndsl/training/multi.py): a primitive table over lists of
tensors, whose arithmetic is the `torch._foreach_*` family, and adam in torch.optim.Adam's
fused kernel (its foreach kernels where that does not apply).

A foreach kernel applies the same scalar operation to every element as the one-tensor kernel
(on the CPU it is that kernel, once per tensor, without returning to Python; on CUDA fused
multi-tensor kernels), so a rule run on lists gives per-weight results bit for bit. Operands
the foreach family does not take (a number on the left of `-` or `/`, comparisons, `where`)
are applied tensor by tensor through the ordinary table.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from nndsl.backends.torch import fused

from nndsl.ops.optimizers import check_adam
from nndsl.training.multi import register_lists, register_multi

Lists = list[torch.Tensor]


def _same_floats(*groups: Any) -> bool:
    """Lists of tensors of one floating dtype (numbers are skipped)."""
    dtype = None
    for group in groups:
        if not isinstance(group, list):
            if isinstance(group, float | int) and not isinstance(group, bool):
                continue
            return False
        for t in group:
            if not isinstance(t, torch.Tensor) or not t.dtype.is_floating_point or (
                    dtype is not None and t.dtype != dtype):
                return False
            dtype = t.dtype
    return dtype is not None


class ListTable:
    """The primitive table P over lists of tensors (numbers broadcast to every tensor)."""

    backend = "torch"

    def __init__(self, P: Any) -> None:
        self.P = P

    def _each(self, name: str, *args: Any) -> Lists:
        fn = getattr(self.P, name)
        n = next(len(a) for a in args if isinstance(a, list))
        return [fn(*(a[i] if isinstance(a, list) else a for a in args)) for i in range(n)]

    def _foreach(self, name: str, x: Any, y: Any, lists: Callable[..., Lists],
                 scalar: Callable[..., Lists] | None, swapped: Callable[..., Lists] | None
                 ) -> Lists:
        if _same_floats(x, y):
            if isinstance(x, list) and isinstance(y, list):
                return list(lists(x, y))
            if isinstance(x, list) and scalar is not None:
                return list(scalar(x, y))
            if isinstance(y, list) and swapped is not None:
                return list(swapped(y, x))
        return self._each(name, x, y)

    def add(self, x: Any, y: Any) -> Lists:
        return self._foreach("add", x, y, torch._foreach_add, torch._foreach_add,
                             torch._foreach_add)

    def mul(self, x: Any, y: Any) -> Lists:
        return self._foreach("mul", x, y, torch._foreach_mul, torch._foreach_mul,
                             torch._foreach_mul)

    def sub(self, x: Any, y: Any) -> Lists:
        return self._foreach("sub", x, y, torch._foreach_sub, torch._foreach_sub, None)

    def div(self, x: Any, y: Any) -> Lists:
        return self._foreach("div", x, y, torch._foreach_div, torch._foreach_div, None)

    def sqrt(self, x: Any) -> Lists:
        return list(torch._foreach_sqrt(x)) if _same_floats(x) else self._each("sqrt", x)

    def sign(self, x: Any) -> Lists:
        return list(torch._foreach_sign(x)) if _same_floats(x) else self._each("sign", x)

    def zeros_like(self, x: Any) -> Lists:
        return [torch.zeros_like(t) for t in x]

    def __getattr__(self, name: str) -> Callable[..., Lists]:
        if name.startswith("_"):
            raise AttributeError(name)
        return lambda *args: self._each(name, *args)


def adam(P: Any, ws: Lists, gs: Lists, states: list[dict[str, Any]], rate: float, t: int, *,
         lr: float = 1e-3, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8,
         eps_inside: bool = False) -> tuple[Lists, list[dict[str, Any]]]:
    """The per-weight native adam (backends/torch/natives.py) on every weight at once: its
    fused kernel (backends/torch/fused.py), else its foreach kernels (eps inside the root,
    mixed dtypes): the same operations in the same order for every tensor. The weights given
    are never written, nor is a state this rule did not return."""
    check_adam(lr, beta1, beta2, eps)
    done = fused.adam(ws, gs, states, rate, t, beta1=beta1, beta2=beta2, eps=eps,
                      eps_inside=eps_inside)
    if done is not None:
        return done
    fresh = "m" not in states[0]
    if not _same_floats(ws, gs, *([] if fresh else [[s["m"] for s in states],
                                                     [s["v"] for s in states]])):
        from nndsl.ops.registry import get

        rule = get("adam", "optimizer").function_for(P)
        out = [rule(P, w, g, s, rate, t, lr=lr, beta1=beta1, beta2=beta2, eps=eps,
                    eps_inside=eps_inside) for w, g, s in zip(ws, gs, states, strict=True)]
        return [w for w, _ in out], [s for _, s in out]
    if fresh:
        m = torch._foreach_mul(gs, 1.0 - beta1)
        v = torch._foreach_mul(gs, gs)
        torch._foreach_mul_(v, 1.0 - beta2)
    else:
        m = torch._foreach_lerp([s["m"] for s in states], gs, 1.0 - beta1)
        v = torch._foreach_mul([s["v"] for s in states], beta2)
        torch._foreach_addcmul_(v, gs, gs, value=1.0 - beta2)
    denom = torch._foreach_div(v, 1.0 - beta2**t)
    if eps_inside:
        torch._foreach_add_(denom, eps)
        torch._foreach_sqrt_(denom)
    else:
        torch._foreach_sqrt_(denom)
        torch._foreach_add_(denom, eps)
    new = torch._foreach_addcdiv(ws, m, denom, value=-rate / (1.0 - beta1**t))
    return list(new), [{"m": a, "v": b} for a, b in zip(m, v, strict=True)]


def _total(norms: Lists, power: int) -> torch.Tensor | float:
    """Σ n^power (power 1 or 2) over per-tensor norms: on the CPU over the norms read as
    numbers (cheaper than stacking a handful of them), elsewhere on the device (not one wait
    per weight)."""
    if norms[0].device.type == "cpu":
        return math.fsum(n.item() ** power for n in norms)
    stacked = torch.stack(norms)
    return torch.dot(stacked, stacked) if power == 2 else stacked.sum()


def _squares(ws: Lists) -> torch.Tensor | float:
    """Σ w² over every element of every tensor: one foreach norm, then Σ n²."""
    return _total(torch._foreach_norm(ws), 2)


def _magnitudes(ws: Lists) -> torch.Tensor | float:
    """Σ |w| over every element of every tensor (one foreach 1-norm)."""
    return _total(torch._foreach_norm(ws, 1), 1)


# regularizer -> its penalty summed over many weights in a few calls, for the recorded loss
# (the formulas of nndsl/ops/regularizers.py; rounding differs from the per-weight sums by a
# few ulps, which is why gradients never come from here)
PENALTY_TOTALS: dict[str, Callable[..., torch.Tensor | float]] = {
    "l2": lambda ws, *, strength: _squares(ws) * (0.5 * strength),
    "l1": lambda ws, *, strength: _magnitudes(ws) * strength,
    "elastic": lambda ws, *, l1, l2: _magnitudes(ws) * l1 + _squares(ws) * (0.5 * l2),
}


def penalty_total(calls: list[Any], ws: Lists) -> torch.Tensor | float | None:
    """The regularizers' penalty over all of `ws` as one number, or None where a regularizer
    has no summed form here or the weights do not share one floating dtype."""
    if not all(c.name in PENALTY_TOTALS for c in calls) or not _same_floats(ws):
        return None
    totals = [PENALTY_TOTALS[c.name](ws, **dict(c.kwargs)) for c in calls]
    total = totals[0]
    for t in totals[1:]:
        total = total + t
    return total


# regularizer -> its closed-form gradient added to many weights' gradients in one foreach call,
# g + strength·w as torch's weight_decay adds it (one kernel, no product held in between; on
# the CPU's vector units a fused multiply-add, so within one rounding of the reference's
# g + (strength·w)). l1's product strength·sign(w) is exact, so its sum is the reference's.
GRADIENTS_ADDED: dict[str, Callable[..., Lists]] = {
    "l2": lambda gs, ws, *, strength: list(torch._foreach_add(gs, ws, alpha=strength)),
    "l1": lambda gs, ws, *, strength: list(
        torch._foreach_add(gs, torch._foreach_sign(ws), alpha=strength)),
}


def gradient_added(calls: list[Any], gs: Lists, ws: Lists) -> Lists | None:
    """Each g plus the gradient of the one regularizer in `calls`, or None where that has no
    form here (or there are several) or the tensors do not share one floating dtype."""
    if len(calls) != 1 or calls[0].name not in GRADIENTS_ADDED or not _same_floats(gs, ws):
        return None
    return GRADIENTS_ADDED[calls[0].name](gs, ws, **dict(calls[0].kwargs))


register_lists("torch", ListTable)
register_multi("torch", "adam", adam)
