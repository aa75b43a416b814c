"""Learning-rate schedules: `fn(base_lr, step, epoch, *, params) -> float`, pure Python.

`base_lr` is the optimizer's configured `lr`. `step` counts the updates already applied (0 for
the first update) and `epoch` the epochs already completed (0 during the first). The trainer
calls the schedule before every update and passes the result to the optimizer as its `rate`.

Each schedule reads one counter, named in its formula as `epoch` or `step`. The epoch-based
ones equal torch.optim.lr_scheduler's when torch's scheduler is stepped once per epoch; the
time-based ones of the lecture notes (inverse_time, inv, anneal, warmup) count updates, so with
`batch = 1` their t is the notes' example index.
"""

from __future__ import annotations

import bisect
import math
from typing import Literal

from nndsl.ops.optimizers import require
from nndsl.ops.registry import op


def _positive(name: str, value: float) -> None:
    require(value > 0, name, value, "a positive number")


@op("constant", "schedule")
def constant(base_lr: float, step: int, epoch: int) -> float:
    """lr = base_lr."""
    return base_lr


@op("step", "schedule")
def step_decay(base_lr: float, step: int, epoch: int, *, every: int,
               gamma: float = 0.1) -> float:
    """lr = base_lr gamma^floor(epoch / every)  (torch StepLR(step_size=every, gamma))."""
    require(every >= 1, "every", every, "an integer >= 1")
    _positive("gamma", gamma)
    return base_lr * gamma ** (epoch // every)


@op("multistep", "schedule")
def multistep(base_lr: float, step: int, epoch: int, *, milestones: tuple[int, ...],
              gamma: float = 0.1) -> float:
    """lr = base_lr gamma^(number of milestones <= epoch)  (torch MultiStepLR)."""
    increasing = all(a < b for a, b in zip(milestones, milestones[1:], strict=False))
    require(bool(milestones) and milestones[0] >= 0 and increasing, "milestones", milestones,
            "a non-empty, strictly increasing list of epochs >= 0")
    _positive("gamma", gamma)
    return base_lr * gamma ** bisect.bisect_right(milestones, epoch)


@op("exponential", "schedule")
def exponential(base_lr: float, step: int, epoch: int, *, gamma: float) -> float:
    """lr = base_lr gamma^epoch  (torch ExponentialLR)."""
    _positive("gamma", gamma)
    return base_lr * gamma**epoch


@op("inverse_time", "schedule")
def inverse_time(base_lr: float, step: int, epoch: int, *, decay: float) -> float:
    """lr = base_lr / (1 + base_lr decay step): the lecture notes' eta_0 (1 + eta_0 lambda t)^-1.

    t is the update counter (the notes' example index when batch = 1). Note the base rate inside
    the bracket: Keras's InverseTimeDecay(decay_rate=r) is decay = r / base_lr here.
    """
    require(decay >= 0, "decay", decay, "a number >= 0")
    return base_lr / (1.0 + base_lr * decay * step)


@op("inv", "schedule")
def inv(base_lr: float, step: int, epoch: int, *, gamma: float, power: float) -> float:
    """lr = base_lr (1 + gamma step)^-power  (Caffe's "inv" policy)."""
    require(gamma >= 0, "gamma", gamma, "a number >= 0")
    require(power >= 0, "power", power, "a number >= 0")
    return base_lr * (1.0 + gamma * step) ** -power


@op("poly", "schedule")
def poly(base_lr: float, step: int, epoch: int, *, total: int, power: float = 1.0) -> float:
    """lr = base_lr (1 - min(epoch, total) / total)^power  (torch PolynomialLR, total_iters)."""
    require(total >= 1, "total", total, "an integer >= 1")
    require(power >= 0, "power", power, "a number >= 0")
    return base_lr * (1.0 - min(epoch, total) / total) ** power


@op("cosine", "schedule")
def cosine(base_lr: float, step: int, epoch: int, *, epochs: int, min_lr: float = 0.0) -> float:
    """lr = min_lr + (base_lr - min_lr) (1 + cos(pi min(epoch, epochs) / epochs)) / 2.

    torch CosineAnnealingLR(T_max=epochs, eta_min=min_lr) up to `epochs`; after that the rate
    stays at min_lr (torch's keeps following the cosine back up).
    """
    require(epochs >= 1, "epochs", epochs, "an integer >= 1")
    require(0 <= min_lr <= base_lr, "min_lr", min_lr, f"a number in [0, lr = {base_lr}]")
    phase = math.pi * min(epoch, epochs) / epochs
    return min_lr + (base_lr - min_lr) * (1.0 + math.cos(phase)) / 2.0


@op("sigmoid", "schedule")
def sigmoid_decay(base_lr: float, step: int, epoch: int, *, center: float,
                  width: float = 1.0) -> float:
    """lr = base_lr / (1 + exp((epoch - center) / width)): a smooth step down, half at `center`."""
    _positive("width", width)
    z = (epoch - center) / width
    if z > 0:  # exp of a non-positive number only
        return base_lr * math.exp(-z) / (1.0 + math.exp(-z))
    return base_lr / (1.0 + math.exp(z))


@op("warmup", "schedule")
def warmup(base_lr: float, step: int, epoch: int, *, steps: int, start: float = 0.1) -> float:
    """lr = base_lr (start + (1 - start) min(step, steps) / steps), then base_lr.

    A linear warm-up from start * base_lr (first update) to base_lr after `steps` updates, then
    constant: torch LinearLR(start_factor=start, total_iters=steps) stepped once per update.
    """
    require(steps >= 1, "steps", steps, "an integer >= 1")
    require(0 < start <= 1, "start", start, "a number in (0, 1]")
    return base_lr * (start + (1.0 - start) * min(step, steps) / steps)


@op("anneal", "schedule")
def anneal_lr(base_lr: float, step: int, epoch: int, *, t0: float,
              cooling: Literal["cauchy", "boltzmann"] = "cauchy") -> float:
    """lr = base_lr / (1 + step / t0) (cauchy) or base_lr ln 2 / ln(2 + step / t0) (boltzmann).

    The lecture notes' annealed learning constant, with simulated annealing's cooling laws
    applied to the rate: Cauchy T0 / (1 + t) and Boltzmann T0 / log(1 + t), with
    t = step / t0 (t0 updates per unit of artificial time). The Boltzmann law is taken at 1 + t,
    where it is finite, and scaled so that both start at base_lr.
    """
    _positive("t0", t0)
    if cooling == "cauchy":
        return base_lr / (1.0 + step / t0)
    return base_lr * math.log(2.0) / math.log(2.0 + step / t0)
