"""Multi-tensor optimizer updates (nndsl/training/multi.py) equal the per-weight rule bit for
bit, for every optimizer in the registry (a new one joins automatically), on NumPy (one flat
pass) and torch (the foreach family, adam's foreach native)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from nndsl.backends.numpy.prims import make_numpy_prims
from nndsl.backends.torch import multi as _torch_multi  # noqa: F401  (registers the forms)
from nndsl.backends.torch.prims import make_torch_prims

from nndsl import ops
from nndsl.training.multi import MultiUpdate

# settings beyond the defaults that take another path through a rule
VARIANTS: dict[str, list[dict[str, Any]]] = {
    "sgd": [{"momentum": 0.9}, {"momentum": 0.9, "nesterov": True},
            {"momentum": 0.5, "form": "classic"}, {"momentum": 0.5, "form": "ema"}],
    "adam": [{"eps_inside": True}],
    "adagrad": [{"eps_inside": True}],
    "rmsprop": [{"momentum": 0.9}, {"eps_inside": True}],
    "rprop": [{"variant": "plain"}],
}
SHAPES = [(3, 4), (4,), (2, 3, 2), (1,)]
CASES = [(name, params) for name in ops.names("optimizer")
         for params in [{}, *VARIANTS.get(name, [])]]


def _tables() -> dict[str, tuple[Any, Any]]:
    return {"numpy": (make_numpy_prims(), np.asarray),
            "torch": (make_torch_prims(training=False), torch.as_tensor)}


def _steps(dtype: Any = np.float64) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """Weights and four steps' gradients; some gradient entries repeat signs, some flip, some
    are zero, so the sign-based rules take every branch."""
    rng = np.random.default_rng(3)
    weights = {f"w{i}": rng.normal(size=s).astype(dtype) for i, s in enumerate(SHAPES)}
    grads = []
    for step in range(4):
        g = {k: rng.normal(size=v.shape).astype(dtype) for k, v in weights.items()}
        g["w0"][0] = 0.0 if step == 2 else g["w0"][0]
        grads.append(g)
    return [(weights, g) for g in grads]


def _run(update: Any, P: Any, convert: Any, dtype: Any = np.float64) -> dict[str, np.ndarray]:
    steps = _steps(dtype)
    weights = {k: convert(v.copy()) for k, v in steps[0][0].items()}
    state: dict[str, dict[str, Any]] = {}
    for t, (_, grads) in enumerate(steps, start=1):
        update(P, weights, {k: convert(v) for k, v in grads.items()}, state, 0.05, t)
    return {**{k: np.asarray(v) for k, v in weights.items()},
            **{f"{k}::{slot}": np.asarray(v) for k, s in state.items() for slot, v in s.items()}}


@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize(("name", "params"), CASES, ids=[f"{n}-{i}" for i, (n, _) in
                                                        enumerate(CASES)])
def test_multi_tensor_equals_per_weight(backend: str, name: str, params: dict[str, Any]) -> None:
    P, convert = _tables()[backend]
    params = {"lr": 0.01, **params}
    rule = ops.get(name, "optimizer").function_for(P)

    def per_weight(P: Any, weights: dict, grads: dict, state: dict, rate: float, t: int) -> None:
        for k, g in grads.items():
            weights[k], state[k] = rule(P, weights[k], g, state.get(k, {}), rate, t, **params)

    multi = MultiUpdate(backend, name, rule)
    expected = _run(per_weight, P, convert)
    got = _run(lambda *a: multi(*a, params), P, convert)
    assert expected.keys() == got.keys()
    for key in expected:
        assert got[key].dtype == expected[key].dtype
        np.testing.assert_array_equal(got[key], expected[key], err_msg=key)


def test_torch_adam_foreach_equals_its_native_in_float32() -> None:
    P, convert = _tables()["torch"]
    rule = ops.get("adam", "optimizer").function_for(P)
    multi = MultiUpdate("torch", "adam", rule)
    assert multi.group is _torch_multi.adam  # the foreach native, not the generic lists

    def per_weight(P: Any, weights: dict, grads: dict, state: dict, rate: float, t: int) -> None:
        for k, g in grads.items():
            weights[k], state[k] = rule(P, weights[k], g, state.get(k, {}), rate, t, lr=0.01)

    expected = _run(per_weight, P, convert, np.float32)
    got = _run(lambda *a: multi(*a, {"lr": 0.01}), P, convert, np.float32)
    for key in expected:
        np.testing.assert_array_equal(got[key], expected[key], err_msg=key)


def test_weights_of_different_dtypes_are_updated_in_separate_groups() -> None:
    P = make_numpy_prims()
    rule = ops.get("adam", "optimizer").function_for(P)
    multi = MultiUpdate("numpy", "adam", rule)
    weights = {"a": np.ones(3), "b": np.ones(2, np.float32), "c": np.ones(4)}
    grads = {k: np.full_like(v, 0.5) for k, v in weights.items()}
    state: dict[str, dict[str, Any]] = {}
    multi(P, weights, grads, state, 0.1, 1, {"lr": 0.1})
    assert weights["b"].dtype == np.float32 and weights["a"].dtype == np.float64
    assert set(state) == {"a", "b", "c"} and state["c"]["m"].shape == (4,)
    np.testing.assert_allclose(weights["a"], 0.9)
