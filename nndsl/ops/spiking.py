"""Spiking neurons: a layer of leaky integrate-and-fire (LIF) membranes simulated over time.

The membrane follows the lecture notes' normalised LIF equation, τ_m dv/dt = J − v, where the
input current J = x Wᵀ + b is the layer's affine map of its input (weights [units, in], as
dense). When v reaches the threshold the neuron spikes, v is reset to 0 and held there for the
refractory period τ_ref; then it integrates again. With a constant J > threshold it fires at
the `lif_rate` curve, 1 / (τ_ref − τ_m ln(1 − threshold / J)).

Simulation (steps of dt, the input held over each step, as Nengo's LIF neuron does):

    Δ   = clip(dt − r, 0, dt)                 the part of the step after the refractory time r
    v  ← J + (v − J) e^(−Δ / τ_m)             the exact solution over Δ (no Euler error)
    s   = 1 if v > threshold else 0           the spike of this step
    r  ← τ_ref − ρ if s else r − dt           ρ = −τ_m ln(1 − (v − θ) / (J − θ)): the time
    v  ← 0 if s                               since the crossing, so a refractory period
                                              starts at the crossing, inside the step

so the spike count over a long run matches the rate curve however coarse dt is (the spikes
themselves are marked at the step they fall in). The state starts at v = 0, r = 0.

Training (a surrogate gradient, Zenke & Ganguli 2018; Neftci, Mostafa & Zenke 2019): the
forward pass emits hard 0/1 spikes, the backward pass differentiates each spike as the smooth
σ(slope (v − θ)) instead, written as a straight-through estimator
s = h + stop_gradient(step(v − θ) − h) with h = σ(slope (v − θ)). Gradients flow through the
membrane across time (backpropagation through time); the reset and the refractory bookkeeping
carry none. `slope` (per unit of threshold) sets how far from the threshold a membrane still
learns. The true derivative of a spike count is 0 almost everywhere, so finite differences
cannot check this gradient: the tests check it against the surrogate computed by hand.

Input: [batch, time, features] currents, one per step, or [batch, features] held for `steps`
steps. Output: spikes [batch, time, units] (0 or 1 per step), or with rate = true the firing
rate in Hz, spikes / (time · dt), [batch, units]. Every step is unrolled (ONNX export has a fixed
number of steps), so time is a known integer of at most MAX_STEPS.
"""

from __future__ import annotations

from typing import Any

from nndsl.errors import NndslError
from nndsl.ir import TensorType, format_shape
from nndsl.ops.registry import Weight, WeightSpec
from nndsl.ops.shapes import known_dim, layer_op, positive

MAX_STEPS = 20_000  # every step is unrolled: ~30 primitives each in the graph and the export
LAYOUTS = "[batch, time, features] or [batch, features] with steps="


def _steps(x: TensorType, steps: int | None) -> int:
    """The number of simulated steps: the input's time axis, or `steps` for a 2-D input."""
    if x.rank == 3:
        if steps is not None:
            raise NndslError("lif steps= is for a constant input [batch, features]; this input "
                             "has its own time axis", expected="no steps= for a 3-D input",
                             received=f"steps={steps} with {format_shape(x.shape)}")
        t = known_dim("lif", x, 1, "time steps")
    elif x.rank == 2:
        if steps is None:
            raise NndslError("lif on a [batch, features] input needs steps=: the number of "
                             "steps the current is held for", expected="steps=N",
                             received=format_shape(x.shape),
                             hint="e.g. lif(64, steps=20), or give the input a time axis")
        t = steps
    else:
        raise NndslError(f"lif expects {LAYOUTS}, got {format_shape(x.shape)}",
                         expected=LAYOUTS, received=str(x))
    positive("lif", steps=t)
    if t > MAX_STEPS:
        raise NndslError(f"lif simulates {t} steps, more than {MAX_STEPS}", received=f"{t}",
                         expected=f"at most {MAX_STEPS} steps",
                         hint="every step is unrolled; a larger dt covers the same time")
    return t


