"""Neuroevolution: a generational genetic algorithm over the flat weight vector."""

from __future__ import annotations

from dataclasses import dataclass

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


@trainer("evolve")
@dataclass(frozen=True, kw_only=True)
class Evolve(Trainer):
    """Each generation: keep the elite, refill with mutated children w + N(0, sigma^2).

    Fitness is minus the training loss; elite defaults to population // 4 (at least 1);
    crossover = true mixes two elite parents gene by gene before mutating. No gradients.
    """

    population: int = 64
    sigma: float = 0.1
    elite: int | None = None
    crossover: bool = True

    gradient_free = True
    reads = frozenset({"loss", "epochs"})
    needs_loss = True

    def __post_init__(self) -> None:
        require(self.population >= 2, "population", self.population, "an integer >= 2")
        require(self.sigma > 0, "sigma", self.sigma, "a positive number")
        kept = self.elite if self.elite is not None else max(1, self.population // 4)
        require(1 <= kept < self.population, "elite", kept,
                f"an integer in [1, {self.population - 1}]")

    def run(self, session: Session, stage: Stage, index: int, start: Position | None) -> None:
        raise _not_yet("evolve", stage)
