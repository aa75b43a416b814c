"""The trainer registry: each trainer's parameters are its schema, checked when it is made."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from nndsl.errors import NndslError
from nndsl.ops import get
from nndsl.training.registry import TRAINERS
from nndsl.training.trainers.backprop import Backprop


def trainer(name: str, **params: Any) -> Any:
    return get(name, "trainer").compute(**params)


def test_trainers_are_frozen_dataclasses_registered_as_ops() -> None:
    assert trainer("backprop") == Backprop()
    assert set(TRAINERS) <= {d.name for d in __import__("nndsl").ops.all_ops()
                             if d.kind == "trainer"}
    gan = trainer("adversarial", generator="G", discriminator="D", k=2)
    assert (gan.generator, gan.discriminator, gan.k) == ("G", "D", 2)
    with pytest.raises(AttributeError):
        gan.k = 5  # type: ignore[misc]


@pytest.mark.parametrize(("name", "params", "word"), [
    ("adversarial", {"generator": "G", "discriminator": "G"}, "discriminator"),
    ("adversarial", {"generator": "G", "discriminator": "D", "k": 0}, "k"),
    ("contrastive_divergence", {"k": 0}, "k"),
    ("anneal", {"t0": 0.0}, "t0"),
    ("evolve", {"population": 1}, "population"),
    ("evolve", {"population": 8, "elite": 8}, "elite"),
    ("evolve", {"sigma": 0.0}, "sigma"),
    ("perceptron", {"lr": 0.0}, "lr"),
    ("delta", {"lr": -1.0}, "lr"),
])
def test_trainer_rejects_bad_params(name: str, params: dict, word: str) -> None:
    with pytest.raises(NndslError, match=word):
        trainer(name, **params)


def test_hebbian_storage_rule() -> None:
    patterns = np.array([[1, -1, 1, -1], [1, 1, -1, -1]], dtype=float)
    weight, bias = trainer("hebbian").store(patterns)
    want = (np.outer(patterns[0], patterns[0]) + np.outer(patterns[1], patterns[1])) / 2
    np.fill_diagonal(want, 0)
    np.testing.assert_array_equal(weight, want)
    np.testing.assert_array_equal(bias, 0)
    raw, mean_bias = trainer("hebbian", normalize=False, zero_diagonal=False,
                             bias="mean_activity").store(patterns)
    np.testing.assert_array_equal(np.diag(raw), [2, 2, 2, 2])
    np.testing.assert_array_equal(mean_bias, [1, 0, 0, -1])
