"""The torch step's cheaper bookkeeping gives the per-weight numbers: penalties grouped through
the list table (foreach calls) equal the penalty taken weight by weight bit for bit, and the
one-reduction finiteness check names the same array as the exact per-array check."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

from nndsl.backends.torch.engine import TorchEngine  # noqa: E402

from nndsl.ir import Call  # noqa: E402

L2, L1 = Call("l2", (("strength", 1e-3),)), Call("l1", (("strength", 3e-4),))
ELASTIC = Call("elastic", (("l1", 2e-4), ("l2", 5e-3)))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_grouped_penalties_equal_the_per_weight_ones(dtype: torch.dtype) -> None:
    engine = TorchEngine("cpu")
    gen = torch.Generator().manual_seed(3)
    shapes = {"a.weight": (7, 5), "b.weight": (5, 3), "c.weight": (3,), "d.weight": (4, 4)}
    weights = {k: torch.randn(s, generator=gen, dtype=dtype) for k, s in shapes.items()}
    grads = {k: torch.randn(s, generator=gen, dtype=dtype) for k, s in shapes.items()}
    block = [L2, L1]  # the train block's, shared; c and d have their own
    penalties = {"a.weight": block, "b.weight": block, "c.weight": [ELASTIC],
                 "d.weight": [L2]}
    regs, traced, groups = engine._penalties(penalties, list(shapes))
    assert not traced and sorted(map(len, (g[0] for g in groups))) == [1, 1, 2]
    out = dict(grads)
    values = engine._closed_penalties(groups, weights, out)
    for k, calls in penalties.items():
        assert torch.equal(values[k], engine._penalty(calls, weights[k]))
        assert torch.equal(out[k], grads[k] + engine._penalty(calls, weights[k], part=1))


@pytest.mark.parametrize(("arrays", "bad"), [
    ({"a": torch.full((4,), 1e30), "b": torch.full((3,), -2e30)}, None),  # norms overflow
    ({"a": torch.ones(3), "b": torch.tensor([1.0, math.nan]), "c": torch.tensor([math.inf])},
     "b"),
    ({"a": torch.ones(2, dtype=torch.float16), "b": torch.tensor([6e4, -6e4],
                                                                 dtype=torch.float16)}, None),
    ({"a": torch.ones(2, dtype=torch.bfloat16), "b": torch.tensor([-math.inf],
                                                                  dtype=torch.bfloat16)}, "b"),
])
def test_the_fast_check_agrees_with_the_exact_one(arrays: dict, bad: str | None) -> None:
    assert TorchEngine("cpu").nonfinite(arrays) == bad
