"""The torch engine's finiteness check: one pass over all arrays, exact for every dtype."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

from nndsl.backends.torch.engine import TorchEngine  # noqa: E402

F64_MAX = 1.7e308


@pytest.mark.parametrize(("arrays", "bad"), [
    ({}, None),
    ({"a": torch.ones(3), "b": torch.tensor([1.0, math.nan])}, "b"),
    ({"a": torch.tensor([3e38, 3e38]), "b": torch.tensor([-3e38])}, None),  # no overflow
    ({"a": torch.tensor([F64_MAX, F64_MAX], dtype=torch.float64)}, None),
    ({"a": torch.ones(2, dtype=torch.float64), "b": torch.tensor([-math.inf],
                                                                 dtype=torch.float64)}, "b"),
    ({"a": torch.ones(2), "b": torch.tensor([1, 2]), "c": torch.tensor([math.inf])}, "c"),
])
def test_nonfinite_names_the_first_bad_array(arrays: dict, bad: str | None) -> None:
    engine = TorchEngine("cpu")
    assert engine.nonfinite(arrays) == bad
