"""Activations: elementwise (or one-axis) functions without weights.

Every op is written once against the primitive namespace `P`. Conventions fixed here:

- tie rules at exactly 0 are explicit parameters (`step(at_zero=)`, `sign(at_zero=)`);
- `relu`, `hardtanh` and `ramp` use `where`, so the gradient at a kink is 0, as the lecture
  notes' backward rules say (relu: 𝟙{x > 0}; hardtanh and ramp: 𝟙{-1 < x < 1});
- saturating ops are stable for |x| = 300 in value and gradient: no branch of a `where` ever
  computes an inf that the other branch would have to hide (its gradient would be NaN).
"""

from __future__ import annotations

import math
from typing import Any, Literal

from nndsl.errors import NndslError
from nndsl.ir import TensorType
from nndsl.ops.registry import op

SELU_ALPHA = 1.6732632423543772
SELU_SCALE = 1.0507009873554805


def _axis_type(name: str) -> Any:
    """Shape rule of an op reducing along `axis`: the input type, once the axis is valid."""

    def infer(x: TensorType, *_: TensorType, axis: int = -1, **__: Any) -> TensorType:
        if not -x.rank <= axis < x.rank:
            raise NndslError(
                f"{name} axis {axis} is out of range for a {x.rank}-D input",
                expected=f"an axis in [{-x.rank}, {x.rank - 1}]", received=f"axis={axis}",
            )
        return x

    return infer


def _bounds_type(x: TensorType, *_: TensorType, low: float = -1.0, high: float = 1.0,
                 **__: Any) -> TensorType:
    if not low < high:
        raise NndslError("hardtanh needs low < high", expected="low < high",
                         received=f"low={low}, high={high}")
    return x


def _lif_type(x: TensorType, *_: TensorType, tau_ref: float = 0.002, tau_m: float = 0.02,
              **__: Any) -> TensorType:
    if tau_ref < 0 or tau_m <= 0:
        raise NndslError("lif_rate needs tau_ref >= 0 and tau_m > 0",
                         received=f"tau_ref={tau_ref}, tau_m={tau_m}")
    return x


def _ternary(P: Any, x: Any, negative: float, zero: float, positive: float) -> Any:
    """`negative` where x < 0, `zero` where x == 0, `positive` where x > 0 (x's dtype)."""
    one = P.ones_like(x)
    inner = P.where(P.lt(x, 0.0), P.mul(one, negative), P.mul(one, zero))
    return P.where(P.gt(x, 0.0), P.mul(one, positive), inner)


def _clip(P: Any, x: Any, low: float, high: float) -> Any:
    """max(low, min(high, x)) with gradient 𝟙{low < x < high} (0 on the bounds)."""
    return P.where(P.le(x, low), P.mul(P.ones_like(x), low),
                   P.where(P.ge(x, high), P.mul(P.ones_like(x), high), x))


def softplus_of(P: Any, x: Any) -> Any:
    """log(1 + e^x) as max(x, 0) + log(1 + e^-|x|): exp of a non-positive number only."""
    return P.add(P.maximum(x, 0.0), P.log(P.add(1.0, P.exp(P.neg(P.abs(x))))))


def log_softmax_of(P: Any, x: Any, axis: int = -1) -> Any:
    """x - max - log Σ exp(x - max) along `axis` (shared with the logits losses). The max only
    keeps exp in range: the value does not depend on it, so no gradient flows back through it
    (its share is zero but for rounding, as in torch's own backward of log_softmax)."""
    shifted = P.sub(x, P.stop_gradient(P.max(x, axis=axis, keepdims=True)))
    return P.sub(shifted, P.log(P.sum(P.exp(shifted), axis=axis, keepdims=True)))


@op("identity", "activation", integer_inputs=True)
def identity(P: Any, x: Any) -> Any:
    """f(x) = x."""
    return x


@op("linear", "activation")
def linear(P: Any, x: Any) -> Any:
    """f(x) = x: another name for the identity, as an output activation for regression."""
    return x


@op("sigmoid", "activation")
def sigmoid(P: Any, x: Any) -> Any:
    """1 / (1 + e^-x), the logistic function; P.sigmoid is stable for large |x|."""
    return P.sigmoid(x)


