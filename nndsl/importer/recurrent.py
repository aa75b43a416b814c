"""Import rules for ONNX RNN, LSTM and GRU: the inverse of nndsl's recurrent export.

ONNX stores W [D, G·H, F], R [D, G·H, H], B [D, 2·G·H] (and LSTM peepholes P [D, 3·H]) in its
own gate order; nndsl keeps one set per direction in torch's order. The gate tables of the
exporter (`backends/onnx/recurrent.py`) are read backwards here, so the two directions cannot
disagree. A coupled LSTM (i = 1 − f) is recognised by its ONNX form: the input-gate rows are the
forget-gate rows negated (σ(−a) = 1 − σ(a)).

Both nndsl and torch run the ONNX op time-major and transpose around it; the sequence input must
come from such a Transpose of a batch-first [batch, time, features] tensor. The outputs import in
the forms the two exporters write: all steps (Y → [batch, time, D·H]) or the last state (Y_h →
[batch, D·H]; torch's `h_n[-1]` is a Gather of Y_h).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx

from nndsl.backends.onnx.recurrent import GRU, LSTM, ONNX_ACTIVATIONS, RNN, OnnxLayout
from nndsl.importer.context import Importer, rule
from nndsl.importer.graph import Filled, node_error
from nndsl.importer.rules import source_name

RNN_ACTIVATIONS = {onnx_name: ours for ours, onnx_name in ONNX_ACTIVATIONS.items()}
RECURRENT = {"RNN": "rnn", "LSTM": "lstm", "GRU": "gru"}


def _ours(blocks: list[np.ndarray], slots: Any, node: onnx.NodeProto) -> np.ndarray:
    """Our blocks (in our order) from ONNX's blocks in slot order; a negated slot must hold
    exactly the negation of its block (that is how a coupled gate is exported)."""
    count = 1 + max(j for j, _ in slots)
    ours: list[np.ndarray | None] = [None] * count
    for (j, negated), block in zip(slots, blocks, strict=True):
        if not negated:
            ours[j] = block
    for (j, negated), block in zip(slots, blocks, strict=True):
        if negated and not np.array_equal(block, -ours[j]):  # type: ignore[operator]
            raise node_error(node, "gate rows do not follow nndsl's coupled layout")
    return np.concatenate(ours, axis=0)  # type: ignore[arg-type]


def _split(array: np.ndarray, n: int) -> list[np.ndarray]:
    return list(np.split(array, n, axis=0))


def _is_coupled(w: np.ndarray, r: np.ndarray, b: np.ndarray, units: int) -> bool:
    """ONNX input gate (slot 0) == − forget gate (slot 2) in every array: nndsl's coupled LSTM."""
    def slot(a: np.ndarray, s: int) -> np.ndarray:
        return a[..., s * units:(s + 1) * units, :] if a.ndim == 3 else \
            a[..., s * units:(s + 1) * units]

    halves = (b[:, :4 * units], b[:, 4 * units:])
    return all(np.array_equal(slot(a, 0), -slot(a, 2)) for a in (w, r, *halves))


def _weights(imp: Importer, node: onnx.NodeProto, layout: OnnxLayout, units: int,
             directions: int) -> dict[str, np.ndarray]:
    """Our per-direction weights from W, R, B (and P)."""
    w, r = (imp.array(node.input[i], node, role) for i, role in ((1, "W"), (2, "R")))
    g = len(layout.gates)
    b = imp.array(node.input[3], node, "B") if len(node.input) > 3 and node.input[3] \
        else np.zeros((directions, 2 * g * units), w.dtype)
    p = imp.array(node.input[7], node, "P") if len(node.input) > 7 and node.input[7] else None
    out: dict[str, np.ndarray] = {}
    for d, suffix in enumerate(("", "_reverse")[:directions]):
        def regate(a: np.ndarray, slots: Any = layout.gates) -> np.ndarray:
            return _ours(_split(a, len(slots)), slots, node)

        out[f"weight_ih{suffix}"] = regate(w[d])
        out[f"weight_hh{suffix}"] = regate(r[d])
        out[f"bias_ih{suffix}"] = regate(b[d, :g * units])
        out[f"bias_hh{suffix}"] = regate(b[d, g * units:])
        if p is not None:
            out[f"weight_peephole{suffix}"] = regate(p[d], layout.peepholes)
    return out


