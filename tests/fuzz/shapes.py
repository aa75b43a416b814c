"""The type the checker will infer for a step, computed with the registry's own shape rules.

Why: the generator predicts validity with the very rules the checker applies, so a generated
model is valid by construction; a rule that raises anything but NndslError here is a checker
bug and surfaces at once (the checker would raise the same).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from nndsl.errors import NndslError
from nndsl.ir import TensorType
from nndsl.ops.registry import OPS, OpDef

from .values import Arg, args_ok

SCALAR = TensorType((), "f32")  # what a number becomes in tensor arithmetic


def infer(opdef: OpDef, inputs: Sequence[TensorType], params: dict[str, Any]) -> TensorType | None:
    """`opdef` applied to `inputs` with `params` (defaults filled in), or None on an error."""
    n, want = len(inputs), len(opdef.inputs)
    if (opdef.variadic and n < max(want, 1)) or (not opdef.variadic and n != want):
        return None
    full = {p.name: p.default for p in opdef.params if not p.required}
    full.update({k: v for k, v in params.items() if k in opdef.hyper})
    if any(p.required and p.name not in full for p in opdef.params):
        return None
    try:
        out = opdef.output_type(*inputs, **full)
        if opdef.weights is not None:
            opdef.weights(*inputs, **full)
    except NndslError:
        return None
    return out


def infer_args(opdef: OpDef, inputs: Sequence[TensorType], args: dict[str, Arg]
               ) -> TensorType | None:
    """`infer` for drawn arguments; a deliberate fault among them is an error."""
    if not args_ok(args):
        return None
    return infer(opdef, inputs, {k: a.value for k, a in args.items()})


def infer_steps(x: TensorType | None, steps: Sequence[tuple[str, dict[str, Any]]],
                others: Sequence[TensorType] = ()) -> TensorType | None:
    """A chain of (op, params) applied to x (the first step also takes `others`)."""
    for op, params in steps:
        if x is None:
            return None
        x = infer(OPS[op], [x, *others], params)
        others = ()
    return x
