"""Recurrent layers (rnn, lstm, gru) and scaled dot-product attention.

Inputs are batch first, [batch, time, features]. The initial state is zeros, or with
`initial_state=learned` trainable vectors `initial_h [H]` (and `initial_c [H]` for lstm; one per
direction, `..._reverse`), the same for every sequence of a batch. Truncated backpropagation
through time (nndsl/training/truncate.py) feeds a layer the state it ended the previous chunk
with as `state_h [batch, H]` (and `state_c`): never declared weights, bound only while it
trains; in training mode a one-directional layer reports its final state under those names
(`WithUpdates`), which the interpreter keeps only where they are bound. The
time loop is unrolled here (the concrete length comes from `P.shape`), so every backend runs
the same decomposition; native overrides use the mapping below. ONNX export has one for rnn,
lstm and gru (backends/onnx/recurrent.py: one ONNX RNN/LSTM/GRU node, so the time axis may stay
symbolic), imported only when an export calls it: `import nndsl` does not import onnx.

Weight layout, one set per direction (the reverse direction's names end in `_reverse`):
`weight_ih [G·H, F]`, `weight_hh [G·H, H]`, `bias_ih [G·H]`, `bias_hh [G·H]`: G stacked blocks
of H rows, one per gate, in torch's order:

    rnn   G = 1  (h)
    lstm  G = 4  (i, f, g, o);  coupled=true: G = 3  (f, g, o)
    gru   G = 3  (r, z, n)

`lstm(peephole=true)` adds `weight_peephole [K·H]`: diagonal peepholes (i, f, o), or (f, o) when
coupled; they start at 0 (role "other").

torch (batch_first=True): `weight_ih_l0 = weight_ih`, `weight_hh_l0`, `bias_ih_l0`, `bias_hh_l0`
and `..._l0_reverse = ..._reverse`, one to one. nn.GRU is `linear_before_reset=true`; nn.RNN
has only tanh and relu; torch has no peephole or coupled LSTM.

ONNX (W [D, G·H, F], R [D, G·H, H], B [D, 2·G·H] = [Wb, Rb], P [D, 3·H]; direction index d):
rnn: W = weight_ih, R = weight_hh, B = [bias_ih, bias_hh]. lstm: ONNX gates (i, o, f, c) are
our blocks [0, 3, 1, 2] in W, R and both halves of B; P (i, o, f) is our peephole blocks
[0, 2, 1]. coupled, ours (f, g, o): ONNX (i, o, f, c) = (−f, o, f, g), P = (−p_f, p_o, p_f),
no `input_forget`: σ(−a) = 1 − σ(a) makes ONNX's i our 1 − f on any runtime (onnxruntime's
input_forget=1 computes f = 1 − i, but the spec leaves it undefined and the reference evaluator
ignores it). gru: ONNX gates (z, r, h) are our blocks [1, 0, 2]; `linear_before_reset` is ours.
Y [T, D, batch, H] is our [batch, T, D·H] after a transpose (onnxruntime rejects layout=1).

Equations, with x̂ = W_ih x_t + b_ih and ĥ = W_hh h_{t−1} + b_hh split into gate blocks:

- rnn: h_t = act(x̂ + ĥ) (Elman), act any weightless activation.
- lstm: i = σ(x̂_i + ĥ_i + p_i ⊙ c_{t−1}), f = σ(x̂_f + ĥ_f + p_f ⊙ c_{t−1}),
  c_t = f ⊙ c_{t−1} + i ⊙ tanh(x̂_g + ĥ_g), o = σ(x̂_o + ĥ_o + p_o ⊙ c_t), h_t = o ⊙ tanh(c_t).
  Peepholes are diagonal and the output gate sees the new c_t, as Gers and Schmidhuber's text
  and ONNX say (full peephole matrices are not used). coupled: i = 1 − f (one gate decides
  both what to forget and what to write).
- gru: r = σ(x̂_r + ĥ_r), z = σ(x̂_z + ĥ_z), h_t = (1 − z) ⊙ n + z ⊙ h_{t−1} (torch/ONNX roles;
  some course notes' z is 1 − this z). n = tanh(x̂_n + r ⊙ ĥ_n) with
  linear_before_reset=true (default: torch nn.GRU, Keras reset_after), or
  n = tanh(x̂_n + W_hn (r ⊙ h_{t−1}) + b_hn) with false (Cho et al.'s reset before the matmul).
- bidirectional: the reverse direction reads x_T, ..., x_1; outputs are [forward, reverse] on
  the feature axis. sequences=false returns [h_T forward, h_1 reverse] (torch's h_n).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial
from typing import Any, Literal, NamedTuple

from nndsl.errors import NndslError
from nndsl.ir import TensorType
from nndsl.ops import registry
from nndsl.ops.registry import OPS, ActivationName, Weight, WeightSpec, WithUpdates
from nndsl.ops.shapes import (
    const,
    known_dim,
    layer_op,
    merge_dims,
    need_rank,
    positive,
    same_dtype,
)

LSTM_GATES = {False: ("i", "f", "g", "o"), True: ("f", "g", "o")}  # by `coupled`
LSTM_PEEPHOLES = {False: ("i", "f", "o"), True: ("f", "o")}
SEQUENCE = "[batch, time, features]"


class Direction(NamedTuple):
    """The weights of one direction of a recurrent layer."""

    weight_ih: Any
    weight_hh: Any
    bias_ih: Any
    bias_hh: Any
    peephole: Any = None


Step = Callable[[Any, Any, Any, Any, Direction], tuple[Any, Any]]  # (P, x̂_t, h, c, w) -> (h, c)


def _apply(P: Any, name: str, x: Any, **params: Any) -> Any:
    """Run tensor op `name` on x, through the backend's native form when it registers one."""
    opdef = OPS[name]
    return opdef.native.get(getattr(P, "backend", ""), opdef.compute)(P, x, **params)