def _layout(imp: Importer, node: onnx.NodeProto, units: int) -> tuple[OnnxLayout, dict]:
    """The exporter's layout for this node and the nndsl parameters it implies."""
    if node.op_type == "RNN":
        acts = set(imp.attr(node, "activations", ["Tanh"]))
        if len(acts) != 1 or next(iter(acts)) not in RNN_ACTIVATIONS:
            raise node_error(node, f"RNN activations {sorted(acts)} are not supported",
                             expected="one of Tanh, Relu, Sigmoid for every direction")
        return RNN, {"activation": RNN_ACTIVATIONS[next(iter(acts))]}
    if node.op_type == "GRU":
        _default_activations(imp, node, ["Sigmoid", "Tanh"])
        lbr = bool(imp.attr(node, "linear_before_reset", 0))
        return GRU, {"linear_before_reset": lbr}
    _default_activations(imp, node, ["Sigmoid", "Tanh", "Tanh"])
    if imp.attr(node, "input_forget", 0):
        raise node_error(node, "input_forget=1 is not supported (the ONNX standard leaves its "
                         "meaning open)", hint="nndsl exports a coupled LSTM without it")
    w, r = (imp.array(node.input[i], node, role) for i, role in ((1, "W"), (2, "R")))
    b = imp.array(node.input[3], node, "B") if len(node.input) > 3 and node.input[3] else None
    coupled = b is not None and _is_coupled(w, r, b, units)
    peephole = len(node.input) > 7 and bool(node.input[7])
    return LSTM[coupled], {"peephole": peephole, "coupled": coupled}


def _default_activations(imp: Importer, node: onnx.NodeProto, default: list[str]) -> None:
    acts = imp.attr(node, "activations")
    if acts is not None and any(a != d for a, d in zip(acts, default * 2, strict=False)):
        raise node_error(node, f"activations {acts} are not supported", expected=str(default))
    if imp.attr(node, "clip") is not None:
        raise node_error(node, "cell clipping (clip=) is not supported")


def _sequence_source(imp: Importer, node: onnx.NodeProto) -> str:
    """The batch-first tensor behind X (X = Transpose(x, [1, 0, 2]), or the steps of the
    recurrent layer below in a stack)."""
    if node.input[0] in imp.time_major:
        return imp.values[node.input[0]]
    producer = imp.view.producer.get(node.input[0])
    if producer is None or producer.op_type != "Transpose" or \
            list(imp.attr(producer, "perm", [])) != [1, 0, 2]:
        raise node_error(node, "its sequence is not a transposed batch-first tensor",
                         hint="nndsl recurrent layers read [batch, time, features]")
    if len(imp.view.users(node.input[0])) == 1:
        imp.take(producer)
    return imp.tensor(producer.input[0], producer)


def _zero_states(imp: Importer, node: onnx.NodeProto) -> None:
    if len(node.input) > 4 and node.input[4]:
        raise node_error(node, "sequence_lens is not supported (every sequence runs its length)")
    for index in (5, 6):
        if len(node.input) > index and node.input[index]:
            state = imp.view.const(node.input[index])
            zero = isinstance(state, Filled) and state.value == 0 or \
                isinstance(state, np.ndarray) and state.dtype != object and not state.any()
            if not zero:
                raise node_error(node, "a non-zero initial state is not supported",
                                 hint="nndsl recurrent layers start from zeros")


@rule(*RECURRENT)
def recurrent(imp: Importer, node: onnx.NodeProto) -> None:
    units = imp.attr(node, "hidden_size")
    direction = imp.attr(node, "direction", "forward")
    if direction not in ("forward", "bidirectional") or imp.attr(node, "layout", 0):
        raise node_error(node, f"direction={direction} / layout=1 is not supported",
                         expected="direction forward or bidirectional, layout 0")
    directions = 2 if direction == "bidirectional" else 1
    layout, params = _layout(imp, node, units)
    weights = _weights(imp, node, layout, units, directions)
    _zero_states(imp, node)
    x = _sequence_source(imp, node)
    forms = _output_forms(imp, node, directions, units)
    op = RECURRENT[node.op_type]
    label = imp.label_for(source_name(imp, node.input[1]), op)
    for sequences, out, taken in forms:
        imp.take(*taken)
        if sequences and _stacked(imp, out):
            imp.time_major.add(out)
        imp.emit(node, op, [x], {"units": units, "bidirectional": directions == 2,
                                 "sequences": sequences, **params}, out,
                 weights=weights, label=label)
        label = imp.builder.nodes[-1].label  # a second form shares the first one's weights


