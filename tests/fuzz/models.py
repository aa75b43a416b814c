"""Whole `model` definitions drawn from the language: inputs, chains of registry ops, labels,
shared and tied layers, arithmetic, multi-input calls, repeat, blocks, defaults and outputs.

Why: a model whose every step the registry's shape rules accept should check, so most drawn
models are valid and the backends run on them; a `faulty` model also gets deliberate mistakes
(wrong arity, types, keywords, shapes, names, statements) that must come back as positioned
errors. Types are tracked per bound name; None marks a value whose definition is a mistake.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from nndsl.ir import TensorType
from nndsl.ops.registry import OPS, OpDef

from .blocks import Block, activation, block_args
from .shapes import SCALAR, infer, infer_args
from .values import Arg, Context, Drawer, call_text, config_call, draw_args

CHAIN_OPS = sorted(n for n, o in OPS.items()
                   if o.kind in ("activation", "layer") and o.inputs == ("x",))
MULTI_OPS = sorted(n for n, o in OPS.items()
                   if o.kind in ("activation", "layer") and (o.variadic or len(o.inputs) > 1))
LOSSES = sorted(n for n, o in OPS.items() if o.kind == "loss")
ARITH = {"+": "add", "-": "sub", "*": "mul", "/": "div", "**": "pow"}
OPTIONS = {"init": "initializer", "bias_init": "initializer", "regularize": "regularizer",
           "constraint": "constraint"}
STATEMENTS = ("chain",) * 6 + ("call", "arith", "arith", "multi", "multi", "repeat", "block",
                               "block", "alias")
FAULTY_STATEMENTS = ("unknown", "rebind", "no_equals", "unused", "wrong_kind", "constant")
INPUT_NAMES = ("x", "img", "seq", "a", "b", "tokens", "z")


@dataclass
class Layer:
    """A labelled layer: what reusing its label must repeat (sharing needs the same sizes)."""

    text: str
    op: str
    x: TensorType
    out: TensorType
    units: int | None = None  # dense: its units (for tied=)


@dataclass
class ModelGen:
    """Draws one model's statements; `text()` writes it."""

    d: Drawer
    name: str
    faulty: bool
    blocks: list[Block]
    values: dict[str, TensorType | None] = field(default_factory=dict)
    inputs: list[str] = field(default_factory=list)
    labels: dict[str, Layer] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)

    # ------------------------------------------------------------ inputs and names
    def input_type(self, dtype: str) -> tuple[str, TensorType | None]:
        """A declared input type: its text, and None when it was drawn to be wrong."""
        d = self.d
        kind = d.pick(("flat", "flat", "flat", "seq", "seq", "image", "signal", "index", "fixed"))
        shape: tuple[int | str, ...] = {
            "flat": ("batch", d.int(1, 6)),
            "seq": ("batch", "time", d.int(1, 4)),
            "image": ("batch", d.int(1, 2), d.int(3, 7), d.int(3, 7)),
            "signal": ("batch", d.int(1, 3), d.int(3, 8)),
            "index": ("batch", "time") if d.chance(70) else ("batch",),
            "fixed": (d.int(1, 4), d.int(1, 5)) if d.chance(60) else ("n", d.int(1, 5)),
        }[kind]
        dtype = "i64" if kind == "index" else dtype
        wrong = self.faulty and d.chance(15)
        if wrong and d.chance(60):
            shape = d.pick(((), ("batch", 0), ("batch", -1)))
        elif wrong:
            dtype = d.pick(("f16", "int", "i32"))
        prefix = "" if dtype == "f32" and d.chance(50) else dtype
        text = f"{prefix}[{', '.join(str(s) for s in shape)}]"
        return text, None if wrong else TensorType(shape, dtype)

    def declare_inputs(self) -> None:
        dtype = "f64" if self.d.chance(15) else "f32"
        items = []
        for _ in range(self.d.int(1, 3)):
            name = self.d.pick(INPUT_NAMES)
            if name in self.values:
                continue
            text, self.values[name] = self.input_type(dtype)
            self.inputs.append(name)
            items.append(f"{name}: {text}")
        if self.d.chance(70):
            self.lines.append("input " + ", ".join(items))
        else:
            self.lines += [f"input {item}" for item in items]

    def fresh(self) -> str:
        return f"h{len(self.values) + 1}"

    def typed(self) -> list[str]:
        return [n for n, t in self.values.items() if t is not None]

    def source(self) -> str | None:
        """A value to build on, most often one of the latest."""
        names = self.typed()
        if not names:
            return None
        return self.d.pick(names[-3:] if self.d.chance(70) else names)

    # ------------------------------------------------------------ chains
    def layer_args(self, opdef: OpDef, x: TensorType) -> dict[str, Arg]:
        extra = {}
        if opdef.name == "reshape":
            extra["shape"] = self.reshape_target(x)
        args = draw_args(self.d, opdef, Context(rank=x.rank, extra=extra), self.faulty)
        if args.get("tied") is not None and args["tied"].ok:
            del args["tied"]  # ties are drawn on purpose in `tied_link`
        if opdef.weights is not None and self.d.chance(30):
            key = self.d.pick((*OPTIONS, "trainable"))
            args[key] = (Arg(self.d.pick(("true", "false")), None) if key == "trainable" else
                         Arg(config_call(self.d, OPTIONS[key], Context(), self.faulty), None))
        if "bias" in opdef.weight_params and self.d.chance(5) and args.get(
                "use_bias", Arg("true", True)).value is not False:
            args["bias"] = Arg("0.5", None)
        return args

    def reshape_target(self, x: TensorType) -> Arg:
        dims = x.shape[1:]
        if not all(isinstance(s, int) for s in dims):
            return Arg("[-1]", (-1,))
        size = 1
        for s in dims:
            size *= int(s)
        first = self.d.pick([k for k in range(1, size + 1) if size % k == 0])
        shape = self.d.pick(((size,), (first, size // first), (first, -1), (1, first, -1)))
        return Arg("[" + ", ".join(map(str, shape)) + "]", shape)

    def link(self, x: TensorType, labels: bool = True) -> tuple[str, TensorType | None]:
        """One `[label:] op(args)` applied to a value of type x, and the type it gives."""
        d = self.d
        if labels and self.labels and d.chance(15):
            found = self.shared_link(x) if d.chance(50) else self.tied_link(x)
            if found is not None:
                return found
        text, out = "", None
        for _ in range(6):
            wrong = self.faulty and d.chance(5)  # two inputs, or a loss, in a chain
            if x.dtype == "i64" and not wrong and d.chance(70):
                opdef = OPS["embedding"]  # indices are looked up first
            else:
                opdef = OPS[d.pick(MULTI_OPS + LOSSES if wrong else CHAIN_OPS)]
            args = self.layer_args(opdef, x)
            out = infer_args(opdef, [x], args)
            text = call_text(d, opdef.name, args, opdef.positional_names)
            if out is not None or (self.faulty and d.chance(20)):
                break
        if out is not None and labels and d.chance(20) and opdef.weights is not None:
            label = f"l{len(self.labels) + 1}"
            units = args["units"].value if opdef.name == "dense" else None
            self.labels[label] = Layer(text, opdef.name, x, out, units)
            text = f"{label}: {text}"
        return text, out

    def shared_link(self, x: TensorType) -> tuple[str, TensorType] | None:
        """Reuse a label on a value of the type it was first applied to: shared weights."""
        same = [k for k, layer in self.labels.items() if layer.x == x]
        if not same:
            return None
        label = self.d.pick(same)
        return f"{label}: {self.labels[label].text}", self.labels[label].out

    def tied_link(self, x: TensorType) -> tuple[str, TensorType | None] | None:
        """`dense(n_in, tied=enc)` on a value with enc's units: the transposed weight."""
        fits = [k for k, layer in self.labels.items() if layer.op == "dense" and x.rank in (2, 3)
                and layer.units == x.shape[-1] and isinstance(layer.x.shape[-1], int)
                and "tied" not in layer.text]
        if not fits:
            return None
        label = self.d.pick(fits)
        units = self.labels[label].x.shape[-1]
        args = {"units": Arg(str(units), units), "tied": Arg(label, label)}
        return call_text(self.d, "dense", args, ("units",)), infer_args(OPS["dense"], [x], args)

    def chain(self, start: str, x: TensorType, n: int) -> tuple[str, TensorType | None]:
        parts: list[str] = [start]
        out: TensorType | None = x
        for _ in range(n):
            if out is None:
                break
            text, out = self.link(out)
            parts.append(text)
        return " -> ".join(parts), out

    # ------------------------------------------------------------ statements
    def statement(self) -> None:
        d = self.d
        if self.faulty and d.chance(10):
            self.fault_statement()
            return
        src = self.source()
        if src is None:
            return
        x = self.values[src]
        assert x is not None
        for _ in range(3):  # a valid model keeps only statements that check
            labels = dict(self.labels)
            expr, out = getattr(self, f"expr_{d.pick(STATEMENTS)}")(src, x)
            if out is not None or self.faulty:
                break
            self.labels = labels
        else:
            return
        name = self.fresh()
        self.values[name] = out
        self.lines.append(f"{name} = {expr}")

    def expr_chain(self, src: str, x: TensorType) -> tuple[str, TensorType | None]:
        return self.chain(src, x, self.d.int(1, 4))

    def expr_call(self, src: str, x: TensorType) -> tuple[str, TensorType | None]:
        """`op(src, args)`: the tensor as the call's first argument."""
        opdef = OPS[self.d.pick(CHAIN_OPS)]
        args = self.layer_args(opdef, x)
        text = call_text(self.d, opdef.name, args, opdef.positional_names, leading=[src])
        return text, infer_args(opdef, [x], args)

    def expr_alias(self, src: str, x: TensorType) -> tuple[str, TensorType | None]:
        return src, x

    def partner(self, x: TensorType) -> str:
        """Another value, most often one of the same type."""
        same = [n for n in self.typed() if self.values[n] == x]
        return self.d.pick(same if same and self.d.chance(80) else self.typed())

    def expr_arith(self, src: str, x: TensorType) -> tuple[str, TensorType | None]:
        d = self.d
        op = d.pick(tuple(ARITH))
        if d.chance(40):  # with a number
            number = d.pick(("0.5", "2", "1e-3", "3"))
            text = f"{number} {op} {src}" if d.chance(50) else f"{src} {op} {number}"
            out = infer(OPS[ARITH[op]], [x, SCALAR], {})
        else:
            other = self.partner(x)
            text, out = f"{src} {op} {other}", infer(OPS[ARITH[op]], [x, self.values[other]], {})
        if d.chance(20):
            text, out = f"-({text})", out
        if d.chance(25) and out is not None:  # arithmetic starting a chain: `a + b -> relu`
            text, out = self.chain(text, out, 1)
        return text, out

    def expr_multi(self, src: str, x: TensorType) -> tuple[str, TensorType | None]:
        d = self.d
        opdef = OPS[d.pick(LOSSES if d.chance(10) else MULTI_OPS)]  # a loss makes a scalar
        n = d.int(2, 3) if opdef.variadic else len(opdef.inputs)
        if self.faulty and d.chance(15):  # the wrong number of inputs
            n = d.pick((1, n + 1))
        names = [src] + [self.partner(x) for _ in range(n - 1)]
        types = [self.values[k] for k in names]
        if d.chance(15):  # a chain as an argument: add(x -> relu, y)
            act = activation(d)
            names[-1], types[-1] = f"{names[-1]} -> {act}", infer(OPS[act], [types[-1]], {})
        args = draw_args(d, opdef, Context(rank=x.rank), self.faulty)
        out = infer_args(opdef, types, args) if None not in types else None
        if out is None and not self.faulty:  # the same value n times fits every multi-input op
            names, out = [src] * n, infer_args(opdef, [x] * n, args)
        if d.chance(30):
            call = call_text(d, opdef.name, args, opdef.positional_names, leading=names[1:],
                             bare=False)
            return f"{names[0]} -> {call}", out
        return call_text(d, opdef.name, args, opdef.positional_names, leading=names), out

    def expr_repeat(self, src: str, x: TensorType) -> tuple[str, TensorType | None]:
        """`src -> repeat(n) { ... }` over links that keep the type, so every pass fits."""
        d = self.d
        links, out = [], x
        for _ in range(d.int(1, 2)):
            text, out = self.link(out, labels=False)
            if d.chance(10):  # labels inside repeat are per repetition; never reused
                text = f"r{len(self.values)}: {text}"
            links.append(text)
            if out is None:
                break
        count = d.pick(("1", "2", "3")) if not (self.faulty and d.chance(20)) else d.pick(
            ("0", "-1", "10001", "2.5", "x", "true"))
        keeps = out == x and count in ("1", "2", "3")
        return f"{src} -> repeat({count}) {{ {' -> '.join(links)} }}", x if keeps else (
            out if count == "1" else None)

    def expr_block(self, src: str, x: TensorType) -> tuple[str, TensorType | None]:
        if not self.blocks:
            return self.expr_chain(src, x)
        d = self.d
        block = d.pick(self.blocks)
        args = block_args(d, block, x)
        out = block.out_type(x, {k: a.value for k, a in args.items()})
        names = [p for p, _ in block.params]
        label = f"b{len(self.values)}: " if d.chance(20) else ""
        if not label and d.chance(25):
            return call_text(d, block.name, args, names, leading=[src], bare=False), out
        return f"{src} -> {label}{call_text(d, block.name, args, names)}", out

    def fault_statement(self) -> None:
        d, name = self.d, self.fresh()
        src = self.source() or "x"
        kind = d.pick(FAULTY_STATEMENTS)
        line = {
            "unknown": f"{name} = nosuch -> {activation(d)}",
            "rebind": f"{src} = {src} -> {activation(d)}",
            "no_equals": f"{name} {src} -> {activation(d)}",
            "unused": f"{src} -> {activation(d)}",
            "wrong_kind": f"{name} = {src} -> {config_call(d, 'optimizer', Context())}",
            "constant": f"{name} = 2 * 3",
        }[kind]
        self.values.setdefault(name, None)
        self.lines.append(line)

    def defaults(self) -> None:
        d = self.d
        keys = [k for k in OPTIONS if d.chance(40)] or ["init"]
        items = [f"{k} = {config_call(d, OPTIONS[k], Context(), self.faulty)}" for k in keys]
        if self.faulty and d.chance(20):
            items.append(d.pick(("inits = he_normal", "init = l2(0.1)", "bias_init = relu")))
        self.lines.append("defaults { " + "; ".join(items) + " }")

    def choose_outputs(self) -> None:
        d = self.d
        made = [n for n in self.typed() if n not in self.inputs] or self.typed()
        outputs = [made[-1]] if made else []
        for name in [*made[:-1], *self.inputs]:
            if d.chance(10) and self.values.get(name) is not None:
                outputs.append(name)
        if self.faulty and d.chance(15):
            outputs.append(d.pick(("nosuch", *outputs[:1])))
        self.outputs = outputs
        if outputs or not self.faulty or d.chance(50):
            self.lines.append("output " + ", ".join(outputs or ["x"]))

    def generate(self) -> None:
        self.declare_inputs()
        if self.d.chance(15):
            self.defaults()
        for _ in range(self.d.int(1, 6)):
            self.statement()
        self.choose_outputs()

    def text(self) -> str:
        body, lines = [], list(self.lines)
        while lines:
            line = lines.pop(0)
            if lines and self.d.chance(10):  # two statements on one line
                line += "; " + lines.pop(0)
            if self.d.chance(5):
                body.append("  # a comment")
            body.append(f"  {line}")
        return f"model {self.name} {{\n" + "\n".join(body) + "\n}"