@op("tanh", "activation")
def tanh(P: Any, x: Any) -> Any:
    """(e^x - e^-x) / (e^x + e^-x)."""
    return P.tanh(x)


@op("relu", "activation")
def relu(P: Any, x: Any) -> Any:
    """max(0, x); gradient 𝟙{x > 0}, so 0 at x = 0 (as the lecture notes' backward rule)."""
    return P.where(P.gt(x, 0.0), x, P.zeros_like(x))


@op("leaky_relu", "activation")
def leaky_relu(P: Any, x: Any, *, slope: float = 0.01) -> Any:
    """x if x >= 0 else slope * x; slope is torch's negative_slope."""
    return P.where(P.ge(x, 0.0), x, P.mul(slope, x))


@op("elu", "activation")
def elu(P: Any, x: Any, *, alpha: float = 1.0) -> Any:
    """x if x > 0 else alpha * (e^x - 1); exp never sees a positive x."""
    positive = P.gt(x, 0.0)
    negative_part = P.where(positive, P.zeros_like(x), x)  # where, not minimum: slope 1 at 0
    return P.where(positive, x, P.mul(alpha, P.sub(P.exp(negative_part), 1.0)))


@op("selu", "activation")
def selu(P: Any, x: Any) -> Any:
    """scale * elu(x, alpha), scale = 1.0507009873554805, alpha = 1.6732632423543772."""
    return P.mul(SELU_SCALE, elu(P, x, alpha=SELU_ALPHA))


@op("softplus", "activation")
def softplus(P: Any, x: Any) -> Any:
    """log(1 + e^x), computed as max(x, 0) + log(1 + e^-|x|).

    Without a log1p primitive the result is exact to an absolute (not relative) error of about
    one machine epsilon for very negative x.
    """
    return softplus_of(P, x)


@op("hardtanh", "activation", infer=_bounds_type, sample_params={"low": -0.5, "high": 0.5})
def hardtanh(P: Any, x: Any, *, low: float = -1.0, high: float = 1.0) -> Any:
    """max(low, min(high, x)); gradient 𝟙{low < x < high}."""
    return _clip(P, x, low, high)


@op("ramp", "activation")
def ramp(P: Any, x: Any) -> Any:
    """max(-1, min(1, x)) = hardtanh (the lecture notes print min(-1, max(1, x)), a misprint)."""
    return _clip(P, x, -1.0, 1.0)


@op("arctan", "activation")
def arctan(P: Any, x: Any) -> Any:
    """arctan(x), range (-pi/2, pi/2)."""
    return P.atan(x)


def _with_zeros(rng: Any) -> tuple[Any, ...]:
    x = rng.standard_normal((2, 8))
    x[0, :3] = 0.0
    return (x,)


@op("step", "activation", differentiable=False, sample_inputs=_with_zeros)
def step(P: Any, x: Any, *, at_zero: float = 1.0) -> Any:
    """0 if x < 0, 1 if x > 0, at_zero if x == 0 (default 1: the z >= 0 rule).

    at_zero=0 gives the limit of sigmoid(w x) as w grows (Heaviside), at_zero=0.5 the midpoint.
    """
    return _ternary(P, x, 0.0, at_zero, 1.0)


@op("sign", "activation", differentiable=False, sample_inputs=_with_zeros)
def sign(P: Any, x: Any, *, at_zero: float = 1.0) -> Any:
    """-1 if x < 0, +1 if x > 0, at_zero if x == 0 (default +1, as in Hopfield networks).

    at_zero=-1 gives the binary neuron's `> threshold` rule, at_zero=0 numpy/ONNX Sign.
    """
    return _ternary(P, x, -1.0, at_zero, 1.0)


@op("softmax", "activation", infer=_axis_type("softmax"))
def softmax(P: Any, x: Any, *, axis: int = -1) -> Any:
    """e^x_i / Σ_j e^x_j along axis, computed on x - max(x)."""
    # the value does not depend on the max, so no gradient flows back through it
    e = P.exp(P.sub(x, P.stop_gradient(P.max(x, axis=axis, keepdims=True))))
    return P.div(e, P.sum(e, axis=axis, keepdims=True))


@op("log_softmax", "activation", infer=_axis_type("log_softmax"))
def log_softmax(P: Any, x: Any, *, axis: int = -1) -> Any:
    """x_i - log Σ_j e^x_j along axis, computed on x - max(x)."""
    return log_softmax_of(P, x, axis)


