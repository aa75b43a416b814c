"""Trainer configurations: `fn(*, params) -> config`, a frozen dataclass the trainers run from."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from nndsl.ops.optimizers import require
from nndsl.ops.registry import Label, op

F32 = np.float32

@dataclass(frozen=True, slots=True)
class Backprop:
    """Forward, loss, backward, optimizer update: the default for every train block."""


@op("backprop", "trainer")
def backprop() -> Backprop:
    """Gradient descent on the loss with the train block's optimizer (the default trainer)."""
    return Backprop()


@dataclass(frozen=True, slots=True)
class Adversarial:
    """GAN training (PROC-20): per round, k discriminator updates, then one generator update."""

    generator: str
    discriminator: str
    k: int
    generator_loss: str
    prior: str

    def sample_prior(self, rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
        """z ~ N(0, I) (prior = normal) or U(-1, 1) (prior = uniform), float32."""
        if self.prior == "normal":
            return rng.standard_normal(shape).astype(F32)
        return rng.uniform(-1.0, 1.0, shape).astype(F32)


@op("adversarial", "trainer")
def adversarial(*, generator: Label, discriminator: Label, k: int = 1,
                generator_loss: Literal["non_saturating", "saturating"] = "non_saturating",
                prior: Literal["normal", "uniform"] = "normal") -> Adversarial:
    """k discriminator steps on -log D(x) - log(1 - D(G(z))), then one generator step.

    The generator minimises -log D(G(z)) (non_saturating) or log(1 - D(G(z))) (saturating, the
    original minimax form); z is drawn from `prior` with the generator's input shape (CONV-26).
    """
    require(generator != discriminator, "discriminator", discriminator,
            "a different model from the generator")
    require(k >= 1, "k", k, "an integer >= 1")
    return Adversarial(generator, discriminator, k, generator_loss, prior)


@dataclass(frozen=True, slots=True)
class Hebbian:
    """One-shot Hebbian storage of patterns (Hopfield, PROC-25); no iterative training."""

    normalize: bool
    zero_diagonal: bool
    bias: str

    def store(self, patterns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(W, b) for patterns [M, N]: W = (1/M) sum x x^T (or the sum), b = 0 or mean(x)."""
        x = np.asarray(patterns, dtype=np.float64)
        weight = x.T @ x / (len(x) if self.normalize else 1)
        if self.zero_diagonal:
            np.fill_diagonal(weight, 0.0)
        bias = x.mean(axis=0) if self.bias == "mean_activity" else np.zeros(x.shape[1])
        return weight, bias


@op("hebbian", "trainer")
def hebbian(*, normalize: bool = True, zero_diagonal: bool = True,
            bias: Literal["zero", "mean_activity"] = "zero") -> Hebbian:
    """W = (1/M) sum_m x_m x_m^T with zero diagonal, b = 0 (seed 001's storage rule, CONV-16).

    normalize = false drops the 1/M; bias = mean_activity is the seed demo's mean pattern
    activity (CONV-15). The patterns are the training data's input rows.
    """
    return Hebbian(normalize, zero_diagonal, bias)


@dataclass(frozen=True, slots=True)
class ContrastiveDivergence:
    """RBM training by CD-k: k alternating Gibbs steps from the data for the negative phase."""

    k: int


@op("contrastive_divergence", "trainer")
def contrastive_divergence(*, k: int = 1) -> ContrastiveDivergence:
    """dW = <v h^T>_data - <v h^T>_k, the second after k Gibbs steps from the data (CD-k)."""
    require(k >= 1, "k", k, "an integer >= 1")
    return ContrastiveDivergence(k)


@dataclass(frozen=True, slots=True)
class Annealing:
    """Simulated annealing of the weights (OPT-19, OPT-20); t counts sweeps from 1."""

    t0: float
    cooling: str
    rho: float
    k: float

    def temperature(self, t: int) -> float:
        """T0 / log(1 + t) (boltzmann, PROC-04) or T0 / (1 + t) (cauchy, PROC-05), t >= 1."""
        return self.t0 / (math.log1p(t) if self.cooling == "boltzmann" else 1.0 + t)

    def step(self, rng: np.random.Generator, shape: tuple[int, ...], t: int) -> np.ndarray:
        """A random weight change: N(0, (rho T)^2 / 2) or rho T tan(U(-pi/2, pi/2)) (Cauchy)."""
        scale = self.rho * self.temperature(t)
        if self.cooling == "boltzmann":
            return scale / math.sqrt(2.0) * rng.standard_normal(shape)
        return scale * np.tan(rng.uniform(-np.pi / 2, np.pi / 2, shape))

    def accept(self, cost_change: float, t: int, u: float) -> bool:
        """Keep a change that lowers the cost; else keep it if u < exp(-change / (k T))."""
        if cost_change <= 0:
            return True
        return u < math.exp(-cost_change / (self.k * self.temperature(t)))


@op("anneal", "trainer")
def anneal(*, t0: float = 10.0, cooling: Literal["boltzmann", "cauchy"] = "cauchy",
           rho: float = 1.0, k: float = 1.0) -> Annealing:
    """Random weight changes kept with probability exp(-dc / (k T(t))) while T(t) cools.

    Boltzmann: Gaussian steps, T = t0 / log(1 + t); Cauchy: Cauchy steps scaled by rho (seed
    000's learning coefficient), T = t0 / (1 + t). k is the Boltzmann constant of the rule.
    """
    for name, value in (("t0", t0), ("rho", rho), ("k", k)):
        require(value > 0, name, value, "a positive number")
    return Annealing(t0, cooling, rho, k)


@dataclass(frozen=True, slots=True)
class Evolve:
    """A generational GA over flat weight vectors (CNE, PROC-27): one generation per epoch."""

    population: int
    sigma: float
    elite: int
    crossover: bool

    def next_generation(self, rng: np.random.Generator, genomes: np.ndarray,
                        fitness: np.ndarray) -> np.ndarray:
        """Keep the `elite` fittest (higher is better); breed the rest from them and mutate."""
        parents = genomes[np.argsort(-np.asarray(fitness), kind="stable")[: self.elite]]
        count = self.population - self.elite
        mothers = parents[rng.integers(0, self.elite, count)]
        children = mothers
        if self.crossover:
            fathers = parents[rng.integers(0, self.elite, count)]
            children = np.where(rng.random(mothers.shape) < 0.5, mothers, fathers)
        children = children + self.sigma * rng.standard_normal(children.shape)
        return np.concatenate([parents, children])


@op("evolve", "trainer")
def evolve(*, population: int = 64, sigma: float = 0.1, elite: int | None = None,
           crossover: bool = True) -> Evolve:
    """Each generation: keep the elite, refill with mutated children w + N(0, sigma^2).

    Fitness is minus the training loss; elite defaults to population // 4 (at least 1);
    crossover = true mixes two elite parents gene by gene before mutating. No gradients.
    """
    require(population >= 2, "population", population, "an integer >= 2")
    require(sigma > 0, "sigma", sigma, "a positive number")
    kept = elite if elite is not None else max(1, population // 4)
    require(1 <= kept < population, "elite", kept, f"an integer in [1, {population - 1}]")
    return Evolve(population, sigma, kept, crossover)
