"""torch's adam kernel updates a weight where it lies only when nothing else can see it change
(backends/torch/fused.py): from its second step on, a weight it returned and that only the
optimizer's list holds. A weight that anything else refers to (a name, a view, a NumPy array,
an autograd record), or a tensor the caller made (which may share memory with the caller's
arrays), is copied first; in place or not, the arithmetic is the same bit for bit."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from nndsl.backends.torch import fused
from nndsl.backends.torch import multi as _torch_multi  # noqa: F401  (registers adam's group)
from nndsl.backends.torch.prims import make_torch_prims

from nndsl import ops
from nndsl.training.multi import MultiUpdate

SHAPES = {"w0": (4, 3), "w1": (3, 5), "w2": (5,), "w3": (2, 2)}
STEPS = 4


def _arrays(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {k: rng.normal(size=s).astype(np.float32) for k, s in SHAPES.items()}


def _train(hold: Callable[[dict[str, Any], int], Any] | None = None
           ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], list[Any]]:
    """STEPS adam updates of torch weights made from NumPy arrays (sharing their memory);
    `hold(weights, step)` may keep something of the weights before each step. Returns the
    caller's arrays, the final weights, and what was held (with its value then)."""
    P = make_torch_prims(training=False)
    update = MultiUpdate("torch", "adam", ops.get("adam", "optimizer").function_for(P))
    assert update.group is _torch_multi.adam
    arrays = _arrays(0)
    weights = {k: torch.as_tensor(v) for k, v in arrays.items()}  # shares the arrays' memory
    state: dict[str, dict[str, Any]] = {}
    held = []
    for step in range(1, STEPS + 1):
        if hold is not None:
            kept = hold(weights, step)
            held.append((kept, np.array(_value(kept), copy=True)))
        grads = {k: torch.as_tensor(v) for k, v in _arrays(step).items()}
        update(P, weights, grads, state, 0.01, step, {"lr": 0.01})
    return arrays, {k: v.numpy().copy() for k, v in weights.items()}, held


def _value(kept: Any) -> np.ndarray:
    if isinstance(kept, torch.Tensor):
        return kept.detach().numpy()
    return np.asarray(kept)


def test_later_steps_update_the_weights_where_they_lie(monkeypatch: pytest.MonkeyPatch) -> None:
    addresses: list[dict[str, int]] = []
    _train(lambda ws, step: addresses.append({k: v.data_ptr() for k, v in ws.items()}))
    assert addresses[0] != addresses[1]  # the first step copies the caller's tensors
    assert addresses[1] == addresses[2] == addresses[3]  # then the same memory each step


def test_in_place_or_copied_the_numbers_are_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    arrays, in_place, _ = _train()
    np.testing.assert_array_equal(arrays["w0"], _arrays(0)["w0"])  # the caller's arrays kept
    for k, v in arrays.items():
        np.testing.assert_array_equal(v, _arrays(0)[k], err_msg=k)
    monkeypatch.setattr(fused, "_writable", lambda ws, i: False)
    _, copied, _ = _train()
    for k in SHAPES:
        np.testing.assert_array_equal(in_place[k], copied[k], err_msg=k)


HOLDERS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "a name": lambda ws: ws["w0"],
    "a view": lambda ws: ws["w1"].t(),
    "a NumPy array": lambda ws: ws["w2"].numpy(),
    "an autograd record": lambda ws: (ws["w3"] @ torch.ones(2, requires_grad=True)).sum(),
}


@pytest.mark.parametrize("holder", list(HOLDERS))
def test_a_weight_held_elsewhere_is_not_written(holder: str) -> None:
    """Whatever refers to a weight after a step keeps the value it had then."""
    held = _train(lambda ws, step: HOLDERS[holder](ws))[2]
    for kept, value in held[1:]:
        if holder == "an autograd record":  # the weight saved for backward is unchanged:
            kept.backward()  # its gradient is still computed from the numbers it was saved with
            continue
        np.testing.assert_array_equal(_value(kept), value)


def test_autograd_sees_the_weight_it_saved() -> None:
    records: list[tuple[torch.Tensor, torch.Tensor, np.ndarray]] = []

    def hold(ws: dict[str, Any], step: int) -> None:
        x = torch.ones(2, requires_grad=True)
        records.append((x, (ws["w3"] @ x).sum(), ws["w3"].numpy().sum(0).copy()))

    _train(hold)
    for x, y, expected in records:  # d/dx sum(W x) = column sums of W as it was
        y.backward()
        np.testing.assert_array_equal(x.grad.numpy(), expected)


def test_a_failing_update_leaves_the_weights_it_was_given() -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("broken")

    update = MultiUpdate("torch", "adam", broken)
    update.group = broken
    weights = {k: torch.as_tensor(v) for k, v in _arrays(0).items()}
    before = dict(weights)
    with pytest.raises(RuntimeError):
        update(make_torch_prims(training=False), weights,
               {k: torch.ones(s) for k, s in SHAPES.items()}, {}, 0.01, 1, {})
    assert list(weights) == list(before) and all(weights[k] is before[k] for k in before)


def test_a_holder_outside_the_list_is_always_counted() -> None:
    """The count of a weight held by its list alone is measured when the module loads (Python
    versions count the interpreter's own references differently); any other holder adds one."""
    alone = [torch.zeros(3)]
    assert fused._references(alone, 0) == fused._ONLY_THE_LIST
    held = alone[0]
    assert fused._references(alone, 0) == fused._ONLY_THE_LIST + 1
    del held
    assert fused._references(alone, 0) == fused._ONLY_THE_LIST
    twice = [torch.zeros(3)]
    twice.append(twice[0])  # the same tensor twice in one list: written once would be wrong
    assert fused._references(twice, 0) == fused._ONLY_THE_LIST + 1
