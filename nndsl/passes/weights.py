"""Weight declarations for a layer: names, initializers (explicit, defaults, literal values)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from nndsl.errors import NndslError, Span
from nndsl.ir import Call, WeightDecl, format_shape
from nndsl.ops.registry import OpDef, WeightSpec
from nndsl.ops.weight_files import ARRAY_PARAMS, for_weight, whole_layer

ROLE_INIT_KEY = {"weight": "init", "bias": "bias_init"}
ROLE_FALLBACK = {"weight": Call("glorot_uniform"), "bias": Call("zeros")}


def literal_init(value: Any, shape: tuple[int, ...], where: str, span: Span) -> Call:
    """A literal weight value (`weight=[[...]]`, `bias=0.35`) checked against the weight's shape."""
    try:
        items = np.asarray(value, dtype=object).ravel()  # `true` is not 1.0 in disguise
        if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in items):
            raise TypeError
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise NndslError(f"{where} must be a number or a nested list of numbers", span,
                         expected=f"shape {format_shape(shape)}") from None
    if array.ndim and array.shape != tuple(shape):
        raise NndslError(f"{where} has the wrong shape", span,
                         expected=format_shape(shape), received=format_shape(array.shape),
                         hint="dense weights are stored [out, in]: one row per unit")
    return Call("literal", (("value", value),), span)


def from_file(default: Call | None, name: str) -> Call | None:
    """`defaults { weights = from_npz("model.npz") }` (or `from_run("runs/ae")`): this weight's
    array in that file (the array named after the weight, `<label>.<param>`), positioned at the
    defaults line."""
    if default is None:
        return None
    key = ARRAY_PARAMS.get(default.name, "array")
    return Call(default.name, (*(kv for kv in default.kwargs if kv[0] != key),
                               (key, name)), default.span)


def make_weights(opdef: OpDef, specs: Mapping[str, WeightSpec], label: str,
                 options: Mapping[str, Any], defaults: Mapping[str, Call],
                 span: Span, dtype: str = "f32") -> tuple[list[WeightDecl], dict[str, str]]:
    """Declare `<label>.<param>` for every weight of a layer; return decls and param -> name.

    Weights take the model's float precision (`dtype`): f64 when an input is declared f64.
    """
    decls: list[WeightDecl] = []
    whole = options.get("init") if whole_layer(options.get("init")) else None
    for param, spec in specs.items():
        name = f"{label}.{param}"
        if param in options:
            init = literal_init(options[param], spec.shape, f"{opdef.name} {param}=", span)
        else:
            key = ROLE_INIT_KEY.get(spec.role)
            init = options.get(key) if key else None
            if whole is not None and (key == "init" or init is None):  # from_run(RUN, LABEL)
                init = for_weight(whole, param)  # starts every weight: LABEL.param
            init = init or from_file(defaults.get("weights"), name)
            init = init or spec.init or (defaults.get(key) if key else None)
            init = init or ROLE_FALLBACK.get(spec.role) or Call("zeros")
        penalised = spec.role == "weight"
        decls.append(WeightDecl(
            name, tuple(spec.shape), init, dtype=dtype, role=spec.role,
            trainable=spec.trainable and spec.role != "buffer" and options.get("trainable", True),
            fan_in=spec.fan_in, fan_out=spec.fan_out,
            regularize=(options.get("regularize") or defaults.get("regularize")) if penalised
            else None,
            constraint=(options.get("constraint") or defaults.get("constraint")) if penalised
            else None,
            span=span))
    unknown = set(opdef.weight_params) - set(specs)
    for param in sorted(unknown & set(options)):
        raise NndslError(f"{opdef.name} has no '{param}' weight with these arguments", span)
    return decls, {param: f"{label}.{param}" for param in specs}
