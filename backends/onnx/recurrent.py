"""Native ONNX forms of rnn, lstm and gru: one ONNX RNN / LSTM / GRU node per layer.

Why: the shared decomposition (nndsl/ops/recurrent.py) unrolls the time loop with the concrete
sequence length, so a model whose time axis is symbolic ("time") could not be exported at all,
and one with a fixed length exported hundreds of nodes. The ONNX ops loop over time themselves,
so one file serves every sequence length. `nndsl/ops/recurrent.py` registers these functions
as `native["onnx"]`, importing this module only when an export runs (`import nndsl` must not
import onnx).

Weights. ONNX wants W [D, G·H, F], R [D, G·H, H], B [D, 2·G·H] = [Wb, Rb] and, for LSTM
peepholes, P [D, 3·H], with its own gate order; ours are per direction in torch's order. The
re-layout (gate permutation, negation, stacking of the directions) is written once against the
primitive namespace and runs with the NumPy table when the weights are initializers (always, for
`export_graph`): the model then holds the re-laid weights as initializers named after the layer
(`lstm_1.onnx_W:<n>`) and no extra nodes. Otherwise (weights that are computed values) the same
code runs with the ONNX table and emits Slice/Neg/Concat/Reshape nodes.

Gate mapping (ONNX slot <- our block, `-` means negated):

    rnn   W/R/B: the one block as is; activations = [Tanh | Relu | Sigmoid] per direction
    lstm  (i, o, f, c) <- (i, o, f, g) = our blocks [0, 3, 1, 2];  P (i, o, f) <- [0, 2, 1]
    lstm coupled, ours (f, g, o): (i, o, f, c) <- (-f, o, f, g);   P (i, o, f) <- (-p_f, p_o, p_f)
    gru   (z, r, h) <- our blocks [1, 0, 2]; linear_before_reset as ours

Coupled LSTM: our i = 1 - f is written without `input_forget`: ONNX's input slot gets our forget
pre-activation negated (σ(-a) = 1 - σ(a), peephole included) and its forget slot gets it as is.
The node has 4·H rows either way, and the form needs no runtime support for `input_forget`,
which the ONNX spec leaves undefined ("couple the input and forget gates"): onnxruntime computes
f = 1 - i, its reference evaluator ignores the attribute, WebNN refuses it.

Initial state. A learned initial state (`initial_state=learned`: initial_h, initial_c [H] per
direction) is broadcast over the batch and stacked to the node's initial_h / initial_c inputs
[D, batch, H]; a carried state (state_h, state_c) exists only while truncated BPTT trains.

Layout. onnxruntime 1.31 rejects `layout=1` (batch first) for all three ops, so X is transposed
to [time, batch, F] and the result back: Y [T, D, batch, H] -> [batch, T, D·H] (forward then
reverse on the feature axis, as ours); with sequences=false Y_h [D, batch, H] -> [batch, D·H]
(the reverse direction's Y_h is its state after reading x_1: our h_1 reverse).

Where the ONNX op cannot express the layer (an rnn activation other than tanh, relu, sigmoid)
or onnxruntime 1.31 cannot run it (a dtype other than float32: it has float kernels only), the
decomposition runs instead when the time axis has a fixed length. Over a symbolic time axis,
which cannot be unrolled, the activation is refused with NotImplementedError and the dtype gets
the ONNX op anyway (the standard defines it for double too).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from nndsl.backends.numpy.prims import make_numpy_prims
from nndsl.backends.onnx.emitter import OnnxEmitter, ValueType, emitter_of

from nndsl.ops.recurrent import Direction, Start
from nndsl.ops.registry import OPS, register_natives

Slots = tuple[tuple[int, bool], ...]  # per ONNX gate slot: (our block index, negated)

ONNX_ACTIVATIONS = {"tanh": "Tanh", "relu": "Relu", "sigmoid": "Sigmoid"}
WEIGHT_NAMES = ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_peephole")  # Direction
FLOAT32 = np.dtype("float32")


@dataclass(frozen=True)
class OnnxLayout:
    """How one of our recurrent layers maps onto an ONNX op: gate slots and fixed attributes."""

    op_type: str
    gates: Slots
    peepholes: Slots | None = None
    attrs: Mapping[str, Any] = field(default_factory=dict)


RNN = OnnxLayout("RNN", ((0, False),))
LSTM = {  # by `coupled`; ONNX gates (i, o, f, c), peepholes (i, o, f)
    False: OnnxLayout("LSTM", ((0, False), (3, False), (1, False), (2, False)),
                      ((0, False), (2, False), (1, False))),
    True: OnnxLayout("LSTM", ((0, True), (2, False), (0, False), (1, False)),
                     ((0, True), (1, False), (0, False))),
}
GRU = OnnxLayout("GRU", ((1, False), (0, False), (2, False)))  # ONNX (z, r, h)


# ---- weight re-layout, written against a primitive table (NumPy to fold, ONNX otherwise) -------


def _regate(Q: Any, v: Any, slots: Slots, units: int) -> Any:
    """v's blocks of `units` rows (axis 0) in ONNX slot order, negated where a slot says so."""
    blocks = []
    for j, negate in slots:
        block = Q.slice(v, 0, j * units, (j + 1) * units)
        blocks.append(Q.neg(block) if negate else block)
    return blocks[0] if len(blocks) == 1 else Q.concat(blocks, 0)