def _blocks(P: Any, v: Any, n: int, units: int) -> list[Any]:
    """The n gate blocks of size `units` along the last axis of v."""
    return [P.slice(v, -1, j * units, (j + 1) * units) for j in range(n)]


def _affine(P: Any, h: Any, w: Any, b: Any) -> Any:
    return P.add(P.matmul(h, P.transpose(w)), b)


class Start(NamedTuple):
    """Where one direction starts: h_0 and c_0, each None (zeros), a learned [H] vector or a
    carried [batch, H] state."""

    h: Any = None
    c: Any = None


def _start(P: Any, zeros: Any, value: Any) -> Any:
    """A state [batch, H] from zeros and a [H] vector or [batch, H] array (added: broadcast)."""
    return zeros if value is None else P.add(zeros, value)


def _unroll(P: Any, x: Any, step: Step, w: Direction, units: int, reverse: bool,
            start: Start) -> tuple[Any, Any, Any]:
    """Run `step` over time (backwards if `reverse`) from `start`: ([batch, time, H] in time
    order, last h, last c)."""
    xw = _affine(P, x, w.weight_ih, w.bias_ih)  # every step's input projection at once
    times = range(P.shape(x)[1])
    inputs = [P.reshape(P.slice(xw, 1, t, t + 1), (None, -1)) for t in times]
    zeros = P.zeros_like(P.slice(inputs[0], -1, 0, units))
    h, c = _start(P, zeros, start.h), _start(P, zeros, start.c)
    outputs: dict[int, Any] = {}
    for t in reversed(times) if reverse else times:
        h, c = step(P, inputs[t], h, c, w)
        outputs[t] = P.reshape(h, (None, 1, units))
    return P.concat([outputs[t] for t in times], 1), h, c


def _recurrent(P: Any, x: Any, step: Step, directions: list[Direction], units: int,
               sequences: bool, starts: list[Start], cell: bool = False) -> Any:
    """The layer's output; in training mode a one-directional layer also reports its final
    state (`state_h`, and `state_c` when it has a cell) for truncated BPTT to carry."""
    runs = [_unroll(P, x, step, w, units, d == 1, start)
            for d, (w, start) in enumerate(zip(directions, starts, strict=False))]
    outs = [seq if sequences else last for seq, last, _ in runs]
    out = outs[0] if len(outs) == 1 else P.concat(outs, -1)
    if not P.training or len(runs) != 1:
        return out
    _, h, c = runs[0]
    return WithUpdates(out, {"state_h": h, "state_c": c} if cell else {"state_h": h})