def _lif_type(x: TensorType, *, units: int, tau_m: float, tau_ref: float, threshold: float,
              dt: float, steps: int | None, rate: bool, slope: float, **_: Any) -> TensorType:
    positive("lif", units=units, tau_m=tau_m, threshold=threshold, dt=dt, slope=slope)
    if tau_ref < 0:
        raise NndslError(f"lif `tau_ref` must be >= 0, got {tau_ref}", expected="tau_ref >= 0",
                         received=f"tau_ref={tau_ref}")
    t = _steps(x, steps)
    known_dim("lif", x, -1, "input features")
    return x.with_shape((x.shape[0], units) if rate else (x.shape[0], t, units))


def _lif_weights(x: TensorType, *, units: int, **params: Any) -> dict[str, WeightSpec]:
    _lif_type(x, units=units, **params)
    n_in = known_dim("lif", x, -1, "input features")
    return {"weight": WeightSpec((units, n_in), fan_in=n_in, fan_out=units),
            "bias": WeightSpec((units,), "bias", fan_in=n_in, fan_out=units)}


def _currents(rng: Any) -> tuple[Any, ...]:
    return (rng.uniform(0.0, 1.5, (2, 6, 3)),)


def _step(P: Any, j: Any, v: Any, r: Any, c: dict[str, float]) -> tuple[Any, Any, Any]:
    """One step of every membrane: (spikes with their surrogate gradient, new v, new r)."""
    theta, dt, tau = c["threshold"], c["dt"], c["tau_m"]
    active = P.minimum(P.maximum(P.sub(dt, r), 0.0), dt)  # Δ, no gradient (r carries none)
    v = P.add(j, P.mul(P.sub(v, j), P.exp(P.div(active, -tau))))
    spiked = P.gt(v, theta)
    hard = P.where(spiked, P.ones_like(v), P.zeros_like(v))
    soft = P.sigmoid(P.mul(c["slope"], P.sub(v, theta)))
    s = P.add(soft, P.stop_gradient(P.sub(hard, soft)))
    # the time since the crossing, from values alone: refractory bookkeeping has no gradient
    vv, jj = P.stop_gradient(v), P.stop_gradient(j)
    over = P.where(spiked, P.div(P.sub(vv, theta), P.where(spiked, P.sub(jj, theta), 1.0)), 0.0)
    since = P.mul(-tau, P.log(P.sub(1.0, P.minimum(over, 1.0 - 1e-7))))
    r = P.where(spiked, P.sub(c["tau_ref"], P.minimum(since, active)), P.sub(r, dt))
    return s, P.where(spiked, P.zeros_like(v), v), r


@layer_op("lif", infer=_lif_type, weights=_lif_weights, sample_inputs=_currents,
          sample_params={"units": 2, "dt": 0.005, "tau_m": 0.01}, surrogate=True)
def lif(P: Any, x: Any, *, units: int, tau_m: float = 0.02, tau_ref: float = 0.002,
        threshold: float = 1.0, dt: float = 0.001, steps: int | None = None,
        rate: bool = False, slope: float = 5.0, weight: Weight,
        bias: Weight) -> Any:
    """LIF membranes τ_m dv/dt = J − v, J = x Wᵀ + b: spikes at threshold, reset, refractory."""
    consts = {"threshold": threshold, "dt": dt, "tau_m": tau_m, "tau_ref": tau_ref,
              "slope": slope}
    j_all = P.add(P.matmul(x, P.transpose(weight)), bias)
    held = len(P.shape(x)) == 2
    t_steps = steps if held and steps is not None else P.shape(x)[1]
    v = r = P.zeros_like(j_all if held else P.reshape(P.slice(j_all, 1, 0, 1), (None, -1)))
    spikes = []
    for t in range(t_steps):
        j = j_all if held else P.reshape(P.slice(j_all, 1, t, t + 1), (None, -1))
        s, v, r = _step(P, j, v, r, consts)
        spikes.append(s)
    if rate:
        total = spikes[0]
        for s in spikes[1:]:
            total = P.add(total, s)
        return P.mul(total, 1.0 / (t_steps * dt))
    return P.concat([P.reshape(s, (None, 1, units)) for s in spikes], 1)
