"""Contrastive divergence: RBM training by k steps of Gibbs sampling."""

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


@trainer("contrastive_divergence")
@dataclass(frozen=True, kw_only=True)
class ContrastiveDivergence(Trainer):
    """dW = <v h^T>_data - <v h^T>_k, the second after k Gibbs steps from the data (CD-k)."""

    k: int = 1

    gradient_free = True
    reads = frozenset({"optimizer", "batch", "epochs", "shuffle"})

    def __post_init__(self) -> None:
        require(self.k >= 1, "k", self.k, "an integer >= 1")

    def run(self, session: Session, stage: Stage, index: int, start: Position | None) -> None:
        raise _not_yet("contrastive_divergence", stage)