def starts(bidirectional: bool, initial: tuple[Any, ...], reverse: tuple[Any, ...],
           carried: tuple[Any, ...]) -> list[Start]:
    """Each direction's start: a carried state (the forward direction only) over a learned one."""
    forward = Start(*(s if s is not None else i for s, i in zip(carried, initial, strict=True)))
    return [forward, Start(*reverse)][: 1 + bidirectional]


def _rnn_step(P: Any, xt: Any, h: Any, c: Any, w: Direction, *,
              activation: str) -> tuple[Any, Any]:
    return _apply(P, activation, P.add(xt, _affine(P, h, w.weight_hh, w.bias_hh))), c


def _lstm_step(P: Any, xt: Any, h: Any, c: Any, w: Direction, *, units: int,
               coupled: bool) -> tuple[Any, Any]:
    names, peeps = LSTM_GATES[coupled], LSTM_PEEPHOLES[coupled]
    z = P.add(xt, _affine(P, h, w.weight_hh, w.bias_hh))
    pre = dict(zip(names, _blocks(P, z, len(names), units), strict=True))
    peep = {} if w.peephole is None else dict(
        zip(peeps, _blocks(P, w.peephole, len(peeps), units), strict=True))

    def gate(name: str, cell: Any) -> Any:  # σ(pre + p ⊙ cell), p only with peepholes
        return P.sigmoid(P.add(pre[name], P.mul(peep[name], cell)) if peep else pre[name])

    f = gate("f", c)
    i = P.sub(1.0, f) if coupled else gate("i", c)
    c = P.add(P.mul(f, c), P.mul(i, P.tanh(pre["g"])))
    return P.mul(gate("o", c), P.tanh(c)), c


def _gru_step(P: Any, xt: Any, h: Any, c: Any, w: Direction, *, units: int,
              linear_before_reset: bool) -> tuple[Any, Any]:
    xr, xz, xn = _blocks(P, xt, 3, units)
    w_rz, w_n = (P.slice(w.weight_hh, 0, a * units, b * units) for a, b in ((0, 2), (2, 3)))
    b_rz, b_n = (P.slice(w.bias_hh, 0, a * units, b * units) for a, b in ((0, 2), (2, 3)))
    hr, hz = _blocks(P, _affine(P, h, w_rz, b_rz), 2, units)
    r, z = P.sigmoid(P.add(xr, hr)), P.sigmoid(P.add(xz, hz))
    if linear_before_reset:
        n = P.tanh(P.add(xn, P.mul(r, _affine(P, h, w_n, b_n))))
    else:
        n = P.tanh(P.add(xn, _affine(P, P.mul(r, h), w_n, b_n)))
    return P.add(P.mul(P.sub(1.0, z), n), P.mul(z, h)), c


# ---- shape and weight rules -----------------------------------------------------------------


def _features(name: str, x: TensorType, units: int) -> int:
    hint = ("a sequence needs a time axis: [batch, time, features]" if x.rank == 2
            else "reshape the input to [batch, time, features]")
    need_rank(name, x, {3: SEQUENCE}, hint)
    positive(name, units=units)
    return known_dim(name, x, -1, "input features")


def _sequence_rule(name: str) -> Callable[..., TensorType]:
    def infer(x: TensorType, *, units: int, bidirectional: bool, sequences: bool,
              activation: str | None = None, **_: Any) -> TensorType:
        _features(name, x, units)
        if activation is not None and registry.get(activation, "activation").weights:
            raise NndslError(f"{name} activation '{activation}' owns weights",
                             expected="an activation without weights (tanh, relu, ...)",
                             received=f"activation={activation}")
        out = units * (2 if bidirectional else 1)
        return x.with_shape((x.shape[0], x.shape[1], out) if sequences else (x.shape[0], out))

    return infer


