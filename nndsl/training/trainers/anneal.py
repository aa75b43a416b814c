"""Simulated annealing of the weights: random changes kept by the Boltzmann rule while the
temperature cools."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from nndsl.errors import NndslError
from nndsl.ops.optimizers import require
from nndsl.training.registry import Trainer, trainer
from nndsl.training.session import Position, Session
from nndsl.training.stages import Stage

F32 = np.float32


def _not_yet(name: str, stage: Stage) -> NndslError:
    return NndslError(f"trainer '{name}' does not train yet", stage.trainer_call.span,
                      hint="backprop, hebbian and perceptron train today")


@trainer("anneal")
@dataclass(frozen=True, kw_only=True)
class Anneal(Trainer):
    """Random weight changes kept with probability exp(-dc / (k T(t))) while T(t) cools.

    Boltzmann: Gaussian steps, T = t0 / log(1 + t); Cauchy: Cauchy steps scaled by rho (the
    learning coefficient), T = t0 / (1 + t). k is the Boltzmann constant of the rule.
    """

    t0: float = 10.0
    cooling: Literal["boltzmann", "cauchy"] = "cauchy"
    rho: float = 1.0
    k: float = 1.0

    gradient_free = True
    reads = frozenset({"loss", "epochs"})
    needs_loss = True

    def __post_init__(self) -> None:
        for name in ("t0", "rho", "k"):
            require(getattr(self, name) > 0, name, getattr(self, name), "a positive number")

    def temperature(self, t: int) -> float:
        """T0 / log(1 + t) (boltzmann) or T0 / (1 + t) (cauchy), t >= 1."""
        return self.t0 / (math.log1p(t) if self.cooling == "boltzmann" else 1.0 + t)

    def run(self, session: Session, stage: Stage, index: int, start: Position | None) -> None:
        raise _not_yet("anneal", stage)