def _output_forms(imp: Importer, node: onnx.NodeProto, directions: int,
                  units: int) -> list[tuple[bool, str, list[onnx.NodeProto]]]:
    """(sequences, the ONNX value it stands for, nodes taken) for each output read."""
    forms = []
    if len(node.output) > 2 and node.output[2] and imp.view.users(node.output[2]):
        raise node_error(node, "the last cell state Y_c is read; nndsl returns h only")
    if node.output[0] and imp.view.users(node.output[0]):
        forms.append((True, *_after(imp, node, node.output[0], SEQUENCE_FORMS, directions,
                                    units)))
    if len(node.output) > 1 and node.output[1] and imp.view.users(node.output[1]):
        forms.append((False, *_after(imp, node, node.output[1], LAST_FORMS, directions, units)))
    if not forms:
        raise node_error(node, "no output is read")
    return forms


def _after(imp: Importer, node: onnx.NodeProto, value: str, forms: Any, directions: int,
           units: int) -> tuple[str, list[onnx.NodeProto]]:
    """Follow `value` through one of the known node sequences to the batch-first result."""
    for form in forms:
        taken, current = [], value
        for op_type, check in form:
            user = imp.view.only_user(current) if current not in imp.view.outputs else None
            if user is None or user.op_type != op_type or user.input[0] != current or \
                    not check(imp, user, directions, units):
                break
            taken.append(user)
            current = user.output[0]
        else:
            return current, taken
    raise node_error(node, f"its output '{value}' is read in a form nndsl does not import",
                     hint="all steps as [batch, time, D·H], or the last state as [batch, D·H]")


def _perm(*perm: int) -> Any:
    return lambda imp, n, d, u: list(imp.attr(n, "perm", [])) == list(perm)


def _target(*entries: Any) -> Any:
    """Reshape to `entries`, where 'DH' is directions × units."""
    def check(imp: Importer, n: onnx.NodeProto, d: int, u: int) -> bool:
        shape = imp.view.const(n.input[1])
        if not isinstance(shape, np.ndarray) or shape.dtype == object:
            return False
        return all(int(v) == e or (e == "DH" and int(v) in (d * u, -1))
                   for v, e in zip(shape, entries, strict=True)) and len(shape) == len(entries)

    return check


def _squeeze_axis(imp: Importer, n: onnx.NodeProto, d: int, u: int) -> bool:
    axes = imp.view.const(n.input[1]) if len(n.input) > 1 else np.asarray(imp.attr(n, "axes"))
    return d == 1 and axes is not None and [int(a) for a in np.ravel(axes)] == [1]


def _first_direction(imp: Importer, n: onnx.NodeProto, d: int, u: int) -> bool:
    index = imp.view.const(n.input[1])
    return d == 1 and imp.attr(n, "axis", 0) == 0 and isinstance(index, np.ndarray) and \
        index.ndim == 0 and int(index) in (0, -1)


def _stacked(imp: Importer, value: str) -> bool:
    """Whether `value` is read only as the sequence of another recurrent node."""
    user = imp.view.only_user(value)
    return user is not None and user.op_type in RECURRENT and user.input[0] == value


def _into_next_layer(check: Any) -> Any:
    return lambda imp, n, d, u: check(imp, n, d, u) and _stacked(imp, n.output[0])


SEQUENCE_FORMS = (  # Y [T, D, B, H] -> [B, T, D·H]
    (("Transpose", _perm(2, 0, 1, 3)), ("Reshape", _target(0, 0, "DH"))),  # nndsl
    (("Squeeze", _squeeze_axis), ("Transpose", _perm(1, 0, 2))),  # torch, batch_first
    (("Transpose", _perm(0, 2, 1, 3)), ("Reshape", _target(0, 0, "DH")),
     ("Transpose", _perm(1, 0, 2))),  # torch, batch_first, bidirectional
    (("Squeeze", _into_next_layer(_squeeze_axis)),),  # torch, num_layers > 1: [T, B, H]
    (("Transpose", _perm(0, 2, 1, 3)), ("Reshape", _into_next_layer(_target(0, 0, "DH")))),
)
LAST_FORMS = (  # Y_h [D, B, H] -> [B, D·H]
    (("Transpose", _perm(1, 0, 2)), ("Reshape", _target(0, "DH"))),  # nndsl
    (("Gather", _first_direction),),  # torch: h_n[-1] of a one-layer network
)