def _stack(Q: Any, vs: Sequence[Any]) -> Any:
    """The per-direction arrays stacked on a new leading axis (ONNX's num_directions)."""
    lifted = [Q.reshape(v, (1, *Q.shape(v))) for v in vs]
    return lifted[0] if len(lifted) == 1 else Q.concat(lifted, 0)


def _onnx_weights(Q: Any, directions: Sequence[Direction], layout: OnnxLayout,
                  units: int) -> dict[str, Any]:
    """ONNX's W, R, B (and P with peepholes) from our per-direction weights."""
    def regate(v: Any, slots: Slots = layout.gates) -> Any:
        return _regate(Q, v, slots, units)

    weights = {
        "W": _stack(Q, [regate(d.weight_ih) for d in directions]),
        "R": _stack(Q, [regate(d.weight_hh) for d in directions]),
        "B": _stack(Q, [Q.concat([regate(d.bias_ih), regate(d.bias_hh)], 0)
                        for d in directions]),
    }
    if layout.peepholes is not None and directions[0].peephole is not None:
        weights["P"] = _stack(Q, [regate(d.peephole, layout.peepholes) for d in directions])
    return weights


def _folded_weights(P: Any, em: OnnxEmitter, directions: Sequence[Direction],
                    layout: OnnxLayout, units: int) -> dict[str, str]:
    """W, R, B(, P) as value names: new initializers when every weight is one, else nodes."""
    arrays = [[None if v is None else em.initializer_value(v) for v in d] for d in directions]
    if any(a is None for d, ds in zip(directions, arrays, strict=True)
           for v, a in zip(d, ds, strict=True) if v is not None):
        return _onnx_weights(P, directions, layout, units)
    folded = _onnx_weights(make_numpy_prims(), [Direction(*ds) for ds in arrays], layout, units)
    layer = str(directions[0].weight_ih).rsplit(".", 1)[0]
    return {key: em.add_initializer(em.fresh(f"{layer}.onnx_{key}"), np.ascontiguousarray(a))
            for key, a in folded.items()}


# ---- the node --------------------------------------------------------------------------------


def _initial(P: Any, xn: Any, begin: Sequence[Start], state: str, units: int,
             dtype: np.dtype) -> str:
    """ONNX's initial_h or initial_c [D, batch, H]: each direction's learned [H] vector (or
    zeros) broadcast over the batch, which a one-row slice of x gives."""
    x0 = P.reshape(P.slice(xn, 1, 0, 1), (-1, P.shape(xn)[2]))  # [batch, F]
    zeros = P.zeros_like(P.slice(x0, -1, 0, 1))  # [batch, 1]
    rows = []
    for start in begin:
        value = getattr(start, state)
        vector = value if value is not None else np.zeros(units, dtype)
        rows.append(P.reshape(P.add(zeros, vector), (1, -1, units)))
    return rows[0] if len(rows) == 1 else P.concat(rows, 0)


