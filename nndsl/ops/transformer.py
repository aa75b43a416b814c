"""Transformer layers: layer normalisation and multi-head attention, batch first.

Conventions fixed here:

- `layer_norm(axis=-1)` normalises each example over the axes from `axis` to the last with the
  biased variance (Ba, Kiros & Hinton 2016, "Layer Normalization"), as torch `F.layer_norm`
  and ONNX `LayerNormalization` (opset 17) do; `gamma` and `beta` have the shape of those
  trailing axes and start at 1 and 0. Axis 0 (the batch) is never normalised over.
- `multi_head_attention` (Vaswani et al. 2017, "Attention Is All You Need", §3.2.2) takes its
  tensor inputs by rank: sequences are `[batch, time, features]`, a key padding mask is
  `[batch, keys]` and comes last. One sequence x is self-attention (queries, keys and values
  all x); two are (queries, memory) with keys = values = memory; three are (queries, keys,
  values). A mask entry 0 hides that key from every query (1 or any non-zero value keeps it:
  Hugging Face's `attention_mask`; torch's `key_padding_mask` is its negation). `causal=true`
  hides key j from query i when j > i (top-left aligned, as torch's `is_causal`); it needs
  integer time sizes, because the mask is a constant of the graph. A query whose keys are all
  hidden attends to all of them equally (the hidden scores are replaced by -1e9, not -inf).
- Weights, with E_q/E_k/E_v the query/key/value features and `dim` (default E_q) the width
  split into `heads` heads of dim / heads: `weight_q [dim, E_q]`, `weight_k [dim, E_k]`,
  `weight_v [dim, E_v]`, `weight_out [E_q, dim]` and biases `bias_q`, `bias_k`, `bias_v [dim]`,
  `bias_out [E_q]`; the output is `[batch, queries, E_q]`, so it adds onto its input. With
  dim = E_q = E_k = E_v this is torch `nn.MultiheadAttention(E, heads, batch_first=True)`:
  `in_proj_weight = [weight_q; weight_k; weight_v]` (stacked on axis 0), `in_proj_bias` the
  same of the biases, `out_proj.weight = weight_out`, `out_proj.bias = bias_out`.
- ONNX opset 17 has no attention operator: multi-head attention exports as MatMul, Softmax and
  friends; layer_norm exports as one LayerNormalization node.
"""

from __future__ import annotations

import math
from typing import Any

from nndsl.errors import NndslError
from nndsl.ir import TensorType, format_shape
from nndsl.ops.registry import OPS, Weight, WeightSpec
from nndsl.ops.shapes import (
    BATCH_HINT,
    const,
    known_dim,
    layer_op,
    merge_dims,
    need_min_rank,
    need_rank,
    positive,
    same_dtype,
)

HIDDEN = -1e9  # the score of a hidden key: exp(HIDDEN - max) is 0 in float32 and float64
SEQUENCE = "[batch, time, features]"
ROLES = {1: ("input",), 2: ("queries", "memory"), 3: ("queries", "keys", "values")}

# ---- layer normalisation --------------------------------------------------------------------


def normalised_axes(name: str, x: TensorType, axis: int) -> tuple[int, ...]:
    """The axes `axis`, ..., rank - 1 of x, with `axis` checked (never the batch axis)."""
    need_min_rank(name, x, 2, "[batch, features, ...]", BATCH_HINT)
    if not -x.rank < axis < x.rank or axis % x.rank == 0:
        raise NndslError(f"{name} axis {axis} is not a feature axis of a {x.rank}-D input",
                         expected=f"an axis in [1, {x.rank - 1}] or [{-x.rank + 1}, -1]",
                         received=f"axis={axis}", hint="axis=-1 normalises the last axis")
    return tuple(range(axis % x.rank, x.rank))


def _layer_norm_type(x: TensorType, *, axis: int, eps: float, **_: Any) -> TensorType:
    for a in normalised_axes("layer_norm", x, axis):
        known_dim("layer_norm", x, a, f"features (axis {a})")
    positive("layer_norm", eps=eps)
    return x


def _layer_norm_weights(x: TensorType, *, axis: int, use_bias: bool,
                        **_: Any) -> dict[str, WeightSpec]:
    shape = tuple(known_dim("layer_norm", x, a, f"features (axis {a})")
                  for a in normalised_axes("layer_norm", x, axis))
    specs = {"gamma": WeightSpec(shape, "other", init=const(1.0))}
    if use_bias:
        specs["beta"] = WeightSpec(shape, "bias", init=const(0.0))
    return specs


