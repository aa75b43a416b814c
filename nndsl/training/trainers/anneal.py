"""Simulated annealing of the weights (Boltzmann and Cauchy training): random changes kept by
the Boltzmann rule while the temperature cools. The shared machinery is in _annealing.py."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from nndsl.training.registry import trainer
from nndsl.training.session import Position, Session
from nndsl.training.stages import Stage
from nndsl.training.trainers._annealing import STEPS, Annealing, AnnealingLoop


@trainer("anneal")
@dataclass(frozen=True, kw_only=True)
class Anneal(Annealing):
    """Random changes of every weight kept with probability exp(-dc / (k T)) while T cools.

    Each epoch is one sweep: all trainable weights change at once by boltzmann's Gaussian steps
    (variance (rho T)^2 / 2) or cauchy's x = rho T tan(u), u ~ U(-pi/2, pi/2); the change is
    kept if the loss on every training row falls, else with probability exp(-dc / (k T)).
    T(t) = t0 / log(1 + t) (boltzmann) or t0 / (1 + t) (cauchy) at sweep t = 1, 2, ...; t0
    defaults to 1 (boltzmann) or 100 (cauchy); k = auto sets k t0 = 0.3 x the initial loss.
    After each sweep the weights of units saturated on every row (output within
    saturation x its range of a limit) are squashed, w <- squash tanh(w / squash); squash = 0
    turns that off. Records temperature and acceptance (the fraction of sweeps kept).
    """

    cooling: Literal["boltzmann", "cauchy"] = "boltzmann"
    t0: float | None = None
    rho: float = 10.0
    k: float | Literal["auto"] = "auto"
    squash: float = 10.0
    saturation: float = 0.05

    gradient_free = True

    @property
    def law(self) -> str:
        return self.cooling

    def run(self, session: Session, stage: Stage, index: int, start: Position | None) -> None:
        AnnealLoop(session, stage, index, start, self).run()


class AnnealLoop(AnnealingLoop):
    rule: Anneal

    def propose(self, table: Any, T: float) -> dict[str, Any]:
        P, step = self.s.engine.P, STEPS[self.rule.cooling]
        return {name: P.add(self.weights[name], step(table, P, self.weights[name],
                                                     self.rule.rho * T, self.dtypes[name]))
                for name in self.names}