def _weight_kwargs(directions: Sequence[Direction]) -> dict[str, Any]:
    """Our keyword arguments for the weights in `directions` (for the decomposition)."""
    kwargs = {}
    for suffix, d in zip(("", "_reverse"), directions, strict=False):
        kwargs.update({f"{name}{suffix}": v for name, v in zip(WEIGHT_NAMES, d, strict=True)
                       if v is not None})
    return kwargs


def _recurrent(P: Any, name: str, x: Any, directions: Sequence[Direction], layout: OnnxLayout,
               *, units: int, sequences: bool, hyper: Mapping[str, Any],
               initial: Mapping[str, Any], unsupported: str | None = None) -> str:
    """One ONNX `layout.op_type` node computing our layer `name` on x [batch, time, F].

    `unsupported` says why the ONNX op cannot express this layer; then (and for a dtype that
    onnxruntime has no kernel for) the decomposition runs instead when the time axis is fixed.
    `initial`: the layer's learned initial states by parameter name (initial_h, ...), given to
    the node as its initial_h and initial_c inputs.
    """
    em = emitter_of(P)
    weights = [v for d in directions for v in d if v is not None]
    weights += [v for v in initial.values() if v is not None]
    dtype = np.result_type(*(em.type_of(em.operand(v)).dtype for v in (x, *weights)))
    fixed_time = isinstance(em.type_of(em.operand(x)).shape[1], int)
    if fixed_time and (unsupported is not None or dtype != FLOAT32):
        return OPS[name].compute(P, x, units=units, sequences=sequences,
                                 bidirectional=len(directions) == 2, **hyper,
                                 **_weight_kwargs(directions), **initial)
    if unsupported is not None:
        raise NotImplementedError(
            f"{unsupported}, and the time axis has no fixed length to unroll the loop over")
    onnx_weights = _folded_weights(P, em, directions, layout, units)
    _, (xn, *ws) = em.promote(x, *onnx_weights.values())
    named = dict(zip(onnx_weights, ws, strict=True))
    xt = P.transpose(xn, (1, 0, 2))  # onnxruntime only runs layout=0: [time, batch, F]
    time, batch, _ = em.type_of(xt).shape
    n_dir = len(directions)
    inputs = [xt, named["W"], named["R"], named["B"]]
    begin = [Start(initial.get(f"initial_h{s}"), initial.get(f"initial_c{s}"))
             for s in ("", "_reverse")[:n_dir]]
    optional = ["", *(_initial(P, xn, begin, state, units, dtype)
                      if any(getattr(b, state) is not None for b in begin) else ""
                      for state in ("h", "c")), named.get("P", "")]
    while optional and not optional[-1]:  # sequence_lens, initial_h, initial_c, P: defaults
        optional.pop()
    inputs += optional
    outs = [ValueType(dtype, (time, n_dir, batch, units))]
    if not sequences:
        outs.append(ValueType(dtype, (n_dir, batch, units)))
    direction = "bidirectional" if n_dir == 2 else "forward"
    values = em.node(layout.op_type, inputs, outs, hidden_size=units, direction=direction,
                     **layout.attrs)
    if sequences:  # Y [T, D, batch, H] -> [batch, T, D·H]: forward then reverse features
        return P.reshape(P.transpose(values[0], (2, 0, 1, 3)), (None, None, n_dir * units))
    return P.reshape(P.transpose(values[1], (1, 0, 2)), (None, n_dir * units))


def _directions(bidirectional: bool, forward: Direction, reverse: Direction) -> list[Direction]:
    return [forward, reverse][: 1 + bidirectional]


# ---- the natives: the signatures of the ops in nndsl/ops/recurrent.py ------------------------


def _learned(**states: Any) -> dict[str, Any]:
    return {k: v for k, v in states.items() if v is not None}


