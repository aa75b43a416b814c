"""Argument values drawn from an op's real signature: its annotations and parameter names.

Why: the checker reads each op's signature, so drawing from the same signatures keeps the
generator in step with the registry: a new op or parameter is fuzzed without touching this
file. Parameter names pick small, plausible values (`units` 1..6, `rate` in [0, 1)) so that most
draws check; a faulty draw swaps in a value of the wrong type or range, drops a required
argument or adds an unknown one.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar, get_args, get_origin

from hypothesis import strategies as st

import nndsl.ops  # noqa: F401  (registers every op family)
from nndsl.ops.registry import OpDef, Param, _meta, all_ops, table

T = TypeVar("T")

INT_RANGES: dict[str, tuple[int, int]] = {
    "units": (1, 6), "channels": (1, 4), "kernel": (1, 3), "size": (1, 2), "stride": (1, 2),
    "dilation": (1, 2), "k": (1, 3), "vocab": (2, 9), "dim": (1, 4), "steps": (1, 3),
    "every": (1, 5), "epochs": (1, 5), "total": (1, 10), "population": (2, 6), "elite": (1, 2),
    "connections": (1, 3), "n": (4, 16), "seed": (0, 3), "padding": (0, 1), "batch": (1, 8),
}
FLOATS: dict[str, tuple[float, ...]] = {
    "rate": (0.0, 0.1, 0.5), "keep": (0.5, 0.9, 1.0), "std": (0.1, 1.0, 0.0),
    "momentum": (0.0, 0.5, 0.9), "eps": (1e-5, 1e-8), "lr": (0.1, 0.01, 1e-3),
    "gamma": (0.5, 0.9), "decay": (0.9, 1e-3), "low": (-1.0, -0.5), "high": (0.5, 1.0),
    "lower": (0.1, 0.125), "upper": (0.3, 0.5), "split": (0.0, 0.2, 0.5), "value": (0.0, 0.01),
    "mean": (0.0, 0.5), "beta1": (0.9, 0.5), "beta2": (0.999,), "strength": (1e-4, 0.5),
}
NUMBERS = (0.5, 1.0, 2.0, 0.1, 3)
STRINGS: dict[str, tuple[str, ...]] = {
    "monitor": ("val_loss", "loss"), "path": ("data.csv", "d.npz"), "delimiter": (",", ";"),
}
EDGE_INTS = ("0", "-1", "1000000", "7")  # the right type, a doubtful value
EDGE_FLOATS = ("0.0", "-1.0", "1.0", "1e308", "1e999", "-1e999", "1e-320", "2.5")
BAD_VALUES = ("0", "-1", "1000000", "99999999999", "0.5", "-2.5", "1e308", "true", '"text"',
              "[1, 2]", "[]", "relu", "normal(0, 1)", "x", "-0.0", "[[1], 2]", "adam(lr=1)")
PARAM_NAMES = sorted({p.name for o in all_ops() for p in o.params} | {"unit", "rat", "inits"})


class Drawer:
    """The few kinds of hypothesis draws the generators make."""

    def __init__(self, draw: Callable[[st.SearchStrategy[Any]], Any]) -> None:
        self.draw = draw

    def chance(self, percent: int) -> bool:
        return self.draw(st.integers(0, 99)) < percent

    def pick(self, choices: Sequence[T]) -> T:
        return self.draw(st.sampled_from(choices))

    def int(self, low: int, high: int) -> int:
        return self.draw(st.integers(low, high))


@dataclass(frozen=True)
class Arg:
    """One drawn argument: how it is written, its value as the checker binds it, and whether it
    was drawn to fit (False: a deliberate fault)."""

    text: str
    value: Any
    ok: bool = True


@dataclass
class Context:
    """What an argument may refer to where it is written."""

    rank: int | None = None  # rank of the tensor the op applies to, for `axis`
    labels: Sequence[str] = ()  # layer labels in scope, for `tied=`, `freeze=`
    names: Sequence[str] = ()  # model input names, for npz(NAME="ARRAY")
    extra: dict[str, Arg] = field(default_factory=dict)  # arguments fixed by the caller


def number_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value)


def of_kind(kind: str) -> list[OpDef]:
    """Every op of `kind`, in a stable order."""
    return sorted((o for o in table(kind).values() if o.kind == kind), key=lambda o: o.name)


def draw_value(d: Drawer, ann: Any, name: str, ctx: Context) -> Arg:
    """A value for a parameter annotated `ann` (see the module docstring)."""
    meta = _meta(ann)
    if meta == "label":
        label = d.pick(ctx.labels) if ctx.labels else "nolabel"
        return Arg(label, label, bool(ctx.labels))
    if meta == "model":  # generated specs name their models m1, m2
        model = d.pick(("m1", "m2", "nomodel"))
        return Arg(model, model, model != "nomodel")
    if meta == "weight":
        value = d.pick(NUMBERS)
        return Arg(number_text(value), value)
    if meta is not None and get_args(ann)[0] is str:  # the name of an op: activation=tanh
        opdef = d.pick([o for o in of_kind(meta) if not any(p.required for p in o.params)])
        return Arg(opdef.name, opdef.name)
    if meta is not None:
        text = config_call(d, meta, ctx)
        return Arg(text, text)
    origin = get_origin(ann)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in get_args(ann) if a is not type(None)]
        return draw_value(d, d.pick(options), name, ctx)
    if origin is Literal:
        value = d.pick(get_args(ann))
        text = value if isinstance(value, str) else number_text(value)
        return Arg(f'"{text}"' if isinstance(value, str) and d.chance(30) else text, value)
    if origin is tuple:
        items = [draw_value(d, get_args(ann)[0], name, ctx) for _ in range(d.int(1, 2))]
        return Arg("[" + ", ".join(i.text for i in items) + "]", tuple(i.value for i in items),
                   all(i.ok for i in items))
    return _scalar(d, ann, name, ctx)


def _scalar(d: Drawer, ann: Any, name: str, ctx: Context) -> Arg:
    if ann is bool:
        value = d.chance(50)
    elif ann is int:
        low, high = INT_RANGES.get(name, (1, 4))
        if name == "axis" and ctx.rank:
            low, high = -ctx.rank, ctx.rank - 1
        value = d.int(low, high)
    elif ann is float:
        value = float(d.pick(FLOATS.get(name, NUMBERS)))
    elif ann is str:
        value = d.pick(STRINGS.get(name, ("val_loss",)))
        return Arg(f'"{value}"', value)
    else:
        value = d.pick(NUMBERS)
    return Arg(number_text(value), value)


def draw_args(d: Drawer, opdef: OpDef, ctx: Context, faulty: bool = False,
              optional: int = 30) -> dict[str, Arg]:
    """Arguments for `opdef`: every required parameter, some optional ones, the caller's
    `ctx.extra`, and in a faulty draw sometimes one deliberate mistake."""
    args: dict[str, Arg] = {}
    for p in opdef.params:
        if p.name in ctx.extra:
            args[p.name] = ctx.extra[p.name]
        elif _meta(p.annotation) != "names" and (p.required or d.chance(optional)):
            args[p.name] = draw_value(d, p.annotation, p.name, ctx)
    if faulty and d.chance(35):
        _fault(d, opdef.params, args)
    return args


def _fault(d: Drawer, params: Sequence[Param], args: dict[str, Arg]) -> None:
    kind = d.pick(("value", "edge", "edge", "drop", "unknown"))
    numeric = [p for p in params if p.annotation in (int, float)]
    if kind == "edge" and numeric:
        p = d.pick(numeric)
        args[p.name] = Arg(d.pick(EDGE_INTS if p.annotation is int else EDGE_FLOATS), None, False)
    elif kind == "value" and args:
        key = d.pick(sorted(args))
        args[key] = Arg(d.pick(BAD_VALUES), None, ok=False)
    elif kind == "drop" and any(p.required for p in params):
        del args[d.pick([p.name for p in params if p.required])]
        args["__dropped__"] = Arg("", None, ok=False)
    else:
        args[d.pick(PARAM_NAMES)] = Arg(d.pick(("1", "0.5", "true", "relu")), None, ok=False)


def args_ok(args: dict[str, Arg]) -> bool:
    return all(a.ok for a in args.values())


def call_text(d: Drawer, name: str, args: dict[str, Arg], positional: Sequence[str] = (),
              leading: Sequence[str] = (), bare: bool = True) -> str:
    """`name(lead, a, key=value)`: `leading` texts first (tensor inputs), then the arguments
    the signature allows by position, then keywords; `name` alone when there is nothing."""
    shown = {k: a for k, a in args.items() if a.text}
    prefix = 0
    while prefix < len(positional) and positional[prefix] in shown:
        prefix += 1
    prefix = d.int(0, prefix) if prefix else 0
    texts = [*leading, *(shown[k].text for k in positional[:prefix])]
    texts += [f"{k}={a.text}" for k, a in shown.items() if k not in positional[:prefix]]
    if not texts and bare and d.chance(60):
        return name
    return f"{name}({', '.join(texts)})"


def config_call(d: Drawer, kind: str, ctx: Context, faulty: bool = False) -> str:
    """A configured call of another kind: `normal(0, 1)`, `adam(lr=0.01)`, `npz("d.npz", x="X")`."""
    opdef = d.pick(of_kind(kind))
    inner = Context(ctx.rank, ctx.labels, ctx.names)
    args = draw_args(d, opdef, inner, faulty)
    if any(_meta(p.annotation) == "names" for p in opdef.params):
        for name in ctx.names[:2]:
            args[name] = Arg(f'"{name.upper()}"', name.upper())
    return call_text(d, opdef.name, args, opdef.positional_names)
