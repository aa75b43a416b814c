"""Generative adversarial training: k discriminator updates, then one generator update."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from nndsl.errors import NndslError
from nndsl.ops.optimizers import require
from nndsl.ops.registry import ModelName
from nndsl.training.registry import Trainer, trainer
from nndsl.training.session import Position, Session
from nndsl.training.stages import Stage

F32 = np.float32


def _not_yet(name: str, stage: Stage) -> NndslError:
    return NndslError(f"trainer '{name}' does not train yet", stage.trainer_call.span,
                      hint="backprop, hebbian and perceptron train today")


@trainer("adversarial")
@dataclass(frozen=True, kw_only=True)
class Adversarial(Trainer):
    """k discriminator steps on -log D(x) - log(1 - D(G(z))), then one generator step.

    The generator minimises -log D(G(z)) (non_saturating) or log(1 - D(G(z))) (saturating, the
    original minimax form); z is drawn from `prior` with the generator's input shape.
    """

    generator: ModelName
    discriminator: ModelName
    k: int = 1
    generator_loss: Literal["non_saturating", "saturating"] = "non_saturating"
    prior: Literal["normal", "uniform"] = "normal"

    reads = frozenset({"optimizer", "batch", "epochs", "shuffle"})

    def __post_init__(self) -> None:
        require(self.generator != self.discriminator, "discriminator", self.discriminator,
                "a different model from the generator")
        require(self.k >= 1, "k", self.k, "an integer >= 1")

    def run(self, session: Session, stage: Stage, index: int, start: Position | None) -> None:
        raise _not_yet("adversarial", stage)
