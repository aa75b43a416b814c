"""Losses (kind `loss`): `fn(P, y, t, *, ...)` -> a 0-d value (metrics: nndsl/ops/metrics.py).

Conventions (the lecture notes scale and average squared errors several ways; nndsl makes the
choice explicit):

- Every loss has `reduction="mean" | "sum"`. `mean` is the loss's documented average (over all
  elements for the elementwise losses mse/bce/hinge/logistic/mae, over the examples for the
  per-example ones); `sum` adds the same terms up instead. Both give a scalar.
- Per-example losses (sse, cross_entropy, nll, max_margin, kl_normal, ...) treat the first axis
  as the batch; class scores are on the last axis.
- Classification targets are class indices (one rank less than the scores, cast to i64) or
  one-hot / probability vectors (the scores' shape); the target's rank decides.
- Logs of probabilities are taken of max(p, eps), so a 0 never gives -inf or a NaN gradient.
- Shape rules reject mismatched shapes: two concrete sizes must be equal, two symbols must be
  the same symbol; a symbol against a concrete size is decided at run time.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import numpy as np

from nndsl.errors import NndslError
from nndsl.ir import Dim, TensorType, format_shape
from nndsl.ops.activations import log_softmax_of, softplus_of
from nndsl.ops.registry import op

Reduction = Literal["mean", "sum"]
SCALAR = TensorType((), "f32")


# ---- shape rules ---------------------------------------------------------------------------

def _dims_agree(a: Dim, b: Dim) -> bool:
    return a == b or isinstance(a, str) != isinstance(b, str)


def _shapes_agree(a: tuple[Dim, ...], b: tuple[Dim, ...]) -> bool:
    return len(a) == len(b) and all(_dims_agree(x, y) for x, y in zip(a, b, strict=True))


def _mismatch(name: str, what: str, want: tuple[Dim, ...], got: tuple[Dim, ...],
              hint: str | None = None, ref: str = "prediction") -> NndslError:
    return NndslError(
        f"{name} expects {what} shape {format_shape(want)} to match {ref}, "
        f"got {format_shape(got)}",
        expected=format_shape(want), received=format_shape(got), hint=hint,
    )


def _matching(name: str, what: str = "target", ref: str = "prediction") -> Callable[..., Any]:
    """Shape rule: the two inputs have the same shape."""

    def infer(y: TensorType, t: TensorType, *_: TensorType, **__: Any) -> TensorType:
        if not _shapes_agree(y.shape, t.shape):
            raise _mismatch(name, what, y.shape, t.shape, ref=ref)
        return SCALAR

    return infer


def _classes(name: str) -> Callable[..., TensorType]:
    """Shape rule: scores [..., classes] with index targets [...] or one-hot targets [..., k]."""

    def infer(y: TensorType, t: TensorType, *_: TensorType, **__: Any) -> TensorType:
        if y.rank == 0:
            raise NndslError(f"{name} expects class scores [batch, classes], got a scalar")
        if t.rank == y.rank - 1 and _shapes_agree(y.shape[:-1], t.shape):
            return SCALAR
        if _shapes_agree(y.shape, t.shape):
            return SCALAR
        hint = (f"class-index targets have shape {format_shape(y.shape[:-1])}, "
                "one-hot targets the prediction's shape")
        raise _mismatch(name, "target", y.shape, t.shape, hint=hint)

    return infer


def _class_indices(y: TensorType, t: TensorType, *_: TensorType,
                   **__: Any) -> tuple[int, int] | None:
    """Class-index targets (rank of y - 1) must lie in [0, classes)."""
    classes = y.shape[-1] if y.rank else None
    return (1, classes) if t.rank == y.rank - 1 and isinstance(classes, int) else None


def _contractive_type(code: TensorType, w: TensorType, **_: Any) -> TensorType:
    if code.rank != 2:
        raise NndslError("contractive expects a code [batch, units]",
                         expected="[batch, units]", received=format_shape(code.shape))
    concrete = all(isinstance(d, int) for d in w.shape)  # a weight's shape is never symbolic
    if w.rank != 2 or not concrete or not _dims_agree(w.shape[0], code.shape[1]):
        want = f"[{code.shape[1]}, in]"
        raise NndslError(
            f"contractive expects the encoder weight {want}, got {format_shape(w.shape)}",
            expected=want, received=format_shape(w.shape),
            hint="pass the encoder's weight, e.g. contractive(code, enc.weight)",
        )
    return SCALAR


# ---- helpers -------------------------------------------------------------------------------

def _reduce(P: Any, terms: Any, reduction: str) -> Any:
    return P.sum(terms) if reduction == "sum" else P.mean(terms)


def _per_example(P: Any, terms: Any) -> Any:
    """Σ over every axis but the first: [batch, ...] -> [batch]."""
    return P.sum(P.reshape(terms, (None, -1)), axis=1)


def _log(P: Any, p: Any, eps: float) -> Any:
    return P.log(P.maximum(p, eps))


def _target_mask(P: Any, y: Any, t: Any) -> Any:
    """One-hot weights with y's shape: from class indices (rank of y - 1) or t itself."""
    if len(P.shape(t)) == len(P.shape(y)) - 1:
        hot = P.one_hot(P.cast(t, "i64"), P.shape(y)[-1], "i64")
        return P.where(P.eq(hot, 1), P.ones_like(y), P.zeros_like(y))
    return t