@layer_op("layer_norm", infer=_layer_norm_type, weights=_layer_norm_weights, positional=(),
          samples=(((2, 3, 5),), ((3, 4, 2, 2),)), sample_params={"axis": -2})
def layer_norm(P: Any, x: Any, *, axis: int = -1, eps: float = 1e-5, use_bias: bool = True,
               gamma: Weight, beta: Weight = None) -> Any:
    """γ (x − μ) / √(σ² + eps) + β, μ, σ² over the axes from `axis` on (Ba et al. 2016)."""
    axes = tuple(range(axis % len(P.shape(x)), len(P.shape(x))))
    centred = P.sub(x, P.mean(x, axis=axes, keepdims=True))
    var = P.mean(P.mul(centred, centred), axis=axes, keepdims=True)
    y = P.mul(P.div(centred, P.sqrt(P.add(var, eps))), gamma)
    return y if beta is None else P.add(y, beta)


# ---- multi-head attention -------------------------------------------------------------------


def split_inputs(xs: tuple[Any, ...], rank: Any) -> tuple[Any, Any, Any, Any]:
    """(queries, keys, values, mask or None) from the inputs as given; `rank(x)` reads a rank.

    Only the last input may be a mask (rank 2); 1 to 3 sequences come before it."""
    mask = xs[-1] if len(xs) > 1 and rank(xs[-1]) == 2 else None
    seqs = xs[:-1] if mask is not None else xs
    if len(seqs) == 1:
        return seqs[0], seqs[0], seqs[0], mask
    if len(seqs) == 2:
        return seqs[0], seqs[1], seqs[1], mask
    return seqs[0], seqs[1], seqs[2], mask


def _check_inputs(xs: tuple[TensorType, ...]) -> tuple[TensorType, ...]:
    """The inputs as (queries, keys, values, mask or None), each of the rank its role needs."""
    roles = split_inputs(xs, lambda t: t.rank)
    seqs = xs[:-1] if roles[3] is not None else xs
    if len(seqs) > 3:
        raise NndslError(f"multi_head_attention takes 1 to 3 sequences, got {len(seqs)}",
                         expected="(x), (queries, memory) or (queries, keys, values), "
                                  "then an optional [batch, keys] mask",
                         received=", ".join(str(x) for x in xs))
    for role, t in zip(ROLES[len(seqs)], seqs, strict=True):
        hint = "a [batch, keys] mask comes last" if t.rank == 2 else None
        need_rank(f"multi_head_attention {role}", t, {3: SEQUENCE}, hint)
        if t.dtype == "i64":
            raise NndslError(f"multi_head_attention {role} must be floating-point, got {t}",
                             expected="f32 or f64", received=str(t),
                             hint="embed tokens first: `embedding(vocab, dim)`")
    same_dtype("multi_head_attention", seqs)
    return roles


def _attention_sizes(xs: tuple[TensorType, ...], heads: int,
                     dim: int | None) -> tuple[TensorType, int]:
    """The queries' type and the attention width, once every input and size agrees."""
    q, k, v, mask = _check_inputs(xs)
    name = "multi_head_attention"
    batch = merge_dims(name, q.shape[0], k.shape[0], "the batch axis")
    batch = merge_dims(name, batch, v.shape[0], "the batch axis")
    keys = merge_dims(name, k.shape[1], v.shape[1], "the number of keys and values")
    if mask is not None:
        merge_dims(name, batch, mask.shape[0], "the batch axis of the mask")
        merge_dims(name, keys, mask.shape[1], "the number of keys (mask axis 1)")
    for role, t in (("query", q), ("key", k), ("value", v)):
        known_dim(name, t, 2, f"{role} features")
    positive(name, heads=heads, dim=dim)
    width = dim if dim is not None else q.shape[2]
    if width % heads:
        raise NndslError(f"{name} width {width} does not split into {heads} heads",
                         expected=f"dim divisible by heads={heads}",
                         received=f"dim={width}, heads={heads}",
                         hint="choose heads dividing the width, or set dim=")
    return q, width


def _mha_type(*xs: TensorType, heads: int, dim: int | None, causal: bool,
              **_: Any) -> TensorType:
    q, _ = _attention_sizes(xs, heads, dim)
    keys = split_inputs(xs, lambda t: t.rank)[1]
    if causal and not all(isinstance(d, int) for d in (q.shape[1], keys.shape[1])):
        raise NndslError(
            "multi_head_attention causal=true needs integer numbers of queries and keys, got "
            f"{format_shape(q.shape)} and {format_shape(keys.shape)}",
            expected="[batch, T, features] with an integer T", received=str(q),
            hint="declare the time axis with a size, e.g. i64[batch, 16]")
    return q


