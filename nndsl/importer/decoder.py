"""Import rules for ConvTranspose, Resize, LayerNormalization and gelu's Erf form.

nndsl exports conv_transpose2d, upsample and layer_norm as one ONNX node each, which torch
writes the same way (ConvTranspose2d, F.interpolate, LayerNorm). gelu has no ONNX op at opset 17:
nndsl writes ½x·(1 + erf(x·(1/√2))), torch writes (x·(1 + erf(x/√2)))·½; both read back as gelu.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import onnx

from nndsl.importer.context import Importer, rule
from nndsl.importer.elementwise import f32
from nndsl.importer.graph import node_error
from nndsl.importer.rules import source_name

RESIZE_MODES = {  # (mode, coordinate transformation, nearest mode) -> nndsl upsample mode
    ("nearest", "asymmetric", "floor"): "nearest",
    ("linear", "pytorch_half_pixel", None): "bilinear",
}


def _one(values: list[int]) -> Any:
    return values[0] if len(set(values)) == 1 else tuple(values)


@rule("ConvTranspose")
def conv_transpose(imp: Importer, node: onnx.NodeProto) -> None:
    """ConvTranspose 2-D, group 1: conv_transpose2d (border crops as `padding`)."""
    w = imp.array(node.input[1], node, "weight")
    a = {k: imp.attr(node, k) for k in ("group", "dilations", "auto_pad", "output_shape")}
    if w.ndim != 4 or (a["group"] or 1) != 1 or any(d != 1 for d in a["dilations"] or [1]) \
            or a["auto_pad"] not in (None, "NOTSET") or a["output_shape"]:
        raise node_error(node, "only a 2-D, ungrouped, undilated ConvTranspose with explicit "
                         "pads imports (conv_transpose2d)")
    kernel = list(w.shape[2:])
    stride = list(imp.attr(node, "strides", [1, 1]))
    flat = list(imp.attr(node, "pads", [0, 0, 0, 0]))
    crops = [(flat[0], flat[2]), (flat[1], flat[3])]
    same = [((k - s) // 2, k - s - (k - s) // 2) for k, s in zip(kernel, stride, strict=True)]
    if all(lo == hi == crops[0][0] for lo, hi in crops):
        padding: Any = crops[0][0] or "valid"
    elif crops == same:
        padding = "same"
    else:
        raise node_error(node, f"crops {crops} are neither one int nor `same`")
    bias = imp.array(node.input[2], node, "bias") if len(node.input) > 2 and node.input[2] \
        else None
    params = {"channels": w.shape[1], "kernel": _one(kernel), "stride": _one(stride),
              "padding": padding,
              "output_padding": _one(list(imp.attr(node, "output_padding", [0, 0]))),
              "use_bias": bias is not None}
    imp.emit(node, "conv_transpose2d", [imp.tensor(node.input[0], node)], params,
             node.output[0], weights={"weight": w, "bias": bias},
             label=imp.label_for(source_name(imp, node.input[1]), "conv_transpose2d"))


@rule("Resize")
def resize(imp: Importer, node: onnx.NodeProto) -> None:
    """Resize by constant integer scales [1, 1, s, t]: upsample (nearest or bilinear)."""
    mode = imp.attr(node, "mode", "nearest")
    key = (mode, imp.attr(node, "coordinate_transformation_mode", "half_pixel"),
           imp.attr(node, "nearest_mode", "round_prefer_floor") if mode == "nearest" else None)
    scales = imp.view.const(node.input[2]) if len(node.input) > 2 and node.input[2] else None
    if key not in RESIZE_MODES or not isinstance(scales, np.ndarray) or scales.size != 4 or \
            list(scales[:2]) != [1, 1] or any(s != int(s) or s < 1 for s in scales[2:]):
        raise node_error(node, "only a Resize by integer scales [1, 1, s, t] in torch's "
                         "nearest or bilinear (align_corners=False) form imports (upsample)")
    params = {"scale": _one([int(s) for s in scales[2:]]), "mode": RESIZE_MODES[key]}
    imp.emit(node, "upsample", [imp.tensor(node.input[0], node)], params, node.output[0])


@rule("LayerNormalization")
def layer_norm(imp: Importer, node: onnx.NodeProto) -> None:
    """LayerNormalization over the axes from `axis` on: layer_norm."""
    if any(imp.view.users(o) for o in node.output[1:] if o):
        raise node_error(node, "its mean or inverse deviation output is read")
    x = imp.tensor(node.input[0], node)
    rank = imp.builder.type_of(x).rank
    gamma = imp.array(node.input[1], node, "scale")
    beta = imp.array(node.input[2], node, "bias") if len(node.input) > 2 and node.input[2] \
        else None
    axis = imp.attr(node, "axis", -1) % rank - rank
    params = {"axis": axis, "eps": f32(imp.attr(node, "epsilon", 1e-5)),
              "use_bias": beta is not None}
    imp.emit(node, "layer_norm", [x], params, node.output[0],
             weights={"gamma": gamma, "beta": beta},
             label=imp.label_for(source_name(imp, node.input[1]), "layer_norm"))


def _scalar(imp: Importer, value: str) -> float | None:
    const = imp.view.const(value)
    if not isinstance(const, np.ndarray) or const.size != 1 or const.dtype == object:
        return None
    return float(const.ravel()[0])


def _other(node: onnx.NodeProto, value: str) -> str:
    return node.input[1] if node.input[0] == value else node.input[0]


def _near(a: float | None, b: float) -> bool:
    return a is not None and math.isclose(a, b, rel_tol=1e-6)


def gelu_pattern(imp: Importer, node: onnx.NodeProto) -> bool:
    """½x·(1 + erf(x/√2)) in nndsl's or torch's node order; True when it was imported."""
    if node.op_type == "Mul":  # nndsl: Mul(0.5, x) first
        x = next((v for v in node.input if not imp.view.is_const(v)), None)
        if x is None or not _near(_scalar(imp, _other(node, x)), 0.5):
            return False
        scale = next((u for u in imp.view.users(x) if u.op_type == "Mul" and u is not node
                      and _near(_scalar(imp, _other(u, x)), 1 / math.sqrt(2))), None)
        half = node
    else:  # torch: Div(x, √2) first
        x, scale, half = node.input[0], node, None
        if not _near(_scalar(imp, node.input[1]), math.sqrt(2)):
            return False
    if scale is None:
        return False
    erf = imp.view.only_user(scale.output[0])
    plus = imp.view.only_user(erf.output[0]) if erf is not None and erf.op_type == "Erf" \
        else None
    times = imp.view.only_user(plus.output[0]) if plus is not None and plus.op_type == "Add" \
        and _near(_scalar(imp, _other(plus, erf.output[0])), 1.0) else None
    if times is None or times.op_type != "Mul":
        return False
    nodes = [scale, erf, plus, times]
    if half is None:  # torch: (x · (1 + erf)) · 0.5
        last = imp.view.only_user(times.output[0])
        if _other(times, plus.output[0]) != x or last is None or last.op_type != "Mul" or \
                not _near(_scalar(imp, _other(last, times.output[0])), 0.5):
            return False
        nodes.append(last)
    elif _other(times, plus.output[0]) != half.output[0] or \
            imp.view.only_user(half.output[0]) is not times:
        return False
    imp.take(*nodes)
    imp.emit(node, "gelu", [imp.tensor(x, node)], {}, nodes[-1].output[0])
    return True