def _picked(P: Any, a: Any, t: Any) -> Any:
    """Σ_k t_k a_k over the class axis: a[..., t] for index targets."""
    return P.sum(P.mul(_target_mask(P, a, t), a), axis=-1)


# ---- sample inputs -------------------------------------------------------------------------

def _pair(rng: Any) -> tuple[Any, ...]:
    return rng.standard_normal((4, 3)), rng.standard_normal((4, 3))


def _probs_and_bits(rng: Any) -> tuple[Any, ...]:
    return rng.uniform(0.05, 0.95, (4, 3)), rng.integers(0, 2, (4, 3)).astype(np.float64)


def _logits_and_bits(rng: Any) -> tuple[Any, ...]:
    return rng.standard_normal((4, 3)) * 3.0, rng.integers(0, 2, (4, 3)).astype(np.float64)


def _scores_and_signs(rng: Any) -> tuple[Any, ...]:
    return rng.standard_normal((6, 1)) * 2.0, rng.choice([-1.0, 1.0], (6, 1))


def _softmax_rows(rng: Any, shape: tuple[int, int]) -> Any:
    e = np.exp(rng.standard_normal(shape))
    return e / e.sum(axis=-1, keepdims=True)


def _probs_and_indices(rng: Any) -> tuple[Any, ...]:
    return _softmax_rows(rng, (5, 4)), rng.integers(0, 4, 5).astype(np.int64)


def _logits_and_indices(rng: Any) -> tuple[Any, ...]:
    return rng.standard_normal((5, 4)) * 3.0, rng.integers(0, 4, 5).astype(np.int64)


def _log_probs_and_indices(rng: Any) -> tuple[Any, ...]:
    return np.log(_softmax_rows(rng, (5, 4))), rng.integers(0, 4, 5).astype(np.int64)


def _contractive_inputs(rng: Any) -> tuple[Any, ...]:
    return rng.uniform(0.05, 0.95, (4, 3)), rng.standard_normal((3, 5))


# ---- losses --------------------------------------------------------------------------------

@op("mse", "loss", infer=_matching("mse"), sample_inputs=_pair, positional=())
def mse(P: Any, y: Any, t: Any, *, reduction: Reduction = "mean") -> Any:
    """mean over all elements of (y - t)^2, no ½: the quadratic cost, as torch's MSELoss."""
    d = P.sub(y, t)
    return _reduce(P, P.mul(d, d), reduction)


@op("sse", "loss", infer=_matching("sse"), sample_inputs=_pair, positional=())
def sse(P: Any, y: Any, t: Any, *, reduction: Reduction = "mean") -> Any:
    """½ Σ_features (y - t)^2, averaged over the batch (the ½ cancels the gradient's 2)."""
    d = P.sub(y, t)
    return _reduce(P, P.mul(0.5, _per_example(P, P.mul(d, d))), reduction)


@op("bce", "loss", infer=_matching("bce"), sample_inputs=_probs_and_bits, positional=())
def bce(P: Any, y: Any, t: Any, *, eps: float = 1e-12, reduction: Reduction = "mean") -> Any:
    """-mean over all elements of [t log y + (1 - t) log(1 - y)], logs of max(., eps)."""
    log_y, log_not_y = _log(P, y, eps), _log(P, P.sub(1.0, y), eps)
    terms = P.add(P.mul(t, log_y), P.mul(P.sub(1.0, t), log_not_y))
    return P.neg(_reduce(P, terms, reduction))


@op("bce_logits", "loss", infer=_matching("bce_logits"), sample_inputs=_logits_and_bits,
    positional=())
def bce_logits(P: Any, z: Any, t: Any, *, reduction: Reduction = "mean") -> Any:
    """bce(sigmoid(z), t) = mean of max(z, 0) - z t + log(1 + e^-|z|), stable for any z."""
    return _reduce(P, P.sub(softplus_of(P, z), P.mul(z, t)), reduction)


@op("cross_entropy", "loss", infer=_classes("cross_entropy"), index_bound=_class_indices,
    sample_inputs=_probs_and_indices, positional=())
def cross_entropy(P: Any, y: Any, t: Any, *, eps: float = 1e-12,
                  reduction: Reduction = "mean") -> Any:
    """-mean_batch Σ_k t_k log y_k on probabilities y; t one-hot or class indices."""
    return P.neg(_reduce(P, _picked(P, _log(P, y, eps), t), reduction))


@op("cross_entropy_logits", "loss", infer=_classes("cross_entropy_logits"),
    index_bound=_class_indices, sample_inputs=_logits_and_indices, positional=())