def _mha_weights(*xs: TensorType, heads: int, dim: int | None, use_bias: bool,
                 **_: Any) -> dict[str, WeightSpec]:
    q, width = _attention_sizes(xs, heads, dim)
    _, k, v, _ = split_inputs(xs, lambda t: t.rank)
    features = {"q": q.shape[2], "k": k.shape[2], "v": v.shape[2]}
    specs = {f"weight_{r}": WeightSpec((width, n), fan_in=n, fan_out=width)
             for r, n in features.items()}
    specs["weight_out"] = WeightSpec((q.shape[2], width), fan_in=width, fan_out=q.shape[2])
    if use_bias:
        specs.update({f"bias_{r}": WeightSpec((width,), "bias") for r in features})
        specs["bias_out"] = WeightSpec((q.shape[2],), "bias")
    return specs


def _mha_sample(rng: Any) -> tuple[Any, ...]:
    """Cross-attention of 4 queries over 5 keys with a padding mask (key 4 hidden in example 0,
    keys 3 and 4 in example 1); the op's samples also set causal=true."""
    import numpy as np

    mask = np.array([[1, 1, 1, 1, 0], [1, 1, 1, 0, 0]], dtype=np.int64)
    return rng.standard_normal((2, 4, 8)), rng.standard_normal((2, 5, 6)), mask


def project(P: Any, x: Any, weight: Any, bias: Any) -> Any:
    """x Wᵀ + b over the last axis, through `dense` (its native form where the backend has
    one: F.linear on torch)."""
    units = P.shape(weight)[0]
    return OPS["dense"].function_for(P)(P, x, units=units, use_bias=bias is not None,
                                        weight=weight, bias=bias)


def causal_hidden(tq: int, tk: int) -> list[list[int]]:
    """1 where key j is later than query i (hidden by causal=true), else 0."""
    return [[int(j > i) for j in range(tk)] for i in range(tq)]


def _heads(P: Any, x: Any, heads: int) -> Any:
    """[batch, T, dim] -> [batch, heads, T, dim / heads]."""
    return P.transpose(P.reshape(x, (None, None, heads, -1)), (0, 2, 1, 3))


def _scores(P: Any, q: Any, k: Any, mask: Any, causal: bool, head_dim: int) -> Any:
    """q kᵀ / √d per head, hidden keys set to HIDDEN: [batch, heads, queries, keys]."""
    scores = P.div(P.matmul(q, P.transpose(k, (0, 1, 3, 2))), math.sqrt(head_dim))
    if causal:
        tq, tk = P.shape(q)[2], P.shape(k)[2]
        scores = P.where(P.gt(P.constant(causal_hidden(tq, tk), "i64"), 0), HIDDEN, scores)
    if mask is not None:
        scores = P.where(P.eq(P.reshape(mask, (None, 1, 1, -1)), 0), HIDDEN, scores)
    return scores


@layer_op("multi_head_attention", infer=_mha_type, weights=_mha_weights, integer_inputs=True,
          sample_inputs=_mha_sample, sample_params={"heads": 2, "causal": True})
def multi_head_attention(P: Any, *xs: Any, heads: int, dim: int | None = None,
                         causal: bool = False, use_bias: bool = True, weight_q: Weight,
                         weight_k: Weight, weight_v: Weight, weight_out: Weight,
                         bias_q: Weight = None, bias_k: Weight = None, bias_v: Weight = None,
                         bias_out: Weight = None) -> Any:
    """[softmax(q_h k_hᵀ / √d_h) v_h]_h W_oᵀ + b_o, q = x W_qᵀ + b_q, ... (Vaswani et al. 2017)."""
    query, keys, values, mask = split_inputs(xs, lambda a: len(P.shape(a)))
    q = _heads(P, project(P, query, weight_q, bias_q), heads)
    k = _heads(P, project(P, keys, weight_k, bias_k), heads)
    v = _heads(P, project(P, values, weight_v, bias_v), heads)
    scores = _scores(P, q, k, mask, causal, P.shape(weight_q)[0] // heads)
    weights = OPS["softmax"].function_for(P)(P, scores, axis=-1)
    context = P.reshape(P.transpose(P.matmul(weights, v), (0, 2, 1, 3)), (None, None, -1))
    return project(P, context, weight_out, bias_out)
