"""Layers that nndsl exports as several plain ONNX nodes (no single ONNX op computes them), read
back as the one nndsl layer: batchnorm, maxout, rbf (gaussian), the global pools, attention.

Each matcher follows the exact node sequence nndsl's exporter writes for that layer (the op's
decomposition run on the ONNX primitive table) and returns False when the sequence differs, so
the node is then imported by its general rule (or refused there).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import onnx

from nndsl.importer.context import Importer, rule
from nndsl.importer.graph import node_error
from nndsl.importer.rules import source_name


def _chain(imp: Importer, value: str, op_types: Sequence[str]) -> list[onnx.NodeProto] | None:
    """The nodes of `op_types`, each the only reader of the one before (first: of `value`)."""
    nodes = []
    for op_type in op_types:
        user = imp.view.only_user(value)
        if user is None or user.op_type != op_type:
            return None
        nodes.append(user)
        value = user.output[0]
    return nodes


def _other(node: onnx.NodeProto, value: str) -> str:
    return node.input[1] if node.input[0] == value else node.input[0]


def _ints(imp: Importer, value: str) -> list[int] | None:
    const = imp.view.const(value)
    if not isinstance(const, np.ndarray) or const.dtype == object:
        return None
    return [int(v) for v in const.ravel()]


def _reduced_last(imp: Importer, node: onnx.NodeProto, rank: int) -> bool:
    """A reduction over the last axis only, dropping it (ReduceSum: axes as an input)."""
    axes = _ints(imp, node.input[1]) if len(node.input) > 1 else imp.attr(node, "axes")
    return axes is not None and [a % rank for a in axes] == [rank - 1] and \
        not imp.attr(node, "keepdims", 1)


def _from_initializer(imp: Importer, value: str, op_type: str) -> str | None:
    """The initializer X when `value` = op_type(X, ...) (e.g. Reshape(mean, [1, -1]))."""
    node = imp.view.producer.get(value)
    if node is None or node.op_type != op_type or node.input[0] not in imp.view.initializers:
        return None
    return node.input[0]


# ---- batchnorm: (x − Reshape(mean)) · Reshape(γ / √(var + eps)) + Reshape(β) -----------------


def batchnorm_decomposed(imp: Importer, sub: onnx.NodeProto) -> bool:
    mean = _from_initializer(imp, sub.input[1], "Reshape")
    nodes = _chain(imp, sub.output[0], ("Mul", "Add"))
    if mean is None or nodes is None:
        return False
    mul, add = nodes
    beta = _from_initializer(imp, _other(add, mul.output[0]), "Reshape")
    scale = imp.view.producer.get(_other(mul, sub.output[0]))  # Reshape(γ / √(var + eps))
    div = imp.view.producer.get(scale.input[0]) if scale is not None and \
        scale.op_type == "Reshape" else None
    if beta is None or div is None or div.op_type != "Div":
        return False
    sqrt = imp.view.producer.get(div.input[1])
    plus = imp.view.producer.get(sqrt.input[0]) if sqrt is not None else None
    if sqrt is None or sqrt.op_type != "Sqrt" or plus is None or plus.op_type != "Add" or \
            div.input[0] not in imp.view.initializers or plus.input[0] not in \
            imp.view.initializers:
        return False
    eps = imp.array(plus.input[1], plus, "epsilon")
    x = imp.tensor(sub.input[0], sub)
    imp.take(mul, add)
    arrays = {"gamma": div.input[0], "beta": beta, "running_mean": mean,
              "running_var": plus.input[0]}
    from nndsl.importer.elementwise import f32

    imp.emit(sub, "batchnorm", [x], {"momentum": 0.1, "eps": f32(float(eps))}, add.output[0],
             weights={k: imp.view.initializers[v] for k, v in arrays.items()},
             label=imp.label_for(arrays["gamma"], "batchnorm"))
    return True


# ---- maxout: Reshape(x W + b, [0, -1, k]) -> ReduceMax(last axis) --------------------------------


def maxout_after(imp: Importer, node: onnx.NodeProto, x: str, w: np.ndarray,
                 bias: np.ndarray | None, out: str, extra: list[onnx.NodeProto]) -> bool:
    nodes = _chain(imp, out, ("Reshape", "ReduceMax"))
    if nodes is None or bias is None:
        return False
    reshape, reduce = nodes
    target = _ints(imp, reshape.input[1])
    if target is None or len(target) != 3 or target[:2] != [0, -1] or \
            not _reduced_last(imp, reduce, 3):
        return False
    k = target[2]
    imp.take(*extra, reshape, reduce)
    imp.emit(node, "maxout", [x], {"k": k, "units": w.shape[1] // k}, reduce.output[0],
             weights={"weight": w.T, "bias": bias},
             label=imp.label_for(source_name(imp, node.input[1]), "maxout"))
    return True


# ---- hopfield (sync): x <- Where(x W ± b >= 0, 1, -1), `steps` times ---------------------------


def _sign_step(imp: Importer, a: str) -> list[onnx.NodeProto] | None:
    """The nodes of sign⁺(a) = Where(a >= 0, ones_like(a), −ones_like(a)), or None."""
    users = imp.view.users(a)
    ge = next((u for u in users if u.op_type == "GreaterOrEqual" and u.input[0] == a), None)
    where = imp.view.only_user(ge.output[0]) if ge is not None else None
    if where is None or where.op_type != "Where" or not _zero(imp, ge.input[1]):
        return None
    ones, minus = (imp.view.producer.get(v) for v in where.input[1:])
    if ones is None or minus is None or minus.op_type != "Neg":
        return None
    minus_ones = imp.view.producer.get(minus.input[0])
    fills = [ones, minus_ones]
    if any(f is None or f.op_type != "ConstantOfShape" for f in fills):
        return None
    shapes = [imp.view.producer.get(f.input[0]) for f in fills]  # type: ignore[union-attr]
    if any(s is None or s.op_type != "Shape" or s.input[0] != a for s in shapes) or \
            any(float(np.ravel(numpy_value(f))[0]) != 1.0 for f in fills):  # type: ignore
        return None
    return [ge, *shapes, *fills, minus, where]  # type: ignore[list-item]


def numpy_value(fill: onnx.NodeProto) -> np.ndarray:
    from onnx import numpy_helper

    value = next((a.t for a in fill.attribute if a.name == "value"), None)
    return numpy_helper.to_array(value) if value is not None else np.zeros(1)


def _zero(imp: Importer, value: str) -> bool:
    const = imp.view.const(value)
    return isinstance(const, np.ndarray) and const.size == 1 and float(const.ravel()[0]) == 0.0


def _subtracted_bias(imp: Importer, value: str,
                     units: int) -> tuple[np.ndarray | None, str, list[onnx.NodeProto]]:
    """A constant [units] subtracted right after `value` (x W − b: hopfield's bias_sign=-1)."""
    user = imp.view.only_user(value)
    const = imp.view.const(user.input[1]) if user is not None and user.op_type == "Sub" \
        and user.input[0] == value else None
    if not isinstance(const, np.ndarray) or const.dtype == object or const.size != units:
        return None, value, []
    return const.reshape(units), user.output[0], [user]  # type: ignore[union-attr]


def hopfield_after(imp: Importer, node: onnx.NodeProto, x: str, bias: np.ndarray | None,
                   out: str, extra: list[onnx.NodeProto]) -> bool:
    """MatMul(x, W) + b (or − b) followed by sign⁺, repeated with the same W and b:
    hopfield(steps, bias_sign=1 or -1)."""
    weight, sign = node.input[1], 1
    if bias is None and weight in imp.view.initializers:
        bias, out, extra = _subtracted_bias(imp, node.output[0],
                                            imp.view.initializers[weight].shape[1])
        sign = -1
    b_value = extra[0].input[1] if extra else None
    if bias is None or weight not in imp.view.initializers or _sign_step(imp, out) is None:
        return False
    taken, steps, current = [*extra], 0, out
    while (step := _sign_step(imp, current)) is not None:
        taken += step
        steps += 1
        current = step[-1].output[0]
        nodes = _chain(imp, current, ("MatMul", "Add" if sign == 1 else "Sub"))
        if nodes is None or nodes[0].input != [current, weight] or \
                _other(nodes[1], nodes[0].output[0]) != b_value or \
                (sign == -1 and nodes[1].input[0] != nodes[0].output[0]):
            break
        taken += nodes
        current = nodes[1].output[0]
    if current != taken[-1].output[0] or taken[-1].op_type != "Where":
        return False
    imp.take(*taken)
    w = imp.view.initializers[weight]
    imp.emit(node, "hopfield", [x], {"steps": steps, "mode": "sync", "bias_sign": sign},
             current, weights={"weight": w, "bias": bias},
             label=imp.label_for(weight, "hopfield"))
    return True


# ---- reshapes that open a pattern: rbf (gaussian) and the global pools --------------------------


def reshape_pattern(imp: Importer, node: onnx.NodeProto) -> bool:
    target = _ints(imp, node.input[1])
    if target == [0, 1, -1]:
        return _rbf(imp, node)
    if target == [0, 0, -1]:
        return _global_pool(imp, node)
    return False


GLOBAL_REDUCE = {"ReduceMean": "global_avgpool", "ReduceMax": "global_maxpool"}


def _global_pool(imp: Importer, node: onnx.NodeProto) -> bool:
    user = imp.view.only_user(node.output[0])
    if user is None or user.op_type not in GLOBAL_REDUCE or not _reduced_last(imp, user, 3):
        return False
    imp.take(user)
    imp.emit(node, GLOBAL_REDUCE[user.op_type], [imp.tensor(node.input[0], node)], {},
             user.output[0])
    return True


def _rbf(imp: Importer, node: onnx.NodeProto) -> bool:
    """exp(−Σ(x − c)² · b²): Reshape, Sub(c), Mul(d, d), ReduceSum, Mul(b²), Neg, Exp."""
    nodes = _chain(imp, node.output[0], ("Sub", "Mul"))
    if nodes is None:
        return False
    sub, square = nodes
    if sub.input[1] not in imp.view.initializers or list(square.input) != [sub.output[0]] * 2:
        return False
    tail = _chain(imp, square.output[0], ("ReduceSum", "Mul", "Neg", "Exp"))
    if tail is None or not _reduced_last(imp, tail[0], 3):
        return False
    scaled = imp.view.producer.get(_other(tail[1], tail[0].output[0]))
    if scaled is None or scaled.op_type != "Mul" or len(set(scaled.input)) != 1 or \
            scaled.input[0] not in imp.view.initializers:
        return False
    centers, scales = (imp.view.initializers[v] for v in (sub.input[1], scaled.input[0]))
    x = imp.tensor(node.input[0], node)
    imp.take(sub, square, *tail)
    imp.emit(node, "rbf", [x], {"units": centers.shape[0], "kernel": "gaussian"},
             tail[-1].output[0], weights={"centers": centers, "scales": scales},
             label=imp.label_for(sub.input[1], "rbf"))
    return True


# ---- attention: softmax(q kᵀ / √d) v -------------------------------------------------------------


@rule("Transpose")
def transpose(imp: Importer, node: onnx.NodeProto) -> None:
    """A Transpose imports only as part of a recurrent layer or of attention (their rules
    take it); on its own nndsl has no transpose layer."""
    from nndsl.importer.recurrent import RECURRENT

    perm = list(imp.attr(node, "perm", []))
    user = imp.view.only_user(node.output[0])
    if user is not None and perm == [1, 0, 2] and user.op_type in RECURRENT and \
            user.input[0] == node.output[0]:
        return
    if user is not None and perm == [0, 2, 1] and user.op_type == "MatMul" and \
            user.input[1] == node.output[0]:
        return
    raise node_error(node, f"a Transpose (perm={perm}) has no nndsl layer",
                     hint="it imports before a recurrent layer or inside attention")


def attention_matmul(imp: Importer, node: onnx.NodeProto) -> None:
    """MatMul(q, Transpose(k)) [/ √d] -> Softmax -> MatMul(·, v): attention(q, k, v)."""
    keys_t = imp.view.producer.get(node.input[1])
    if keys_t is None or keys_t.op_type != "Transpose" or \
            list(imp.attr(keys_t, "perm", [])) != [0, 2, 1]:
        raise node_error(node, "multiplies two computed tensors; nndsl imports MatMul by a "
                         "constant weight (dense) or as scaled dot-product attention")
    q, k = imp.tensor(node.input[0], node), imp.tensor(keys_t.input[0], keys_t)
    scores, scale, taken = node.output[0], False, [keys_t]
    user = imp.view.only_user(scores)
    if user is not None and user.op_type == "Div":
        d = imp.builder.type_of(q).shape[-1]
        divisor = imp.view.const(user.input[1])
        if not isinstance(divisor, np.ndarray) or divisor.size != 1 or not isinstance(d, int) \
                or not math.isclose(float(divisor.ravel()[0]), math.sqrt(d), rel_tol=1e-6):
            raise node_error(user, "attention scores are scaled by something other than √d")
        scores, scale, taken = user.output[0], True, [*taken, user]
    rest = _chain(imp, scores, ("Softmax", "MatMul"))
    if rest is None or rest[1].input[0] != rest[0].output[0] or \
            imp.attr(rest[0], "axis", -1) not in (-1, 2):
        raise node_error(node, "q·kᵀ is not followed by a softmax over the keys and a "
                         "product with the values")
    v = imp.tensor(rest[1].input[1], rest[1])
    imp.take(*taken, *rest)
    imp.emit(node, "attention", [q, k, v], {"scale": scale}, rest[1].output[0])
