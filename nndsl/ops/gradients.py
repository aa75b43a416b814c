"""Gradient clipping and gradient noise, applied between the backward pass and the update.

Calling conventions (the trainer supplies the leading positional arguments):

- `clip`: `fn(P, grads: list, *, params) -> list`, all of a model's gradients at once (a norm
  clip needs the global norm); applied after gradient noise, before the optimizer.
- `noise`: `fn(P, g, step, *, params) -> g`, once per gradient; `step` counts the updates
  already applied (0 for the first), as for schedules.
"""

from __future__ import annotations

import math
from typing import Any

from nndsl.ops.optimizers import require
from nndsl.ops.registry import op

# --- gradient clipping -----------------------------------------------------------------------


@op("norm", "clip")
def clip_norm(P: Any, grads: list[Any], *, max: float) -> list[Any]:
    """g <- g min(1, max / (||G|| + 1e-6)), ||G|| the L2 norm of all gradients together.

    torch.nn.utils.clip_grad_norm_(max_norm=max) (the 1e-6 included).
    """
    require(max > 0, "max", max, "a positive number")
    if not grads:
        return []
    total = P.sqrt(_sum(P, [P.sum(P.mul(g, g)) for g in grads]))
    scale = P.minimum(P.div(max, P.add(total, 1e-6)), 1.0)
    return [P.mul(g, scale) for g in grads]


def _sum(P: Any, xs: list[Any]) -> Any:
    total = xs[0]
    for x in xs[1:]:
        total = P.add(total, x)
    return total


@op("value", "clip")
def clip_value(P: Any, grads: list[Any], *, max: float) -> list[Any]:
    """g <- min(max(g, -max), max) elementwise  (torch.nn.utils.clip_grad_value_)."""
    require(max > 0, "max", max, "a positive number")
    return [P.minimum(P.maximum(g, -max), max) for g in grads]


# --- gradient noise --------------------------------------------------------------------------


@op("annealed", "noise")
def annealed(P: Any, g: Any, step: int, *, eta: float = 0.3, gamma: float = 0.55) -> Any:
    """g + N(0, sigma_t^2), sigma_t^2 = eta / (1 + t)^gamma, t = step: annealed gradient noise.

    Defaults from Neelakantan et al. (2015); t = 0 at the first update.
    """
    require(eta >= 0, "eta", eta, "a number >= 0")
    require(gamma >= 0, "gamma", gamma, "a number >= 0")
    std = math.sqrt(eta / (1.0 + step) ** gamma)
    return P.add(g, P.mul(std, P.random_normal_like(g)))
