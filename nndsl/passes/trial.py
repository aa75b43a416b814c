"""Trial runs of a train block's rules: each optimizer, schedule, clip, noise, early-stop rule and
trainer runs once on tiny values while the spec is checked. The rules validate their own
hyper-parameters when they run, so `sgd(lr=-1)` or `step(every=0)` is reported by `nndsl check`
at the call — not by `nndsl train` after the run directory exists."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from nndsl import ops
from nndsl.errors import NndslError
from nndsl.ir import Call


def _optimizer(fn: Callable[..., Any], kwargs: dict[str, Any], P: Any) -> None:
    w, g = np.ones(2), np.full(2, 0.5)
    fn(P, w, g, {}, float(kwargs.get("lr", 0.01) or 0.01), 1, **kwargs)


def _schedule(fn: Callable[..., Any], kwargs: dict[str, Any], P: Any) -> None:
    for step, epoch in ((0, 0), (7, 3)):
        fn(0.01, step, epoch, **kwargs)


TRIALS: dict[str, Callable[[Callable[..., Any], dict[str, Any], Any], Any]] = {
    "optimizer": _optimizer,
    "schedule": _schedule,
    "clip": lambda fn, kwargs, P: fn(P, [np.full(2, 3.0)], **kwargs),
    "grad_noise": lambda fn, kwargs, P: fn(P, np.ones(2), 0, **kwargs),
    "early_stop": lambda fn, kwargs, P: fn([1.0, 0.5, 0.75], **kwargs),
    "trainer": lambda fn, kwargs, P: fn(**kwargs),
}
KINDS = {"grad_noise": "noise"}  # setting -> op kind, where they differ


def try_setting(name: str, call: Call) -> None:
    """Run the rule `call` of train setting `name` once; its complaint, positioned at the call."""
    trial = TRIALS.get(name)
    if trial is None:
        return
    from nndsl.backends.numpy.prims import make_numpy_prims

    opdef = ops.get(call.name, KINDS.get(name, name), call.span)
    try:
        with np.errstate(all="ignore"):
            trial(opdef.compute, dict(call.kwargs), make_numpy_prims())
    except NndslError as e:
        e.span = e.span or call.span
        raise
    except (ValueError, TypeError, ArithmeticError) as e:
        raise NndslError(f"{call.name} cannot run with these settings: {e}", call.span) from e
