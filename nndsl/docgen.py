"""Generates docs/ops.md from the registry, so the op catalog cannot drift from the code.

Run `python -m nndsl.docgen` (or `make docs`); a test fails when the file is stale.
"""

from __future__ import annotations

import inspect
from pathlib import Path

from nndsl import ops
from nndsl.ir import format_value
from nndsl.ops.registry import KINDS, OpDef, describe

HEADER = """# nndsl op catalog

Generated from the op registry by `python -m nndsl.docgen`; do not edit by hand.
Each entry shows the call as written in a spec (leading parameters may be given by position,
in the order shown), the tensor inputs, the weights the op owns, and its one-line formula.
"""

TITLES = {
    "activation": "Activations", "layer": "Layers", "loss": "Losses", "metric": "Metrics",
    "initializer": "Initializers", "regularizer": "Regularizers", "constraint": "Constraints",
    "optimizer": "Optimizers", "schedule": "Learning-rate schedules", "clip": "Gradient clipping",
    "noise": "Gradient noise", "early_stop": "Early stopping", "data": "Data sources",
    "trainer": "Trainers",
}
# created by the front end (numbers, `-x`, `a / b`, `a ** b`), not written by users
INTERNAL = {"scalar", "neg", "div", "pow", "literal"}


def signature(opdef: OpDef) -> str:
    parts = []
    for p in opdef.params:
        if describe(p.annotation) == 'NAME="value" pairs':
            parts.append('NAME="value", ...')
        elif p.required:
            parts.append(p.name)
        else:
            parts.append(f"{p.name}={format_value(p.default)}")
    return f"{opdef.name}({', '.join(parts)})" if parts else opdef.name


def entry(opdef: OpDef) -> str:
    lines = [f"### `{signature(opdef)}`", ""]
    doc = inspect.cleandoc(opdef.compute.__doc__ or "").strip()
    if doc:
        lines += [doc.split("\n\n")[0].replace("\n", " "), ""]
    facts = []
    if opdef.kind in ("activation", "layer", "loss", "metric") and opdef.inputs:
        inputs = ", ".join(f"*{i}" if opdef.variadic and i == opdef.inputs[-1] else i
                           for i in opdef.inputs)
        facts.append(f"inputs: {inputs}")
    if opdef.weight_params:
        facts.append(f"weights: {', '.join(opdef.weight_params)}")
    if opdef.training_only:
        facts.append("training only (vanishes at inference and from ONNX)")
    for p in opdef.params:
        facts.append(f"`{p.name}`: {describe(p.annotation)}")
    lines += [f"- {f}" for f in facts]
    return "\n".join(lines).rstrip() + "\n"


def render() -> str:
    out = [HEADER]
    for kind in KINDS:
        defs = [d for d in ops.all_ops() if d.kind == kind and d.name not in INTERNAL]
        if not defs:
            continue
        out.append(f"## {TITLES[kind]}\n")
        out += [entry(d) for d in sorted(defs, key=lambda d: d.name)]
    return "\n".join(out)


def main() -> None:
    path = Path(__file__).resolve().parent.parent / "docs" / "ops.md"
    path.write_text(render(), encoding="utf-8")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
