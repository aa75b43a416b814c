"""Neural Turing Machine addressing (Graves, Wayne & Danihelka 2014, "Neural Turing Machines",
§3.3), as the lecture notes give it: a head's weighting over the N rows of a memory [N, M] is
made in four differentiable stages, each an op here.

1. content: w_c(i) = exp(β K(k, M_i)) / Σ_j exp(β K(k, M_j)), K the cosine similarity of the
   key k [M] and row M_i, β > 0 the key strength (`content_address`; `cosine_similarity` alone);
2. interpolation: w_g = g w_c + (1 − g) w_prev with the gate g in (0, 1)
   (`interpolation_gate`);
3. shift: w̃(i) = Σ_j w_g(j) s(i − j), indices modulo N, s a distribution over the shifts
   −(S−1)/2, ..., (S−1)/2 (`circular_shift`; s[0] is the most negative shift, so s = [0, 0, 1]
   moves a focus on row j to row j + 1);
4. sharpening: w(i) = w̃(i)^γ / Σ_j w̃(j)^γ with γ ≥ 1 (`sharpen`).

Everything is batched: memories are [batch, N, M], keys [batch, M], weightings [batch, N], and
the per-head scalars β, g and γ are [batch, 1] (a controller's `dense(1)` output: β through
softplus, g through sigmoid, γ as 1 + softplus). The ops do not clamp them: the activations
that make them are the spec's choice, as in the paper. Cosine similarity follows torch
`F.cosine_similarity`: x·y / (max(‖x‖, eps) max(‖y‖, eps)).
"""

from __future__ import annotations

from typing import Any

from nndsl.errors import NndslError
from nndsl.ir import TensorType, format_shape
from nndsl.ops.shapes import broadcast, known_dim, layer_op, merge_dims, positive

WEIGHTING = "[batch, N]"
SCALAR_HEAD = "[batch, 1]"


# ---- shape rules ----------------------------------------------------------------------------


def _rank(name: str, what: str, x: TensorType, layout: str, hint: str | None = None) -> None:
    if x.rank != layout.count(",") + 1:
        raise NndslError(f"{name} expects the {what} as {layout}, got {format_shape(x.shape)}",
                         expected=layout, received=str(x), hint=hint)


def _head_scalar(name: str, what: str, x: TensorType, w: TensorType) -> None:
    """A per-example scalar such as β, g or γ: [batch, 1], batch as the weighting's."""
    _rank(name, what, x, SCALAR_HEAD, hint=f"make it with a dense(1) head, e.g. "
          f"`{what} = control -> dense(1) -> {'softplus' if what != 'gate' else 'sigmoid'}`")
    if x.shape[1] != 1:
        raise NndslError(f"{name} expects one {what} per example, got {format_shape(x.shape)}",
                         expected=SCALAR_HEAD, received=str(x))
    merge_dims(name, x.shape[0], w.shape[0], "the batch axis")


def _cosine_type(x: TensorType, y: TensorType, *, axis: int = -1, eps: float = 1e-8,
                 **_: Any) -> TensorType:
    out = broadcast("cosine_similarity", x, y)
    positive("cosine_similarity", eps=eps)
    if not -out.rank <= axis < out.rank:
        raise NndslError(f"cosine_similarity axis {axis} is out of range for {out.rank}-D "
                         f"inputs", expected=f"an axis in [{-out.rank}, {out.rank - 1}]",
                         received=f"axis={axis}")
    shape = list(out.shape)
    del shape[axis]
    return out.with_shape(tuple(shape))


def _content_type(key: TensorType, memory: TensorType, beta: TensorType, *, eps: float = 1e-8,
                  **_: Any) -> TensorType:
    name = "content_address"
    _rank(name, "memory", memory, "[batch, N, M]")
    _rank(name, "key", key, "[batch, M]", hint="one key per example: the controller's "
          "`dense(M)` output")
    positive(name, eps=eps)
    merge_dims(name, key.shape[0], memory.shape[0], "the batch axis")
    merge_dims(name, key.shape[1], memory.shape[2], "the row width M (key vs memory)")
    out = memory.with_shape((memory.shape[0], memory.shape[1]))
    _head_scalar(name, "beta", beta, out)
    return out


def _gate_type(w_content: TensorType, w_prev: TensorType, gate: TensorType,
               **_: Any) -> TensorType:
    name = "interpolation_gate"
    _rank(name, "content weighting", w_content, WEIGHTING)
    _rank(name, "previous weighting", w_prev, WEIGHTING)
    for axis, where in ((0, "the batch axis"), (1, "the number of rows N")):
        merge_dims(name, w_content.shape[axis], w_prev.shape[axis], where)
    _head_scalar(name, "gate", gate, w_content)
    return w_content


def _shift_type(w: TensorType, s: TensorType, **_: Any) -> TensorType:
    name = "circular_shift"
    _rank(name, "weighting", w, WEIGHTING)
    _rank(name, "shift distribution", s, "[batch, S]",
          hint="a softmax over the allowed shifts, e.g. 3 for -1, 0, +1")
    merge_dims(name, w.shape[0], s.shape[0], "the batch axis")
    rows = known_dim(name, w, 1, "memory rows N")
    shifts = known_dim(name, s, 1, "shifts S")
    if shifts % 2 == 0 or shifts > rows:
        raise NndslError(f"circular_shift needs an odd number of shifts, at most the {rows} "
                         f"rows, got S = {shifts}", expected=f"S odd and <= {rows} "
                         "(shifts -(S-1)/2 ... (S-1)/2)", received=f"s {format_shape(s.shape)}")
    return w


