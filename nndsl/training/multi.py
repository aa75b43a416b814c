"""Multi-tensor optimizer updates: every trainable weight of a dtype updated by one call of the
optimizer rule instead of one call per weight.

The rules in nndsl/ops/optimizers.py are elementwise, written once against the primitive table
`P`; applied to many weights at once they run unchanged on:

- NumPy: one flat buffer per dtype (the weights, gradients and each state slot concatenated),
  so each primitive is one vectorised pass over every weight;
- torch: lists of tensors, through `ListTable`, whose arithmetic is the `torch._foreach_*`
  family (one dispatch per primitive for all weights; fused multi-tensor kernels on CUDA);
- a backend may register a multi-tensor native (`register_multi`): torch's adam is
  torch.optim.Adam's foreach kernels (lerp, addcmul, addcdiv), as its per-weight native is.

Each element sees the same operations as in the per-weight rule, so the result is the same
bit for bit (tests/test_multi_tensor.py, over every registered optimizer). The state stays per
weight (`state[weight][slot]`), which is what a checkpoint stores.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

State = dict[str, Any]
MultiRule = Callable[..., tuple[list[Any], list[State]]]
NATIVE: dict[tuple[str, str], MultiRule] = {}  # (backend, optimizer) -> multi-tensor form
LISTS: dict[str, Callable[[Any], Any]] = {}  # backend -> a table over lists of its arrays


def register_multi(backend: str, optimizer: str, fn: MultiRule) -> None:
    """A backend's own multi-tensor form of an optimizer (same signature as the rule, with
    lists of weights, gradients and states)."""
    NATIVE[(backend, optimizer)] = fn


def register_lists(backend: str, make: Callable[[Any], Any]) -> None:
    """How a backend makes a table whose primitives take lists of its arrays."""
    LISTS[backend] = make


class MultiUpdate:
    """One optimizer's update of many weights at once, grouped by dtype, device and the state
    slots each weight holds (weights that differ there are updated in separate calls)."""

    def __init__(self, backend: str, name: str, rule: Callable[..., Any]) -> None:
        self.rule = rule
        native = NATIVE.get((backend, name))
        if native is not None:
            self.group = native
        elif backend in LISTS:
            self.group = _listed(rule, LISTS[backend])
        elif backend == "numpy":
            self.group = _flat(rule)
        else:
            self.group = _one_by_one(rule)

    def __call__(self, P: Any, weights: dict[str, Any], grads: dict[str, Any],
                 state: dict[str, State], rate: float, t: int, params: dict[str, Any]) -> None:
        """Update `weights` and `state` (per weight) in place from `grads`. A group's weights
        are handed to its rule in a list that alone holds them here, so that the rule may
        reuse the memory of one no one else holds (torch's adam kernel does:
        backends/torch/fused.py)."""
        for names in _groups(weights, grads, state):
            if len(names) == 1:
                (name,) = names
                weights[name], state[name] = self.rule(P, weights[name], grads[name],
                                                       state.get(name, {}), rate, t, **params)
                continue
            given = [weights[k] for k in names]
            for k in names:  # handed over: the list alone holds them here (entries keep places)
                weights[k] = None
            try:
                new_w, new_s = self.group(P, given, [grads[k] for k in names],
                                          [state.get(k, {}) for k in names], rate, t, **params)
            except BaseException:
                weights.update(zip(names, given, strict=True))  # a failed rule changes nothing
                raise
            for k, w, s in zip(names, new_w, new_s, strict=True):
                weights[k], state[k] = w, s


def _groups(weights: dict[str, Any], grads: dict[str, Any],
            state: dict[str, State]) -> list[list[str]]:
    """The gradients' weights by (dtype, device, state slots), in the gradients' order."""
    groups: dict[tuple[Any, ...], list[str]] = {}
    for name in grads:
        w = weights[name]
        slots = state.get(name)
        key = (getattr(w, "dtype", type(w)), getattr(w, "device", None),
               tuple(sorted(slots)) if slots else ())
        groups.setdefault(key, []).append(name)
    return list(groups.values())


def _one_by_one(rule: Callable[..., Any]) -> MultiRule:
    def apply(P: Any, ws: list[Any], gs: list[Any], states: list[State], rate: float, t: int,
              **params: Any) -> tuple[list[Any], list[State]]:
        out = [rule(P, w, g, s, rate, t, **params) for w, g, s in zip(ws, gs, states,
                                                                       strict=True)]
        return [w for w, _ in out], [s for _, s in out]

    return apply


def _flat(rule: Callable[..., Any]) -> MultiRule:
    """The rule once over flat buffers (NumPy): weights, gradients and each slot concatenated;
    the results handed back as views of the rule's output, shaped like each weight."""

    def apply(P: Any, ws: list[Any], gs: list[Any], states: list[State], rate: float, t: int,
              **params: Any) -> tuple[list[Any], list[State]]:
        if not all(isinstance(w, np.ndarray) for w in ws):
            return _one_by_one(rule)(P, ws, gs, states, rate, t, **params)
        shapes = [w.shape for w in ws]
        cuts = np.cumsum([w.size for w in ws])[:-1]
        flat_state = {k: _concat([s[k] for s in states]) for k in states[0]}
        w, s = rule(P, _concat(ws), _concat(gs), flat_state, rate, t, **params)
        return _split(w, cuts, shapes), [dict(zip(s, parts, strict=True)) for parts in zip(
            *(_split(v, cuts, shapes) for v in s.values()), strict=True)] if s else [
            {} for _ in ws]

    return apply


def _concat(arrays: list[Any]) -> np.ndarray:
    return np.concatenate([np.asarray(a).reshape(-1) for a in arrays])


def _split(flat: Any, cuts: np.ndarray, shapes: list[tuple[int, ...]]) -> list[np.ndarray]:
    flat = np.asarray(flat)
    return [part.reshape(shape) for part, shape in zip(np.split(flat, cuts), shapes,
                                                       strict=True)]


def _listed(rule: Callable[..., Any], make: Callable[[Any], Any]) -> MultiRule:
    """The rule once on lists of tensors, through the backend's list table."""

    def apply(P: Any, ws: list[Any], gs: list[Any], states: list[State], rate: float, t: int,
              **params: Any) -> tuple[list[Any], list[State]]:
        listed = {k: [s[k] for s in states] for k in states[0]}
        w, s = rule(make(P), list(ws), list(gs), listed, rate, t, **params)
        return list(w), [{k: v[i] for k, v in s.items()} for i in range(len(ws))]

    return apply
