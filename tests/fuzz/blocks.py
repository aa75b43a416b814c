"""Generated `block` definitions, and how each changes the type of the value it is applied to.

Why: blocks are expanded inline by the checker, so a generated model that uses them is valid
exactly when the block's steps are valid on the value at the call; each template keeps its
steps as (op, params) pairs so the generator can run the registry's shape rules over them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from nndsl.ir import TensorType

from .shapes import infer_steps
from .values import Arg, Drawer, of_kind

Steps = Callable[[dict[str, Any]], list[tuple[str, dict[str, Any]]]]


@dataclass(frozen=True)
class Block:
    """A block the generated spec defines (or imports): `text` is None for imported ones."""

    name: str
    params: tuple[tuple[str, Any], ...]  # (name, default); default None: required
    steps: Steps
    text: str | None = None
    residual: bool = False  # the block's result is add(in, steps(in))

    def out_type(self, x: TensorType, values: dict[str, Any]) -> TensorType | None:
        """The type the block gives `x` with these parameter values (None: an error)."""
        full = {n: d for n, d in self.params if d is not None} | values
        if any(n not in full for n, _ in self.params):
            return None
        out = infer_steps(x, self.steps(full))
        if self.residual and out is not None:
            out = infer_steps(x, [("add", {})], [out])
        return out


def activation(d: Drawer) -> str:
    """A parameter-free activation that keeps the shape."""
    plain = [o.name for o in of_kind("activation") if o.weights is None
             and o.infer is None and not o.params and o.name != "one_hot"]
    return d.pick(plain)


def _mlp(d: Drawer, name: str) -> Block:
    act = activation(d)
    text = f"block {name}(units, rate=0.1) {{\n  dense(units) -> {act} -> dropout(rate=rate)\n}}"
    return Block(name, (("units", None), ("rate", 0.1)),
                 lambda v: [("dense", {"units": v["units"]}), (act, {}),
                            ("dropout", {"rate": v["rate"]})], text)


def _residual(d: Drawer, name: str) -> Block:
    act = activation(d)
    text = (f"block {name}(units) {{\n  h = in -> dense(units) -> {act} -> dense(units)\n"
            f"  out = add(in, h)\n}}")
    return Block(name, (("units", None),),
                 lambda v: [("dense", {"units": v["units"]}), (act, {}),
                            ("dense", {"units": v["units"]})], text, residual=True)


def _acts(d: Drawer, name: str) -> Block:
    first, second = activation(d), activation(d)
    text = f"block {name}() {{\n  {first} -> {second}\n}}"
    return Block(name, (), lambda v: [(first, {}), (second, {})], text)


def _conv(d: Drawer, name: str) -> Block:
    act = activation(d)
    text = (f"block {name}(channels, k=3) {{\n"
            f"  conv2d(channels, kernel=k, padding=same) -> {act} -> maxpool2d(2)\n}}")
    return Block(name, (("channels", None), ("k", 3)),
                 lambda v: [("conv2d", {"channels": v["channels"], "kernel": v["k"],
                                        "padding": "same"}), (act, {}),
                            ("maxpool2d", {"size": 2})], text)


def _nested(d: Drawer, name: str, inner: Block) -> Block:
    act = activation(d)
    text = f"block {name}(units) {{\n  {inner.name}(units) -> {act}\n}}"

    def steps(v: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        full = {n: dv for n, dv in inner.params if dv is not None} | {"units": v["units"]}
        return [*inner.steps(full), (act, {})]

    return Block(name, (("units", None),), steps, text)


TEMPLATES = (_mlp, _residual, _acts, _conv)

LIBRARY = (  # specs/lib/blocks.nn, for generated specs that import it
    Block("residual", (("units", None),),
          lambda v: [("dense", {"units": v["units"]}), ("relu", {}),
                     ("dense", {"units": v["units"]})], residual=True),
    Block("norm_relu", (("units", None), ("rate", 0.1)),
          lambda v: [("dense", {"units": v["units"]}), ("batchnorm", {}), ("relu", {}),
                     ("dropout", {"rate": v["rate"]})]),
)


def draw_blocks(d: Drawer, count: int) -> list[Block]:
    """`count` block definitions, the later ones sometimes built on an earlier one."""
    blocks: list[Block] = []
    for i in range(count):
        name = f"blk{i + 1}"
        takes_units = [b for b in blocks
                       if b.params and b.params[0][0] == "units" and not b.residual]
        if takes_units and d.chance(30):
            blocks.append(_nested(d, name, d.pick(takes_units)))
        else:
            blocks.append(d.pick(TEMPLATES)(d, name))
    return blocks


def block_args(d: Drawer, block: Block, x: TensorType) -> dict[str, Arg]:
    """Values for a use of `block` on `x`: a residual block needs units = x's features."""
    args: dict[str, Arg] = {}
    for pname, default in block.params:
        if default is not None and d.chance(60):
            continue
        if pname == "units" and block.residual and x.rank and isinstance(x.shape[-1], int):
            value: Any = x.shape[-1]
        elif pname == "rate":
            value = d.pick((0.0, 0.2))
        else:
            value = d.int(1, 3)
        args[pname] = Arg(repr(value), value)
    return args