def _weights_rule(name: str, gates: Callable[..., tuple[int, int]],
                  states: tuple[str, ...] = ("h",)) -> Callable[..., Any]:
    """Weights of a recurrent layer; `gates(**params)` gives (gate blocks, peephole blocks);
    `states` are the states a learned initial state gives a vector each (lstm: h and c)."""

    def weights(x: TensorType, *, units: int, bidirectional: bool,
                initial_state: str = "zeros", **params: Any) -> dict[str, WeightSpec]:
        n_in = _features(name, x, units)
        g, k = gates(**params)
        specs: dict[str, WeightSpec] = {}
        for suffix in ("", "_reverse") if bidirectional else ("",):
            specs[f"weight_ih{suffix}"] = WeightSpec((g * units, n_in), fan_in=n_in,
                                                     fan_out=units)
            specs[f"weight_hh{suffix}"] = WeightSpec((g * units, units), fan_in=units,
                                                     fan_out=units)
            specs[f"bias_ih{suffix}"] = WeightSpec((g * units,), "bias", fan_in=n_in,
                                                   fan_out=units)
            specs[f"bias_hh{suffix}"] = WeightSpec((g * units,), "bias", fan_in=units,
                                                   fan_out=units)
            if k:
                specs[f"weight_peephole{suffix}"] = WeightSpec((k * units,), "other",
                                                               init=const(0.0))
            if initial_state == "learned":  # start at 0: the zeros state, then learnt
                for state in states:
                    specs[f"initial_{state}{suffix}"] = WeightSpec((units,), "other",
                                                                   init=const(0.0))
        return specs

    return weights


def _lstm_gates(*, peephole: bool, coupled: bool, **_: Any) -> tuple[int, int]:
    return len(LSTM_GATES[coupled]), len(LSTM_PEEPHOLES[coupled]) if peephole else 0


SEQUENCE_SAMPLES = (((2, 5, 3),),)


# ---- ops ------------------------------------------------------------------------------------


InitialState = Literal["zeros", "learned"]


@layer_op("rnn", infer=_sequence_rule("rnn"), weights=_weights_rule("rnn", lambda **_: (1, 0)),
          samples=SEQUENCE_SAMPLES,
          sample_params={"units": 4, "sequences": False, "initial_state": "learned"})
def rnn(P: Any, x: Any, *, units: int, activation: ActivationName = "tanh",
        bidirectional: bool = False, sequences: bool = True, initial_state: InitialState = "zeros",
        weight_ih: Weight, weight_hh: Weight, bias_ih: Weight, bias_hh: Weight,
        weight_ih_reverse: Weight = None, weight_hh_reverse: Weight = None,
        bias_ih_reverse: Weight = None, bias_hh_reverse: Weight = None, initial_h: Weight = None,
        initial_h_reverse: Weight = None, state_h: Weight = None) -> Any:
    """h_t = act(W_ih x_t + b_ih + W_hh h_{t−1} + b_hh), h_0 = 0 or learned (Elman RNN).

    initial_state=learned: h_0 = initial_h [H], a trainable vector (starting at 0) shared by
    every sequence. state_h [batch, H] is the state truncated BPTT carries in (never declared).
    """
    fwd = Direction(weight_ih, weight_hh, bias_ih, bias_hh)
    bwd = Direction(weight_ih_reverse, weight_hh_reverse, bias_ih_reverse, bias_hh_reverse)
    step = partial(_rnn_step, activation=activation)
    begin = starts(bidirectional, (initial_h, None), (initial_h_reverse,), (state_h, None))
    return _recurrent(P, x, step, [fwd, bwd][: 1 + bidirectional], units, sequences, begin)


@layer_op("lstm", infer=_sequence_rule("lstm"),
          weights=_weights_rule("lstm", _lstm_gates, ("h", "c")), samples=SEQUENCE_SAMPLES,
          sample_params={"units": 4, "bidirectional": True, "initial_state": "learned"})
