"""The restricted Boltzmann machine layer, with Bernoulli visible and hidden units, and the
conditionals and free energy contrastive divergence needs (nndsl/training/trainers/
contrastive_divergence.py), all written against the primitive table `P`.

Conventions fixed here (as `dense`): the weight is `[hidden, visible]` (one row per hidden
unit), so the up-pass is p(h = 1 | v) = σ(v Wᵀ + c) — exactly `dense(units) -> sigmoid`, and
ONNX `Gemm(transB=1)` then `Sigmoid` — and the down-pass p(v = 1 | h) = σ(h W + b). `bias` is
the hidden bias c, `visible_bias` the visible bias b. The forward (what a model computes, and
what backprop fine-tunes and the export holds) is the up-pass alone, so `visible_bias` is read
only by contrastive divergence: under backprop its gradient is zero.

Energy E(v, h) = −b·v − c·h − hᵀ W v; free energy F(v) = −log Σ_h e^−E(v, h)
= −b·v − Σ_j softplus(c_j + (v Wᵀ)_j).
"""

from __future__ import annotations

from typing import Any

from nndsl.ir import TensorType
from nndsl.ops.activations import softplus_of
from nndsl.ops.registry import OPS, Weight, WeightSpec
from nndsl.ops.shapes import BATCH_HINT, FLATTEN_HINT, known_dim, layer_op, need_rank, positive


def _visible(x: TensorType) -> int:
    need_rank("rbm", x, {2: "[batch, visible]"},
              FLATTEN_HINT.format(name="rbm") if x.rank > 2 else BATCH_HINT)
    return known_dim("rbm", x, 1, "visible units")


def _rbm_type(x: TensorType, *, units: int, **_: Any) -> TensorType:
    _visible(x)
    positive("rbm", units=units)
    return x.with_shape((x.shape[0], units))


def _rbm_weights(x: TensorType, *, units: int, **_: Any) -> dict[str, WeightSpec]:
    n = _visible(x)
    return {"weight": WeightSpec((units, n), fan_in=n, fan_out=units),
            "bias": WeightSpec((units,), "bias", fan_in=n, fan_out=units),
            "visible_bias": WeightSpec((n,), "bias", fan_in=units, fan_out=n)}


def hidden_probs(P: Any, v: Any, weight: Any, bias: Any) -> Any:
    """p(h = 1 | v) = σ(v Wᵀ + c), [batch, hidden]."""
    return P.sigmoid(P.add(P.matmul(v, P.transpose(weight)), bias))


def visible_probs(P: Any, h: Any, weight: Any, visible_bias: Any) -> Any:
    """p(v = 1 | h) = σ(h W + b), [batch, visible]."""
    return P.sigmoid(P.add(P.matmul(h, weight), visible_bias))


def bernoulli(R: Any, p: Any, dtype: str) -> Any:
    """Binary states in `dtype` ("f32" | "f64"): 1 where a U[0, 1) draw from table R is below p,
    so with probability p. NumPy and torch with the reference stream draw the same states."""
    return R.cast(R.lt(R.random_uniform_like(p), p), dtype)


def free_energy(P: Any, v: Any, weight: Any, bias: Any, visible_bias: Any) -> Any:
    """F(v) = −b·v − Σ_j softplus(c_j + (v Wᵀ)_j), one value per row, [batch]."""
    hidden = P.sum(softplus_of(P, P.add(P.matmul(v, P.transpose(weight)), bias)), axis=-1)
    return P.neg(P.add(P.sum(P.mul(v, visible_bias), axis=-1), hidden))


def _onnx_up_pass(P: Any, x: Any, *, units: int, weight: Any, bias: Any,
                  visible_bias: Any) -> Any:
    """Gemm(x, W, c, transB=1) then Sigmoid: dense's export, so `nndsl import` reads it back as
    `dense(units) -> sigmoid`, which exports to the same graph."""
    return P.sigmoid(OPS["dense"].native["onnx"](P, x, units=units, weight=weight, bias=bias))


@layer_op("rbm", infer=_rbm_type, weights=_rbm_weights, sample_params={"units": 3},
          native={"onnx": _onnx_up_pass})
def rbm(P: Any, x: Any, *, units: int, weight: Weight, bias: Weight,
        visible_bias: Weight) -> Any:
    """p(h = 1 | v) = σ(v Wᵀ + c), W [units, visible]: a restricted Boltzmann machine's up-pass.

    Bernoulli visible and hidden units; `visible_bias` b is used by the down-pass
    p(v = 1 | h) = σ(h W + b) and the free energy F(v) = −b·v − Σ_j softplus(c_j + (v Wᵀ)_j),
    which only `contrastive_divergence` reads (backprop leaves it unchanged). Train it with
    `trainer = contrastive_divergence(k=1)`; stack several for a deep belief network.
    """
    return hidden_probs(P, x, weight, bias)