@op("one_hot", "activation", differentiable=False)
def one_hot(P: Any, x: Any) -> Any:
    """Hardmax over the last axis: 1 at the argmax, 0 elsewhere; ties go to the first.

    The first-index tie rule is ONNX Hardmax's and argmax's (an all-zero ReLU row gives 1 at 0).
    """
    index = P.argmax(x, axis=-1)
    hot = P.eq(P.one_hot(index, P.shape(x)[-1], "i64"), 1)
    return P.where(hot, P.ones_like(x), P.zeros_like(x))


@op("gaussian_rbf", "activation")
def gaussian_rbf(P: Any, x: Any) -> Any:
    """e^(-r^2) applied elementwise to r = x: the Gaussian radial basis function."""
    return P.exp(P.neg(P.mul(x, x)))


@op("ricker", "activation")
def ricker(P: Any, x: Any) -> Any:
    """(1 - r^2) e^(-r^2 / 2) applied elementwise to r = x, the Mexican hat (Ricker wavelet)."""
    r2 = P.mul(x, x)
    return P.mul(P.sub(1.0, r2), P.exp(P.mul(-0.5, r2)))


@op("gelu", "activation")
def gelu(P: Any, x: Any, *, approximate: Literal["none", "tanh"] = "none") -> Any:
    """x Φ(x) = ½x(1 + erf(x/√2)); tanh: ½x(1 + tanh(√(2/π)(x + 0.044715x³))) (Hendrycks 2016).

    Hendrycks & Gimpel, "Gaussian Error Linear Units" (2016): `approximate="none"` (default) is
    the exact erf form, torch's `F.gelu` default and BERT's; `"tanh"` is the paper's tanh
    approximation (GPT-2, torch's `approximate="tanh"`). ONNX opset 17 has no Gelu node: both
    export as Erf or Tanh and arithmetic.
    """
    if approximate == "tanh":
        inner = P.mul(math.sqrt(2.0 / math.pi), P.add(x, P.mul(0.044715, P.mul(x, P.mul(x, x)))))
        return P.mul(P.mul(0.5, x), P.add(1.0, P.tanh(inner)))
    return P.mul(P.mul(0.5, x), P.add(1.0, P.erf(P.mul(x, 1.0 / math.sqrt(2.0)))))


@op("silu", "activation")
def silu(P: Any, x: Any) -> Any:
    """x σ(x), the sigmoid-weighted linear unit (Elfwing et al. 2018; swish with beta = 1)."""
    return P.mul(x, P.sigmoid(x))


@op("sine", "activation")
def sine(P: Any, x: Any, *, w0: float = 1.0) -> Any:
    """sin(w0 x): the periodic node of CPPNs (Stanley 2007) and SIREN's layers (w0 = 30, 2020)."""
    return P.sin(P.mul(w0, x))


@op("swish", "activation")
def swish(P: Any, x: Any, *, beta: float = 1.0) -> Any:
    """x σ(beta x)."""
    return P.mul(x, P.sigmoid(P.mul(beta, x)))


def _rates(rng: Any) -> tuple[Any, ...]:
    # v = 1 itself is left out: the right derivative is unbounded there (a kink, not a bug)
    return (rng.choice([-1.0, 0.3, 0.9, 1.2, 1.5, 2.0, 4.0, 10.0], size=(2, 8)),)


@op("lif_rate", "activation", infer=_lif_type, sample_inputs=_rates)
def lif_rate(P: Any, x: Any, *, tau_ref: float = 0.002, tau_m: float = 0.02) -> Any:
    """1 / (tau_ref - tau_m ln(1 - 1/v)) for v > 1, else 0: a LIF neuron's steady firing rate.

    v <= 1 is replaced by 2 before the log, so neither value nor gradient sees ln(0) or ln(<0);
    the true derivative is unbounded as v -> 1+ (the seed gives no surrogate).
    """
    fires = P.gt(x, 1.0)
    v = P.where(fires, x, P.mul(P.ones_like(x), 2.0))
    rate = P.div(1.0, P.sub(tau_ref, P.mul(tau_m, P.log(P.sub(1.0, P.div(1.0, v))))))
    return P.where(fires, rate, P.zeros_like(x))