def cross_entropy_logits(P: Any, z: Any, t: Any, *, reduction: Reduction = "mean") -> Any:
    """-mean_batch Σ_k t_k log_softmax(z)_k on scores z, by log-sum-exp (torch's CrossEntropyLoss).

    The front end rewrites cross_entropy(softmax(z), t) into this op, so no softmax is taken twice.
    """
    return P.neg(_reduce(P, _picked(P, log_softmax_of(P, z), t), reduction))


@op("nll", "loss", infer=_classes("nll"), index_bound=_class_indices,
    sample_inputs=_log_probs_and_indices, positional=())
def nll(P: Any, logp: Any, t: Any, *, reduction: Reduction = "mean") -> Any:
    """-mean_batch logp[t] on log-probabilities; t class indices or one-hot (torch's NLLLoss)."""
    return P.neg(_reduce(P, _picked(P, logp, t), reduction))


@op("hinge", "loss", infer=_matching("hinge"), sample_inputs=_scores_and_signs,
    positional=("margin",))
def hinge(P: Any, y: Any, t: Any, *, margin: float = 1.0, reduction: Reduction = "mean") -> Any:
    """mean over all elements of max(0, margin - t y), labels t = ±1: the hinge loss of SVMs."""
    return _reduce(P, P.maximum(P.sub(margin, P.mul(t, y)), 0.0), reduction)


@op("logistic", "loss", infer=_matching("logistic"), sample_inputs=_scores_and_signs,
    positional=())
def logistic(P: Any, y: Any, t: Any, *, reduction: Reduction = "mean") -> Any:
    """mean over all elements of log(1 + e^(-t y)), labels t = ±1, as softplus(-t y)."""
    return _reduce(P, softplus_of(P, P.neg(P.mul(t, y))), reduction)


@op("max_margin", "loss", infer=_classes("max_margin"), index_bound=_class_indices,
    sample_inputs=_logits_and_indices, positional=("margin",))
def max_margin(P: Any, y: Any, t: Any, *, margin: float = 1.0,
               reduction: Reduction = "mean") -> Any:
    """mean_batch of max(0, max_{k != c}(y_k + margin) - y_c), c the class: multi-class hinge."""
    mask = _target_mask(P, y, t)
    others = P.where(P.eq(mask, 1.0), P.mul(P.ones_like(y), -np.inf), P.add(y, margin))
    gap = P.sub(P.max(others, axis=-1), P.sum(P.mul(mask, y), axis=-1))
    return _reduce(P, P.maximum(gap, 0.0), reduction)


@op("gaussian_nll", "loss", infer=_matching("gaussian_nll"), sample_inputs=_pair,
    positional=("sigma",))
def gaussian_nll(P: Any, y: Any, t: Any, *, sigma: float = 1.0,
                 reduction: Reduction = "mean") -> Any:
    """Σ_features (y - t)^2 / (2 sigma^2), averaged over the batch; constant dropped."""
    d = P.sub(y, t)
    return _reduce(P, P.mul(0.5 / sigma**2, _per_example(P, P.mul(d, d))), reduction)


@op("kl_normal", "loss", infer=_matching("kl_normal", "logvar", "mu"), sample_inputs=_pair,
    positional=())
def kl_normal(P: Any, mu: Any, logvar: Any, *, reduction: Reduction = "mean") -> Any:
    """½ Σ_latent (e^logvar + mu^2 - logvar - 1) = KL(N(mu, e^logvar) ‖ N(0, 1)), batch mean."""
    terms = P.sub(P.add(P.exp(logvar), P.mul(mu, mu)), P.add(logvar, 1.0))
    return _reduce(P, P.mul(0.5, _per_example(P, terms)), reduction)


@op("l1_activity", "loss", sample_inputs=lambda rng: (rng.standard_normal((4, 3)),),
    positional=("strength",))
def l1_activity(P: Any, code: Any, *, strength: float = 1.0,
                reduction: Reduction = "mean") -> Any:
    """strength Σ_features |code|, averaged over the batch: the sparse-code penalty.

    On an autoencoder's code this is the one-pass approximation of sparse coding: the encoder
    guesses each code instead of solving for it; `sparse_code` solves for it (ISTA).
    """
    return P.mul(strength, _reduce(P, _per_example(P, P.abs(code)), reduction))


@op("contractive", "loss", infer=_contractive_type, sample_inputs=_contractive_inputs,
    positional=("strength",))
def contractive(P: Any, code: Any, weight: Any, *, strength: float = 1.0,
                reduction: Reduction = "mean") -> Any:
    """strength Σ_j (h_j (1 - h_j))^2 Σ_i W_ji^2 = ‖∂h/∂x‖_F^2 for h = sigmoid(x W^T + b).

    The contractive autoencoder's penalty (Rifai et al., 2011) in the analytic form for a
    sigmoid dense encoder (weight [code, in], dense's layout), averaged over the batch.
    It needs the encoder weight, not x: write `contractive(code, enc.weight)`. Other encoders
    need a Jacobian primitive.
    """
    slope = P.mul(code, P.sub(1.0, code))
    row_norms = P.sum(P.mul(weight, weight), axis=1)
    per_example = P.sum(P.mul(P.mul(slope, slope), row_norms), axis=-1)
    return P.mul(strength, _reduce(P, per_example, reduction))
