"""Hopfield networks: recall by the threshold dynamics, and the energy they descend.

N units s in {−1, +1}, symmetric weights W [N, N] with a zero diagonal (Hebbian storage:
trainer `hebbian`) and a bias b [N]. A unit's field is h = s W + σ b, with the bias sign σ an
explicit option, because the lecture notes use both: their derivation writes the update
s_j ← sign(Σ_i s_i W_ij + b_j) and the energy E = −½ sᵀWs − bᵀs (σ = +1), while their code runs
`Thresh(x @ W - b)` with `Energy = -0.5 * (x @ W) @ x + b @ x` (σ = −1, the default here, so a
bias from `hebbian(bias=mean_activity)` is used as in the lecture's demo). In both,

    E(s) = −½ sᵀ W s − σ bᵀ s,

and a unit set to sign⁺ of its field never raises E (sign⁺(0) = +1, the code's tie rule).

Recall (`hopfield`): `mode = sync` updates every unit at once from the same state, `steps`
times (it may end in a 2-cycle); `mode = async` runs `steps` sweeps, each visiting every unit
once and updating it from the current state. The visiting order is `order = sequential`
(units 0, 1, ..., N − 1 in every sweep) or `order = shuffled`: a new random permutation per
sweep, as the lecture's code draws, taken from `seed` when the graph is built, so every backend
and the ONNX export visit the units in the same order. Asynchronous updates never raise E, so
async recall always settles in a fixed point (a local minimum of E).
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from nndsl.errors import NndslError
from nndsl.ir import TensorType
from nndsl.ops.layers import _features_2d as features_2d
from nndsl.ops.registry import Label, Weight, WeightSpec, op
from nndsl.ops.shapes import const, layer_op, positive

HOPFIELD_MAX_STEPS = 1000  # recall settles in tens of sweeps; every sweep is unrolled in ONNX
Sign = Literal[-1, 1]


def _hopfield_type(x: TensorType, *, steps: int, **_: Any) -> TensorType:
    features_2d("hopfield", x)
    positive("hopfield", steps=steps)
    if steps > HOPFIELD_MAX_STEPS:
        raise NndslError(f"hopfield steps={steps} is more than {HOPFIELD_MAX_STEPS} sweeps",
                         expected=f"steps <= {HOPFIELD_MAX_STEPS}", received=f"steps={steps}",
                         hint="recall settles in a few sweeps; each one is a layer of the export")
    return x


def _hopfield_weights(x: TensorType, **_: Any) -> dict[str, WeightSpec]:
    n = features_2d("hopfield", x)
    return {"weight": WeightSpec((n, n), init=const(0.0), fan_in=n, fan_out=n),
            "bias": WeightSpec((n,), "bias", fan_in=n, fan_out=n)}


def _sign_plus(P: Any, a: Any) -> Any:
    return P.where(P.ge(a, 0.0), P.ones_like(a), P.neg(P.ones_like(a)))


def _spins(rng: Any) -> tuple[Any, ...]:
    return (rng.choice([-1.0, 1.0], size=(2, 8)),)


def field(P: Any, a: Any, bias: Any, bias_sign: int) -> Any:
    """a + σ b: the bias added (σ = +1) or subtracted (σ = −1) as such, so that the export
    reads as the formula (MatMul then Add or Sub) and imports back."""
    return P.add(a, bias) if bias_sign == 1 else P.sub(a, bias)


def visiting_orders(n: int, sweeps: int, order: str, seed: int) -> list[list[int]]:
    """The units each asynchronous sweep visits, in turn."""
    if order == "sequential":
        return [list(range(n))] * sweeps
    rng = np.random.default_rng(seed)
    return [rng.permutation(n).tolist() for _ in range(sweeps)]


def _sweep(P: Any, x: Any, weight: Any, bias: Any, bias_sign: int, units: list[int]) -> Any:
    """One asynchronous sweep: x_k ← sign⁺(x W[:, k] + σ b_k) for k in `units`, in turn."""
    n = P.shape(weight)[0]
    for k in units:
        a = field(P, P.matmul(x, P.slice(weight, 1, k, k + 1)), P.slice(bias, 0, k, k + 1),
                  bias_sign)
        left = [P.slice(x, 1, 0, k)] if k > 0 else []
        right = [P.slice(x, 1, k + 1, n)] if k < n - 1 else []
        x = P.concat([*left, _sign_plus(P, a), *right], 1)
    return x


@layer_op("hopfield", infer=_hopfield_type, weights=_hopfield_weights, differentiable=False,
          sample_inputs=_spins, sample_params={"steps": 3, "mode": "async", "order": "shuffled"})
def hopfield(P: Any, x: Any, *, steps: int = 10, mode: Literal["sync", "async"] = "sync",
             bias_sign: Sign = -1, order: Literal["sequential", "shuffled"] = "sequential",
             seed: int = 0, weight: Weight, bias: Weight) -> Any:
    """x ← sign⁺(x W + bias_sign b), `steps` times, sign⁺(0) = +1; async: unit by unit."""
    if mode == "sync":
        for _ in range(steps):
            x = _sign_plus(P, field(P, P.matmul(x, weight), bias, bias_sign))
        return x
    for units in visiting_orders(P.shape(weight)[0], steps, order, seed):
        x = _sweep(P, x, weight, bias, bias_sign, units)
    return x


# ---- energy ---------------------------------------------------------------------------------


def _energy_type(s: TensorType, *, reduction: str = "mean", **_: Any) -> TensorType:
    features_2d("energy", s)
    return TensorType((s.shape[0],) if reduction == "none" else (), s.dtype)


def _energy_weights(s: TensorType, **_: Any) -> dict[str, WeightSpec]:
    return _hopfield_weights(s)


@op("energy", "loss", infer=_energy_type, weights=_energy_weights, sample_inputs=_spins,
    sample_params={"layer": "memory"}, borrows=("layer", ("hopfield",)), positional=("layer",))
def energy(P: Any, s: Any, *, layer: Label, bias_sign: Sign = -1,
           reduction: Literal["mean", "sum", "none"] = "mean", weight: Weight,
           bias: Weight) -> Any:
    """E = −½ sᵀ W s − bias_sign bᵀ s of a hopfield layer's state s, per example (or mean, sum)."""
    quadratic = P.sum(P.mul(P.matmul(s, weight), s), axis=-1)
    linear = P.sum(P.mul(s, bias), axis=-1)
    per_example = P.sub(P.mul(-0.5, quadratic), P.mul(float(bias_sign), linear))
    if reduction == "none":
        return per_example
    return P.sum(per_example) if reduction == "sum" else P.mean(per_example)

