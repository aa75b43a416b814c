"""Import rules for activations, batch normalisation and elementwise arithmetic."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import onnx

from nndsl.importer.context import Importer, rule
from nndsl.importer.graph import attrs, node_error
from nndsl.importer.rules import source_name
from nndsl.ops.activations import SELU_ALPHA, SELU_SCALE


def f32(value: float) -> float:
    """A float32 attribute as the short decimal it was written as (0.2, not 0.2000000029...)."""
    return float(str(np.float32(value)))


def _axis(a: dict[str, Any]) -> dict[str, Any]:
    return {"axis": a.get("axis", -1)}


def _selu(a: dict[str, Any]) -> dict[str, Any]:
    alpha, gamma = a.get("alpha", SELU_ALPHA), a.get("gamma", SELU_SCALE)
    if abs(alpha - SELU_ALPHA) > 1e-6 or abs(gamma - SELU_SCALE) > 1e-6:
        raise ValueError(f"alpha={alpha}, gamma={gamma}: nndsl's selu has the standard constants")
    return {}


# ONNX op -> (nndsl activation, its parameters from the node's attributes)
ACTIVATIONS: dict[str, tuple[str, Callable[[dict[str, Any]], dict[str, Any]]]] = {
    "Relu": ("relu", lambda a: {}),
    "Sigmoid": ("sigmoid", lambda a: {}),
    "Tanh": ("tanh", lambda a: {}),
    "Softplus": ("softplus", lambda a: {}),
    "Atan": ("arctan", lambda a: {}),
    "LeakyRelu": ("leaky_relu", lambda a: {"slope": f32(a.get("alpha", 0.01))}),
    "Elu": ("elu", lambda a: {"alpha": f32(a.get("alpha", 1.0))}),
    "Selu": ("selu", _selu),
    "Softmax": ("softmax", _axis),
    "LogSoftmax": ("log_softmax", _axis),
}


@rule(*ACTIVATIONS)
def activation(imp: Importer, node: onnx.NodeProto) -> None:
    op, params = ACTIVATIONS[node.op_type]
    try:
        values = params(attrs(node))
    except ValueError as e:
        raise node_error(node, str(e)) from None
    imp.emit(node, op, [imp.tensor(node.input[0], node)], values, node.output[0])


@rule("Clip")
def clip(imp: Importer, node: onnx.NodeProto) -> None:
    """Clip(x, low, high): hardtanh(low, high); Clip(x, 0) with no upper bound: relu."""
    bounds = [float(imp.array(v, node, "bound").ravel()[0]) if v else None
              for v in (list(node.input[1:3]) + ["", ""])[:2]]
    x = imp.tensor(node.input[0], node)
    if bounds[0] == 0.0 and bounds[1] is None:
        imp.emit(node, "relu", [x], {}, node.output[0])
        return
    if None in bounds:
        raise node_error(node, "a one-sided Clip other than Clip(x, 0) has no nndsl activation")
    imp.emit(node, "hardtanh", [x], {"low": f32(bounds[0]), "high": f32(bounds[1])},
             node.output[0])


@rule("PRelu")
def prelu(imp: Importer, node: onnx.NodeProto) -> None:
    slope = imp.array(node.input[1], node, "slope")
    _emit_prelu(imp, node, node.input[0], slope, node.input[1], node.output[0])


def _emit_prelu(imp: Importer, node: onnx.NodeProto, x_value: str, slope: np.ndarray,
                slope_value: str, out: str) -> None:
    x = imp.tensor(x_value, node)
    rank = imp.builder.type_of(x).rank
    shared = slope.size == 1
    if not shared and slope.shape not in ((slope.size,) + (1,) * (rank - 2),
                                          (1, slope.size) + (1,) * (rank - 2)):
        raise node_error(node, f"a slope of shape {list(slope.shape)} is not one per channel "
                         "(axis 1)", hint="nndsl's prelu learns one slope per channel or one")
    source = source_name(imp, slope_value)
    imp.emit(node, "prelu", [x], {"shared": shared}, out,
             weights={"alpha": slope.reshape(-1)}, label=imp.label_for(source, "prelu"))


@rule("GreaterOrEqual")
def where_slope(imp: Importer, node: onnx.NodeProto) -> None:
    """x >= 0 ? x : a·x (how nndsl exports leaky_relu, and prelu with a learned a)."""
    x_value, zero = node.input
    users = imp.view.users(node.output[0])
    where = users[0] if len(users) == 1 and users[0].op_type == "Where" else None
    const = imp.view.const(zero)
    if where is None or const is None or np.any(const != 0) or where.input[1] != x_value:
        raise node_error(node, "only the pattern Where(x >= 0, x, a * x) imports "
                         "(leaky_relu, prelu)")
    mul = imp.view.producer.get(where.input[2])
    if mul is None or mul.op_type != "Mul" or x_value not in mul.input:
        raise node_error(where, "the negative side is not a * x")
    slope_value = mul.input[1] if mul.input[0] == x_value else mul.input[0]
    slope = imp.array(slope_value, mul, "slope")
    imp.take(mul, where)
    if slope.ndim == 0:
        x = imp.tensor(x_value, node)
        imp.emit(node, "leaky_relu", [x], {"slope": f32(float(slope))}, where.output[0])
        return
    _emit_prelu(imp, node, x_value, slope, slope_value, where.output[0])


@rule("BatchNormalization")
def batchnorm(imp: Importer, node: onnx.NodeProto) -> None:
    """Inference batch normalisation on axis 1 with running statistics."""
    if imp.attr(node, "training_mode", 0) or any(imp.view.users(o) for o in node.output[1:] if o):
        raise node_error(node, "batch normalisation in training mode does not import",
                         hint="export the model in eval() mode")
    gamma, beta, mean, var = (imp.array(v, node, role) for v, role in
                              zip(node.input[1:5], ("scale", "bias", "mean", "variance"),
                                  strict=True))
    x = imp.tensor(node.input[0], node)
    momentum = 1.0 - imp.attr(node, "momentum", 0.9)  # ONNX keeps 0.9 of the old statistics
    params = {"momentum": round(momentum, 6), "eps": f32(imp.attr(node, "epsilon", 1e-5))}
    imp.emit(node, "batchnorm", [x], params, node.output[0],
             weights={"gamma": gamma, "beta": beta, "running_mean": mean, "running_var": var},
             label=imp.label_for(source_name(imp, node.input[1]), "batchnorm"))


ARITHMETIC = {"Add": "add", "Sub": "sub", "Mul": "mul", "Div": "div", "Pow": "pow"}


@rule(*ARITHMETIC)
def arithmetic(imp: Importer, node: onnx.NodeProto) -> None:
    """a + b, a − b, a · b, a / b, a ** b of two tensors, or of a tensor and a scalar constant."""
    from nndsl.importer.decoder import gelu_pattern
    from nndsl.importer.patterns import batchnorm_decomposed

    if node.op_type == "Sub" and batchnorm_decomposed(imp, node):
        return
    if node.op_type in ("Mul", "Div") and gelu_pattern(imp, node):
        return
    operands = []
    for value in node.input:
        const = imp.view.const(value)
        if const is None:
            operands.append(imp.tensor(value, node))
            continue
        if not isinstance(const, np.ndarray) or const.size != 1 or const.dtype == object:
            raise node_error(node, f"a constant operand of shape {list(np.shape(const))} has "
                             "no nndsl form", hint="nndsl arithmetic takes tensors and numbers "
                             "(a constant tensor is a layer's weight)")
        operands.append(imp.emit(node, "scalar", [], {"value": float(const.ravel()[0])},
                                 f"{value}#scalar"))
    imp.emit(node, ARITHMETIC[node.op_type], operands, {}, node.output[0])


@rule("Neg")
def neg(imp: Importer, node: onnx.NodeProto) -> None:
    imp.emit(node, "neg", [imp.tensor(node.input[0], node)], {}, node.output[0])