def rnn(P: Any, x: Any, *, units: int, activation: str = "tanh", bidirectional: bool = False,
        sequences: bool = True, initial_state: str = "zeros", weight_ih: Any, weight_hh: Any,
        bias_ih: Any, bias_hh: Any, weight_ih_reverse: Any = None, weight_hh_reverse: Any = None,
        bias_ih_reverse: Any = None, bias_hh_reverse: Any = None, initial_h: Any = None,
        initial_h_reverse: Any = None, state_h: Any = None) -> str:
    """An ONNX RNN node; `activation` must be one ONNX RNN has (tanh, relu, sigmoid)."""
    directions = _directions(
        bidirectional, Direction(weight_ih, weight_hh, bias_ih, bias_hh),
        Direction(weight_ih_reverse, weight_hh_reverse, bias_ih_reverse, bias_hh_reverse))
    act = ONNX_ACTIVATIONS.get(activation)
    unsupported = None if act else (
        f"rnn(activation={activation}) has no ONNX RNN form (ONNX RNN activations: "
        f"{', '.join(ONNX_ACTIVATIONS)})")
    layout = OnnxLayout(RNN.op_type, RNN.gates, attrs={"activations": [act] * len(directions)})
    return _recurrent(P, "rnn", x, directions, layout, units=units, sequences=sequences,
                      hyper={"activation": activation}, unsupported=unsupported,
                      initial=_learned(initial_h=initial_h, initial_h_reverse=initial_h_reverse))


def lstm(P: Any, x: Any, *, units: int, bidirectional: bool = False, sequences: bool = True,
         peephole: bool = False, coupled: bool = False, initial_state: str = "zeros",
         weight_ih: Any, weight_hh: Any, bias_ih: Any, bias_hh: Any,
         weight_peephole: Any = None, weight_ih_reverse: Any = None,
         weight_hh_reverse: Any = None, bias_ih_reverse: Any = None,
         bias_hh_reverse: Any = None, weight_peephole_reverse: Any = None,
         initial_h: Any = None, initial_c: Any = None, initial_h_reverse: Any = None,
         initial_c_reverse: Any = None, state_h: Any = None, state_c: Any = None) -> str:
    """An ONNX LSTM node (peepholes as its P input; coupled as described in the module)."""
    directions = _directions(
        bidirectional, Direction(weight_ih, weight_hh, bias_ih, bias_hh, weight_peephole),
        Direction(weight_ih_reverse, weight_hh_reverse, bias_ih_reverse, bias_hh_reverse,
                  weight_peephole_reverse))
    return _recurrent(P, "lstm", x, directions, LSTM[coupled], units=units, sequences=sequences,
                      hyper={"peephole": peephole, "coupled": coupled},
                      initial=_learned(initial_h=initial_h, initial_c=initial_c,
                                       initial_h_reverse=initial_h_reverse,
                                       initial_c_reverse=initial_c_reverse))


def gru(P: Any, x: Any, *, units: int, bidirectional: bool = False, sequences: bool = True,
        linear_before_reset: bool = True, initial_state: str = "zeros", weight_ih: Any,
        weight_hh: Any, bias_ih: Any, bias_hh: Any, weight_ih_reverse: Any = None,
        weight_hh_reverse: Any = None, bias_ih_reverse: Any = None, bias_hh_reverse: Any = None,
        initial_h: Any = None, initial_h_reverse: Any = None, state_h: Any = None) -> str:
    """An ONNX GRU node with our `linear_before_reset`."""
    directions = _directions(
        bidirectional, Direction(weight_ih, weight_hh, bias_ih, bias_hh),
        Direction(weight_ih_reverse, weight_hh_reverse, bias_ih_reverse, bias_hh_reverse))
    layout = OnnxLayout(GRU.op_type, GRU.gates,
                        attrs={"linear_before_reset": int(linear_before_reset)})
    return _recurrent(P, "gru", x, directions, layout, units=units, sequences=sequences,
                      hyper={"linear_before_reset": linear_before_reset},
                      initial=_learned(initial_h=initial_h, initial_h_reverse=initial_h_reverse))


NATIVE = {"rnn": rnn, "lstm": lstm, "gru": gru}
register_natives("onnx", NATIVE)
