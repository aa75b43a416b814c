"""A regularizer's closed-form gradient (`grad=`) is its penalty's derivative: equal to reverse
mode over the penalty (NumPy) and to torch autograd, at zeros too; and the torch engine trains
the same with or without it (the closed form only keeps the penalty off the autograd graph)."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest
from nndsl.backends.numpy.autodiff import value_and_grad
from nndsl.backends.numpy.prims import make_numpy_prims

from nndsl import ops
from nndsl.ops.registry import table

PARAMS = {"l1": {"strength": 0.3}, "l2": {"strength": 0.3}, "elastic": {"l1": 0.2, "l2": 0.7}}
WITH_GRAD = sorted(d.name for d in ops.all_ops() if d.kind == "regularizer" and d.grad)


def test_the_shipped_regularizers_have_a_closed_form() -> None:
    assert WITH_GRAD == sorted(PARAMS)


def _weights() -> np.ndarray:
    w = np.random.default_rng(0).standard_normal((4, 5))
    w[0, :2] = 0.0  # sign'(0) and |0|: both sides must say 0
    return w


@pytest.mark.parametrize("name", WITH_GRAD)
def test_closed_form_equals_reverse_mode(name: str) -> None:
    opdef, params, w = ops.get(name, "regularizer"), PARAMS[name], _weights()
    _, (want,) = value_and_grad(lambda P, x: opdef.compute(P, x, **params), w)
    got = opdef.grad(make_numpy_prims(), w, **params)
    np.testing.assert_allclose(got, want, rtol=1e-15, atol=0)


@pytest.mark.parametrize("name", WITH_GRAD)
def test_closed_form_equals_torch_autograd(name: str) -> None:
    torch = pytest.importorskip("torch")
    from nndsl.backends.torch.prims import make_torch_prims

    opdef, params = ops.get(name, "regularizer"), PARAMS[name]
    w = torch.tensor(_weights(), requires_grad=True)
    P = make_torch_prims()
    (want,) = torch.autograd.grad(opdef.compute(P, w, **params), [w])
    assert torch.equal(opdef.grad(P, w.detach(), **params), want)


def test_torch_engine_gives_the_same_step_without_the_closed_form(
        monkeypatch: pytest.MonkeyPatch) -> None:
    torch = pytest.importorskip("torch")
    from nndsl.backends.torch.engine import TorchEngine

    from nndsl.ir import Call
    from nndsl.program import load

    from .conftest import ROOT

    graph = load(ROOT / "specs" / "xor.nn")[0].models[0]
    train = load(ROOT / "specs" / "xor.nn")[0].trains[0]
    rng = np.random.default_rng(1)
    weights = {w.name: torch.tensor(rng.standard_normal(w.shape), dtype=torch.float32)
               for w in graph.weights}
    feeds = {"x": torch.tensor(rng.standard_normal((4, 2)), dtype=torch.float32),
             "y": torch.tensor(rng.standard_normal((4, 1)), dtype=torch.float32)}
    regs = {w.name: [Call("l2", (("strength", 0.1),)), Call("l1", (("strength", 0.05),))]
            for w in graph.weights if w.role == "weight"}

    def step() -> tuple[float, dict[str, Any]]:
        loss, grads, _ = TorchEngine("cpu").loss_and_grad(graph, train.loss, feeds, weights, (),
                                                          7, regs)
        return loss, grads

    closed = step()
    for name in ("l1", "l2"):
        monkeypatch.setitem(table("regularizer"), name,
                            dataclasses.replace(ops.get(name, "regularizer"), grad=None))
    traced = step()
    # float32 weights: the closed form sums its penalty from norms, in another order
    assert closed[0] == pytest.approx(traced[0], rel=1e-6)
    for k, g in closed[1].items():
        np.testing.assert_allclose(g.numpy(), traced[1][k].numpy(), rtol=1e-6, atol=1e-8)