def _sharpen_type(w: TensorType, gamma: TensorType, **_: Any) -> TensorType:
    _rank("sharpen", "weighting", w, WEIGHTING)
    _head_scalar("sharpen", "gamma", gamma, w)
    return w


# ---- samples: what the parity and gradient tests feed ---------------------------------------


def _distribution(rng: Any, shape: tuple[int, ...]) -> Any:
    w = rng.uniform(0.1, 1.0, shape)
    return w / w.sum(axis=-1, keepdims=True)


def _content_inputs(rng: Any) -> tuple[Any, ...]:
    return (rng.standard_normal((3, 4)), rng.standard_normal((3, 5, 4)),
            rng.uniform(0.5, 5.0, (3, 1)))


def _gate_inputs(rng: Any) -> tuple[Any, ...]:
    return _distribution(rng, (3, 5)), _distribution(rng, (3, 5)), rng.uniform(0.1, 0.9, (3, 1))


def _shift_inputs(rng: Any) -> tuple[Any, ...]:
    return _distribution(rng, (3, 6)), _distribution(rng, (3, 3))


def _sharpen_inputs(rng: Any) -> tuple[Any, ...]:
    return _distribution(rng, (3, 6)), rng.uniform(1.0, 4.0, (3, 1))


# ---- the ops --------------------------------------------------------------------------------


def _norm(P: Any, x: Any, axis: int, eps: float) -> Any:
    """max(‖x‖, eps) as sqrt(max(Σx², eps²)): the same value, and no 0/0 in the gradient of a
    zero vector (the slope of sqrt at 0 is infinite)."""
    return P.sqrt(P.maximum(P.sum(P.mul(x, x), axis=axis, keepdims=True), eps * eps))


def cosine(P: Any, x: Any, y: Any, axis: int, eps: float) -> Any:
    """x·y / (max(‖x‖, eps) max(‖y‖, eps)) along axis (the axis dropped)."""
    scaled = P.div(P.mul(x, y), P.mul(_norm(P, x, axis, eps), _norm(P, y, axis, eps)))
    return P.sum(scaled, axis=axis)


@layer_op("cosine_similarity", infer=_cosine_type, samples=(((3, 5, 4), (3, 1, 4)),))
def cosine_similarity(P: Any, x: Any, y: Any, *, axis: int = -1, eps: float = 1e-8) -> Any:
    """x·y / (max(‖x‖, eps) max(‖y‖, eps)) along axis, broadcasting (torch's form)."""
    return cosine(P, x, y, axis, eps)


@layer_op("content_address", infer=_content_type, sample_inputs=_content_inputs)
def content_address(P: Any, key: Any, memory: Any, beta: Any, *, eps: float = 1e-8) -> Any:
    """w_i = softmax_i(β cos(k, M_i)): NTM content addressing of memory rows by a key."""
    score = P.mul(beta, cosine(P, P.reshape(key, (None, 1, -1)), memory, -1, eps))
    e = P.exp(P.sub(score, P.max(score, axis=-1, keepdims=True)))
    return P.div(e, P.sum(e, axis=-1, keepdims=True))


@layer_op("interpolation_gate", infer=_gate_type, sample_inputs=_gate_inputs)
def interpolation_gate(P: Any, w_content: Any, w_prev: Any, gate: Any) -> Any:
    """w = g w_content + (1 − g) w_prev: keep the previous weighting as much as 1 − g."""
    return P.add(P.mul(gate, w_content), P.mul(P.sub(1.0, gate), w_prev))


def roll(P: Any, w: Any, k: int) -> Any:
    """w(i − k) at i (indices modulo N): the last axis rotated k places to the right."""
    n = P.shape(w)[-1]
    k %= n
    if k == 0:
        return w
    return P.concat([P.slice(w, -1, n - k, n), P.slice(w, -1, 0, n - k)], -1)


@layer_op("circular_shift", infer=_shift_type, sample_inputs=_shift_inputs)
def circular_shift(P: Any, w: Any, s: Any) -> Any:
    """w̃(i) = Σ_j w(j) s(i − j) mod N, s over shifts −(S−1)/2..(S−1)/2 (NTM shift)."""
    half = P.shape(s)[-1] // 2
    terms = [P.mul(P.slice(s, -1, j, j + 1), roll(P, w, j - half)) for j in range(2 * half + 1)]
    out = terms[0]
    for term in terms[1:]:
        out = P.add(out, term)
    return out


@layer_op("sharpen", infer=_sharpen_type, sample_inputs=_sharpen_inputs)
def sharpen(P: Any, w: Any, gamma: Any) -> Any:
    """w_i^γ / Σ_j w_j^γ (γ ≥ 1), computed on w / max(w) so that no power underflows."""
    w = P.maximum(w, 0.0)  # a weighting is never negative: a stray negative entry counts as 0
    top = P.maximum(P.max(w, axis=-1, keepdims=True), 1e-30)
    powered = P.pow(P.div(w, top), gamma)
    return P.div(powered, P.sum(powered, axis=-1, keepdims=True))