def lstm(P: Any, x: Any, *, units: int, bidirectional: bool = False, sequences: bool = True,
         peephole: bool = False, coupled: bool = False, initial_state: InitialState = "zeros",
         weight_ih: Weight, weight_hh: Weight, bias_ih: Weight, bias_hh: Weight,
         weight_peephole: Weight = None, weight_ih_reverse: Weight = None,
         weight_hh_reverse: Weight = None, bias_ih_reverse: Weight = None,
         bias_hh_reverse: Weight = None, weight_peephole_reverse: Weight = None,
         initial_h: Weight = None, initial_c: Weight = None, initial_h_reverse: Weight = None,
         initial_c_reverse: Weight = None, state_h: Weight = None,
         state_c: Weight = None) -> Any:
    """c_t = f ⊙ c_{t−1} + i ⊙ g, h_t = o ⊙ tanh(c_t); gates (i, f, g, o) (Hochreiter, 1997).

    h_0 = c_0 = 0, or with initial_state=learned the trainable vectors initial_h and initial_c
    [H] (starting at 0). state_h, state_c [batch, H]: the state truncated BPTT carries in.
    """
    fwd = Direction(weight_ih, weight_hh, bias_ih, bias_hh, weight_peephole)
    bwd = Direction(weight_ih_reverse, weight_hh_reverse, bias_ih_reverse, bias_hh_reverse,
                    weight_peephole_reverse)
    step = partial(_lstm_step, units=units, coupled=coupled)
    return _recurrent(P, x, step, [fwd, bwd][: 1 + bidirectional], units, sequences,
                      starts(bidirectional, (initial_h, initial_c),
                             (initial_h_reverse, initial_c_reverse), (state_h, state_c)),
                      cell=True)


@layer_op("gru", infer=_sequence_rule("gru"), weights=_weights_rule("gru", lambda **_: (3, 0)),
          samples=SEQUENCE_SAMPLES, sample_params={"units": 4})
def gru(P: Any, x: Any, *, units: int, bidirectional: bool = False, sequences: bool = True,
        linear_before_reset: bool = True, initial_state: InitialState = "zeros",
        weight_ih: Weight, weight_hh: Weight, bias_ih: Weight, bias_hh: Weight,
        weight_ih_reverse: Weight = None, weight_hh_reverse: Weight = None,
        bias_ih_reverse: Weight = None, bias_hh_reverse: Weight = None, initial_h: Weight = None,
        initial_h_reverse: Weight = None, state_h: Weight = None) -> Any:
    """h_t = (1 − z) ⊙ n + z ⊙ h_{t−1}; gates (r, z, n), torch/ONNX roles (Cho, 2014).

    h_0 = 0, or the trainable initial_h [H] with initial_state=learned; state_h [batch, H]: the
    state truncated BPTT carries in.
    """
    fwd = Direction(weight_ih, weight_hh, bias_ih, bias_hh)
    bwd = Direction(weight_ih_reverse, weight_hh_reverse, bias_ih_reverse, bias_hh_reverse)
    step = partial(_gru_step, units=units, linear_before_reset=linear_before_reset)
    begin = starts(bidirectional, (initial_h, None), (initial_h_reverse,), (state_h, None))
    return _recurrent(P, x, step, [fwd, bwd][: 1 + bidirectional], units, sequences, begin)


ATTENTION_LAYOUTS = {"query": "[batch, queries, d]", "keys": "[batch, keys, d]",
                     "values": "[batch, keys, d_v]"}


def _attention_type(query: TensorType, keys: TensorType, values: TensorType,
                    **_: Any) -> TensorType:
    for role, t in zip(ATTENTION_LAYOUTS, (query, keys, values), strict=True):
        need_rank(f"attention {role}", t, {3: ATTENTION_LAYOUTS[role]})
    same_dtype("attention", (query, keys, values))
    batch = merge_dims("attention", query.shape[0], keys.shape[0], "the batch axis")
    batch = merge_dims("attention", batch, values.shape[0], "the batch axis")
    merge_dims("attention", query.shape[2], keys.shape[2], "d (query and key features)")
    merge_dims("attention", keys.shape[1], values.shape[1], "the number of keys and values")
    return query.with_shape((batch, query.shape[1], values.shape[2]))


@layer_op("attention", infer=_attention_type, samples=(((2, 3, 4), (2, 5, 4), (2, 5, 6)),))
def attention(P: Any, query: Any, keys: Any, values: Any, *, scale: bool = True) -> Any:
    """softmax(q kᵀ / √d) v, softmax over the keys; scale=false drops the 1/√d (Vaswani et al.)."""
    scores = P.matmul(query, P.transpose(keys, (0, 2, 1)))
    if scale:
        scores = P.div(scores, math.sqrt(P.shape(query)[-1]))
    return P.matmul(_apply(P, "softmax", scores, axis=-1), values)
