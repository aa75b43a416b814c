"""Layers: affine, structural, noise and normalisation ops, and the activations that own weights
or randomness (prelu, rrelu, maxout).

Convolution and pooling live in `conv.py`, recurrent layers and attention in `recurrent.py`;
all three use the helpers of `shapes.py`. Conventions fixed here:

- `dense` weight is `[units, in]` (torch Linear, ONNX Gemm transB=1) and `y = x @ Wᵀ + b`. A
  3-D input `[batch, time, features]` is transformed at every step (matmul broadcasts), as torch
  Linear does. `dense(tied=enc)` holds `enc.weight` as its own `weight`, so its declared shape
  is `[in, units]` (enc's `[out, in]`) and `y = x @ W + b`; one array, both paths' gradients.
  `dense(shared_bias=true)` has one bias b `[1]` added to every unit (Mazur's worked example
  shares one bias per layer); its gradient is the sum of the units' gradients.
- `dropout(rate=)` is the drop probability, `dropout(keep=)` the keep probability; a
  bare number is refused because the literature uses both. Inverted scaling at training time.
- `mask_noise(rate)` zeroes each element with probability `rate` and does not rescale: the
  denoising autoencoder's masking corruption, not a dropout.
- `batchnorm` normalises over axis 1 (features of [batch, features], channels of [batch, C, ...])
  with the biased batch variance and updates `running_var` with the unbiased one, as torch does:
  running ← (1 − momentum)·running + momentum·batch.
- `reparameterize(mu, logvar)` returns `mu` at inference: the mean latent code, no sampling.
- `hopfield` and its `energy` are in hopfield.py.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Literal

from nndsl.errors import NndslError
from nndsl.ir import Call, TensorType, format_shape
from nndsl.ops.registry import Label, Weight, WeightSpec, WithUpdates
from nndsl.ops.shapes import (
    BATCH_HINT,
    FLATTEN_HINT,
    at_least_two,
    broadcast,
    const,
    known_dim,
    layer_op,
    merge_dims,
    need_min_rank,
    need_rank,
    per_channel,
    positive,
    probability,
    same_dtype,
)

# ---- affine and structural ------------------------------------------------------------------


def _dense_type(x: TensorType, *, units: int, **_: Any) -> TensorType:
    need_rank("dense", x, {2: "[batch, features]", 3: "[batch, time, features]"},
              FLATTEN_HINT.format(name="dense") if x.rank > 3 else BATCH_HINT)
    known_dim("dense", x, -1, "input features")
    positive("dense", units=units)
    return x.with_shape((*x.shape[:-1], units))


def _dense_weights(x: TensorType, *, units: int, use_bias: bool, tied: str | None,
                   shared_bias: bool = False, **_: Any) -> dict[str, WeightSpec]:
    n_in = known_dim("dense", x, -1, "input features")
    shape = (n_in, units) if tied is not None else (units, n_in)
    specs = {"weight": WeightSpec(shape, fan_in=n_in, fan_out=units)}
    if use_bias:
        specs["bias"] = WeightSpec((1 if shared_bias else units,), "bias", fan_in=n_in,
                                   fan_out=units)
    return specs


@layer_op("dense", infer=_dense_type, weights=_dense_weights, sample_params={"units": 3})
def dense(P: Any, x: Any, *, units: int, use_bias: bool = True, tied: Label | None = None,
          shared_bias: bool = False, weight: Weight, bias: Weight = None) -> Any:
    """y = x @ Wᵀ + b, W [units, in]; tied: y = x @ W + b with W the tied layer's [in, units].

    shared_bias=true: b is one number [1] added to every unit (one bias per layer, as in
    Mazur's step-by-step backpropagation example); dE/db is the sum over the units.
    """
    y = P.matmul(x, weight if tied is not None else P.transpose(weight))
    return y if bias is None else P.add(y, bias)


def _flatten_type(x: TensorType, **_: Any) -> TensorType:
    need_min_rank("flatten", x, 1, "[batch, ...]", BATCH_HINT)
    size = 1
    for axis in range(1, x.rank):
        size *= known_dim("flatten", x, axis, "elements per example")
    return x.with_shape((x.shape[0], size))


@layer_op("flatten", infer=_flatten_type, samples=(((2, 3, 2, 2),),),
          integer_inputs=True)
def flatten(P: Any, x: Any) -> Any:
    """[batch, d1, d2, ...] -> [batch, d1·d2·...] (axis 0 kept, C order)."""
    return P.reshape(x, (None, -1))


def _reshape_type(x: TensorType, *, shape: tuple[int, ...], **_: Any) -> TensorType:
    need_min_rank("reshape", x, 1, "[batch, ...]", BATCH_HINT)
    size = math.prod(known_dim("reshape", x, a, "elements per example") for a in range(1, x.rank))
    bad = [d for d in shape if d == 0 or d < -1]
    if bad or list(shape).count(-1) > 1 or not shape:
        raise NndslError(f"reshape shape {list(shape)} is not valid",
                         expected="positive sizes and at most one -1", received=str(list(shape)))
    known = math.prod(d for d in shape if d != -1)
    if size % known or (-1 not in shape and known != size):
        raise NndslError(
            f"reshape cannot turn {format_shape(x.shape)} into [batch, "
            f"{', '.join(map(str, shape))}]: {size} elements per example",
            expected=f"sizes whose product is {size}", received=str(list(shape)),
        )
    return x.with_shape((x.shape[0], *(size // known if d == -1 else d for d in shape)))


@layer_op("reshape", infer=_reshape_type, sample_params={"shape": (2, -1)}, integer_inputs=True)
def reshape(P: Any, x: Any, *, shape: tuple[int, ...]) -> Any:
    """[batch, ...] -> [batch, *shape] per example (one -1 may stand for the remaining size)."""
    return P.reshape(x, (None, *shape))


def _embedding_type(x: TensorType, *, vocab: int, dim: int, **_: Any) -> TensorType:
    if x.dtype != "i64":
        raise NndslError(f"embedding expects integer indices, got {x}", expected="i64[...]",
                         received=str(x), hint="declare the input as i64, e.g. i64[batch, time]")
    positive("embedding", vocab=vocab, dim=dim)
    return TensorType((*x.shape, dim), "f32")


def _embedding_weights(x: TensorType, *, vocab: int, dim: int, **_: Any) -> dict[str, WeightSpec]:
    normal = Call("normal", (("mean", 0.0), ("std", 1.0)))  # torch nn.Embedding's start
    return {"weight": WeightSpec((vocab, dim), init=normal, fan_in=vocab, fan_out=dim)}


def _indices(rng: Any) -> tuple[Any, ...]:
    return (rng.integers(0, 10, size=(2, 5)),)


@layer_op("embedding", infer=_embedding_type, weights=_embedding_weights, integer_inputs=True,
          sample_inputs=_indices, sample_params={"vocab": 10, "dim": 4},
          index_bound=lambda x, *, vocab, **_: (0, vocab))
def embedding(P: Any, x: Any, *, vocab: int, dim: int, weight: Weight) -> Any:
    """y[..., :] = W[x[...], :], W [vocab, dim] (a row lookup; x holds i64 indices)."""
    return P.take(weight, x, axis=0)


def _concat_type(*xs: TensorType, axis: int, **_: Any) -> TensorType:
    at_least_two("concat", xs)
    rank = xs[0].rank
    if any(x.rank != rank for x in xs):
        raise NndslError("concat inputs have different ranks", expected=f"{rank}-D inputs",
                         received=", ".join(str(x) for x in xs))
    if not -rank <= axis < rank:
        raise NndslError(f"concat axis {axis} is out of range for {rank}-D inputs",
                         expected=f"an axis in [{-rank}, {rank - 1}]", received=f"axis={axis}")
    same_dtype("concat", xs)
    axis %= rank
    out = list(xs[0].shape)
    for x in xs[1:]:
        for i, d in enumerate(x.shape):
            if i != axis:
                out[i] = merge_dims("concat", out[i], d, f"axis {i}")
    sizes = [x.shape[axis] for x in xs]
    out[axis] = sum(sizes) if all(isinstance(d, int) for d in sizes) else "+".join(map(str, sizes))
    return xs[0].with_shape(tuple(out))


@layer_op("concat", infer=_concat_type, samples=(((2, 3), (2, 5)),), integer_inputs=True)
def concat(P: Any, *xs: Any, axis: int = -1) -> Any:
    """[x1, x2, ...] joined along `axis` (default the last, the feature axis)."""
    return P.concat(list(xs), axis)


def _variadic_type(name: str) -> Callable[..., TensorType]:
    def infer(*xs: TensorType, **_: Any) -> TensorType:
        at_least_two(name, xs)
        return broadcast(name, *xs)

    return infer


def _binary_type(name: str) -> Callable[..., TensorType]:
    return lambda a, b, **_: broadcast(name, a, b)


@layer_op("add", infer=_variadic_type("add"), samples=(((2, 4), (2, 4), (4,)),))
def add(P: Any, *xs: Any) -> Any:
    """x1 + x2 + ... (broadcasting; residual connections)."""
    total = xs[0]
    for x in xs[1:]:
        total = P.add(total, x)
    return total


@layer_op("mul", infer=_variadic_type("mul"), samples=(((2, 4), (2, 4)),))
def mul(P: Any, *xs: Any) -> Any:
    """x1 ⊙ x2 ⊙ ... (elementwise, broadcasting)."""
    product = xs[0]
    for x in xs[1:]:
        product = P.mul(product, x)
    return product


@layer_op("sub", infer=_binary_type("sub"), samples=(((2, 4), (2, 4)),))
def sub(P: Any, a: Any, b: Any) -> Any:
    """a − b (elementwise, broadcasting)."""
    return P.sub(a, b)


# ---- noise and normalisation ----------------------------------------------------------------


def dropout_keep(rate: float | None, keep: float | None) -> float:
    """The keep probability of dropout(rate=) / dropout(keep=); exactly one must be given."""
    if (rate is None) == (keep is None):
        raise NndslError(
            "dropout takes `rate` (drop probability) or `keep` (keep probability), "
            + ("not both" if rate is not None else "and neither was given"),
            expected="dropout(rate=P) or dropout(keep=P)",
            received=f"rate={rate}, keep={keep}",
            hint="rate=0.5 drops half the units (torch/ONNX convention); keep=0.8 keeps 80%",
        )
    if rate is not None:
        probability("dropout", "rate", rate, closed_low=True, closed_high=False)
        return 1.0 - rate
    assert keep is not None
    probability("dropout", "keep", keep, closed_low=False, closed_high=True)
    return keep


def _dropout_type(x: TensorType, *, rate: float | None, keep: float | None,
                  **_: Any) -> TensorType:
    dropout_keep(rate, keep)
    return x


@layer_op("dropout", infer=_dropout_type, training_only=True, positional=(),
          sample_params={"rate": 0.5})
def dropout(P: Any, x: Any, *, rate: float | None = None, keep: float | None = None) -> Any:
    """x ⊙ m / keep, m ~ Bernoulli(keep), keep = 1 − rate, in training; x at inference."""
    if not P.training:
        return x
    p = dropout_keep(rate, keep)
    return P.where(P.lt(P.random_uniform_like(x), p), P.div(x, p), P.zeros_like(x))


def _noise_type(x: TensorType, *, std: float, **_: Any) -> TensorType:
    if std < 0:
        raise NndslError(f"gaussian_noise `std` must be >= 0, got {std}", received=f"std={std}")
    return x


@layer_op("gaussian_noise", infer=_noise_type, training_only=True, sample_params={"std": 0.1})
def gaussian_noise(P: Any, x: Any, *, std: float) -> Any:
    """x + std · ε, ε ~ N(0, 1), in training; x at inference: Gaussian corruption."""
    return P.add(x, P.mul(std, P.random_normal_like(x))) if P.training else x


def _mask_type(x: TensorType, *, rate: float, **_: Any) -> TensorType:
    probability("mask_noise", "rate", rate, closed_low=True, closed_high=True)
    return x


@layer_op("mask_noise", infer=_mask_type, training_only=True, sample_params={"rate": 0.3})
def mask_noise(P: Any, x: Any, *, rate: float) -> Any:
    """x ⊙ m, m ~ Bernoulli(1 − rate), in training (no rescaling); x at inference."""
    if not P.training:
        return x
    return P.where(P.lt(P.random_uniform_like(x), rate), P.zeros_like(x), x)


def _channels(name: str, x: TensorType) -> int:
    need_min_rank(name, x, 2, "[batch, features, ...]", BATCH_HINT)
    return known_dim(name, x, 1, "features (axis 1)")


def _batchnorm_type(x: TensorType, *, momentum: float, eps: float, **_: Any) -> TensorType:
    _channels("batchnorm", x)
    probability("batchnorm", "momentum", momentum, closed_low=True, closed_high=True)
    positive("batchnorm", eps=eps)
    return x


def _batchnorm_weights(x: TensorType, **_: Any) -> dict[str, WeightSpec]:
    c = (_channels("batchnorm", x),)
    return {
        "gamma": WeightSpec(c, "other", init=const(1.0)),
        "beta": WeightSpec(c, "bias", init=const(0.0)),
        "running_mean": WeightSpec(c, "buffer", init=const(0.0), trainable=False),
        "running_var": WeightSpec(c, "buffer", init=const(1.0), trainable=False),
    }


def _batch_moments(P: Any, x: Any, shape: tuple[int, ...]) -> tuple[Any, Any, int]:
    """Per-channel (axis 1) batch mean, biased variance and the count n behind them."""
    flat = P.reshape(x, (None, None, -1))  # [batch, C, rest]
    mean = P.mean(flat, axis=(0, 2))
    centred = P.sub(flat, P.reshape(mean, (1, -1, 1)))
    n = math.prod(shape) // shape[1]
    if n < 2:
        raise ValueError("batchnorm needs more than one value per channel in training mode")
    return mean, P.mean(P.mul(centred, centred), axis=(0, 2)), n


@layer_op("batchnorm", infer=_batchnorm_type, weights=_batchnorm_weights,
          samples=(((4, 3),), ((2, 3, 4, 4),)))
def batchnorm(P: Any, x: Any, *, momentum: float = 0.1, eps: float = 1e-5, gamma: Weight,
              beta: Weight, running_mean: Weight, running_var: Weight) -> Any:
    """γ (x − μ) / √(σ² + eps) + β on axis 1; batch μ, σ² in training, running ones at inference."""
    shape = P.shape(x)
    updates = None
    if P.training:
        mean, var, n = _batch_moments(P, x, shape)
        updates = {  # torch: the running variance is the unbiased estimate
            "running_mean": P.add(P.mul(1 - momentum, running_mean), P.mul(momentum, mean)),
            "running_var": P.add(P.mul(1 - momentum, running_var),
                                 P.mul(momentum * n / (n - 1), var)),
        }
    else:
        mean, var = running_mean, running_var
    rank = len(shape)
    inv = P.div(gamma, P.sqrt(P.add(var, eps)))
    y = P.add(P.mul(P.sub(x, per_channel(P, mean, rank)), per_channel(P, inv, rank)),
              per_channel(P, beta, rank))
    return y if updates is None else WithUpdates(y, updates)


def _reparameterize_type(mu: TensorType, logvar: TensorType, **_: Any) -> TensorType:
    if len(mu.shape) != len(logvar.shape):
        raise NndslError("reparameterize needs mu and logvar of the same shape",
                         expected=str(mu), received=str(logvar))
    for i, (a, b) in enumerate(zip(mu.shape, logvar.shape, strict=True)):
        merge_dims("reparameterize", a, b, f"axis {i}")
    return mu


@layer_op("reparameterize", infer=_reparameterize_type, samples=(((2, 4), (2, 4)),))
def reparameterize(P: Any, mu: Any, logvar: Any) -> Any:
    """z = μ + exp(½ logvar) · ε, ε ~ N(0, 1), in training; z = μ at inference (the VAE's trick)."""
    if not P.training:
        return mu
    return P.add(mu, P.mul(P.exp(P.mul(0.5, logvar)), P.random_normal_like(mu)))


# ---- radial basis functions and Hopfield recall ---------------------------------------------

RBF_KERNELS: dict[str, Callable[[Any, Any], Any]] = {
    "gaussian": lambda P, r2: P.exp(P.neg(r2)),  # φ(r) = e^(−r²)
    "ricker": lambda P, r2: P.mul(P.sub(1.0, r2), P.exp(P.mul(-0.5, r2))),  # (1 − r²)e^(−r²/2)
}


def _features_2d(name: str, x: TensorType) -> int:
    hint = FLATTEN_HINT.format(name=name) if x.rank > 2 else BATCH_HINT
    need_rank(name, x, {2: "[batch, features]"}, hint)
    return known_dim(name, x, 1, "input features")


def _rbf_type(x: TensorType, *, units: int, **_: Any) -> TensorType:
    _features_2d("rbf", x)
    positive("rbf", units=units)
    return x.with_shape((x.shape[0], units))


def _rbf_weights(x: TensorType, *, units: int, **_: Any) -> dict[str, WeightSpec]:
    n_in = _features_2d("rbf", x)
    return {"centers": WeightSpec((units, n_in), fan_in=n_in, fan_out=units),
            "scales": WeightSpec((units,), "other", init=const(1.0))}


@layer_op("rbf", infer=_rbf_type, weights=_rbf_weights, sample_params={"units": 5})
def rbf(P: Any, x: Any, *, units: int, kernel: Literal["gaussian", "ricker"] = "gaussian",
        centers: Weight, scales: Weight) -> Any:
    """y_i = φ(b_i ‖x − c_i‖), centres c [units, in], scales b [units]; + dense: RBF net."""
    diff = P.sub(P.reshape(x, (None, 1, -1)), centers)  # [batch, units, in]
    r2 = P.mul(P.sum(P.mul(diff, diff), axis=-1), P.mul(scales, scales))
    return RBF_KERNELS[kernel](P, r2)


# ---- activations with weights or randomness -------------------------------------------------


def _prelu_type(x: TensorType, *, shared: bool, **_: Any) -> TensorType:
    if not shared:
        _channels("prelu", x)
    need_min_rank("prelu", x, 1, "[batch, ...]", BATCH_HINT)  # α [1] would make a scalar [1]
    return x


def _prelu_weights(x: TensorType, *, shared: bool, **_: Any) -> dict[str, WeightSpec]:
    size = 1 if shared else _channels("prelu", x)
    return {"alpha": WeightSpec((size,), "other", init=const(0.25))}


@layer_op("prelu", "activation", infer=_prelu_type, weights=_prelu_weights)
def prelu(P: Any, x: Any, *, shared: bool = False, alpha: Weight) -> Any:
    """x if x ≥ 0 else α x, α learned per feature/channel (axis 1) or one shared (He et al.)."""
    slope = alpha if shared else per_channel(P, alpha, len(P.shape(x)))
    return P.where(P.ge(x, 0.0), x, P.mul(slope, x))


def _rrelu_type(x: TensorType, *, lower: float, upper: float, **_: Any) -> TensorType:
    if not 0 <= lower <= upper:
        raise NndslError("rrelu needs 0 <= lower <= upper", expected="0 <= lower <= upper",
                         received=f"lower={lower}, upper={upper}")
    return x


@layer_op("rrelu", "activation", infer=_rrelu_type)
def rrelu(P: Any, x: Any, *, lower: float = 1 / 8, upper: float = 1 / 3) -> Any:
    """x if x ≥ 0 else a x; a ~ U[lower, upper] per element in training, (lower+upper)/2 after."""
    if P.training:
        slope = P.add(lower, P.mul(upper - lower, P.random_uniform_like(x)))
    else:
        slope = (lower + upper) / 2
    return P.where(P.ge(x, 0.0), x, P.mul(slope, x))


def _maxout_sizes(x: TensorType, k: int, units: int | None) -> tuple[int, int]:
    n_in = _features_2d("maxout", x)
    positive("maxout", k=k, units=units)
    return n_in, units if units is not None else n_in


def _maxout_type(x: TensorType, *, k: int, units: int | None, **_: Any) -> TensorType:
    n_out = _maxout_sizes(x, k, units)[1]  # checks the rank before x.shape[0] is read
    return x.with_shape((x.shape[0], n_out))


def _maxout_weights(x: TensorType, *, k: int, units: int | None, **_: Any) -> dict[str, WeightSpec]:
    n_in, n_out = _maxout_sizes(x, k, units)
    return {"weight": WeightSpec((n_out * k, n_in), fan_in=n_in, fan_out=n_out),
            "bias": WeightSpec((n_out * k,), "bias", fan_in=n_in, fan_out=n_out)}


@layer_op("maxout", "activation", infer=_maxout_type, weights=_maxout_weights,
          sample_params={"k": 3, "units": 4})
def maxout(P: Any, x: Any, *, k: int = 2, units: int | None = None, weight: Weight,
           bias: Weight) -> Any:
    """y_u = max_j (x W_{uk+j}ᵀ + b_{uk+j}), j < k: k affine pieces per unit, W [units·k, in]."""
    z = P.add(P.matmul(x, P.transpose(weight)), bias)
    return P.max(P.reshape(z, (None, -1, k)), axis=-1)
