"""Writing a model's IR back as spec text: inputs, defaults, one binding per named value, outputs.

Layers run together as chains (`h = x -> flatten -> fc1: dense(128) -> relu`) while each value
feeds exactly one single-input layer; a value read twice, read by a layer with several inputs,
or returned by the model gets a name. Every layer with weights is printed with its label, so
its weights keep the names `<label>.<param>` under which the .npz holds them. The text is laid
out as `nndsl fmt` lays out every spec.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from nndsl import ops
from nndsl.format import format_text
from nndsl.importer.context import RESERVED, identifier
from nndsl.ir import Graph, Node, format_shape
from nndsl.ops.registry import OpDef

INFIX = {"add": "+", "sub": "-", "mul": "*", "div": "/"}


def value_text(value: Any) -> str:
    """A parameter value as the spec writes it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple | list):
        return "[" + ", ".join(value_text(v) for v in value) + "]"
    if isinstance(value, str):
        bare = identifier(value, "") == value and value not in ("true", "false")
        return value if bare else '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return repr(value) if isinstance(value, float) else str(value)


def call_text(node: Node, inputs: Sequence[str] = ()) -> str:
    """`op(args)`: the first required parameter by position, other non-defaults by name."""
    opdef: OpDef = ops.get(node.op)
    shown = [(p, node.param(p.name, p.default)) for p in opdef.params]
    shown = [(p, v) for p, v in shown
             if p.required or not (v == p.default and type(v) is type(p.default))]
    args = list(inputs)
    for index, (p, value) in enumerate(shown):
        first = index == 0 and p.name in opdef.positional_names[:1] and (
            p.required or (len(shown) == 1 and opdef.kind == "activation" and p.name != "axis"))
        args.append(value_text(value) if first else f"{p.name}={value_text(value)}")
    text = f"{node.op}({', '.join(args)})" if args else node.op
    return f"{node.label}: {text}" if node.weights and node.label else text


class SpecWriter:
    """Lays out one graph as spec text."""

    def __init__(self, graph: Graph, hints: Mapping[str, str]) -> None:
        self.graph = graph
        self.nodes = {n.name: n for n in graph.nodes}
        self.readers: dict[str, list[Node]] = {}
        for n in graph.nodes:
            for v in n.inputs:
                self.readers.setdefault(v, []).append(n)
        labels = {n.label for n in graph.nodes if n.label}
        self.taken = set(RESERVED) | labels | set(ops.OPS)
        self.names: dict[str, str] = {}
        for name, _ in graph.inputs:
            self.names[name] = name
            self.taken.add(name)
        for value in graph.outputs:
            self._name(value, hints.get(value, value))
        self.count = 0
        self.hints = hints

    def _name(self, value: str, wish: str) -> str:
        if value not in self.names:
            base = identifier(wish, "h")
            name, i = base, 1
            while name in self.taken:
                i += 1
                name = f"{base}_{i}"
            self.taken.add(name)
            self.names[value] = name
        return self.names[value]

    def _fresh(self, value: str) -> str:
        if value in self.hints:
            return self._name(value, self.hints[value])
        while True:
            self.count += 1
            if f"h{self.count}" not in self.taken:
                return self._name(value, f"h{self.count}")

    def bound(self, value: str) -> bool:
        """Whether `value` needs a name (else it continues a chain into its one reader)."""
        readers = self.readers.get(value, [])
        node = self.nodes.get(value)
        return (value in self.graph.outputs or len(readers) != 1 or len(readers[0].inputs) != 1
                or (node is not None and node.op == "scalar"))

    def operand(self, value: str) -> str:
        node = self.nodes.get(value)
        if node is not None and node.op == "scalar":
            return value_text(node.param("value"))
        return self.names[value]

    def body(self) -> list[str]:
        """One line per binding, in the graph's order."""
        lines: list[str] = []
        open_chains: dict[str, list[str]] = {}  # unbound value -> the chain that computes it
        for node in self.graph.nodes:
            if node.op == "scalar":
                continue  # written as a number where it is used
            if len(node.inputs) == 1 and node.inputs[0] in open_chains:
                chain = open_chains.pop(node.inputs[0])
                chain.append(call_text(node))
            elif len(node.inputs) == 1:
                chain = [self.operand(node.inputs[0]), call_text(node)]
            else:
                chain = [self.start(node)]
            if self.bound(node.name):
                lines.append(f"{self._fresh(node.name)} = " + " -> ".join(chain))
            else:
                open_chains[node.name] = chain
        return lines

    def start(self, node: Node) -> str:
        """A layer with several inputs (or none): `a + b`, `attention(q, k, v)`."""
        args = [self.operand(v) for v in node.inputs]
        if node.op == "pow" and len(args) == 2:  # `-2 ** x` would read as -(2 ** x)
            base = f"({args[0]})" if args[0].startswith("-") else args[0]
            return f"{base} ** {args[1]}"
        if node.op in INFIX and len(args) == 2:
            return f"{args[0]} {INFIX[node.op]} {args[1]}"
        if node.op == "neg":
            return f"-{args[0]}"
        return call_text(node, args)


def spec_text(graph: Graph, hints: Mapping[str, str], header: Sequence[str] = (),
              weights_file: str | None = None) -> str:
    """The spec of `graph`; `hints` maps values to preferred names, `weights_file` is the .npz
    every weight is read from (`defaults { weights = from_npz(...) }`)."""
    writer = SpecWriter(graph, hints)
    lines = [f"# {h}" for h in header]
    lines.append(f"model {identifier(graph.name, 'model')} {{")
    for name, ty in graph.inputs:
        dtype = "" if ty.dtype == "f32" else ty.dtype
        lines.append(f"  input {name}: {dtype}{format_shape(ty.shape)}")
    if weights_file is not None and graph.weights:
        lines.append(f"  defaults {{ weights = from_npz({value_text_quoted(weights_file)}) }}")
    lines += [f"  {line}" for line in writer.body()]
    lines.append(f"  output {', '.join(writer.names[o] for o in graph.outputs)}")
    lines.append("}")
    return format_text("\n".join(lines) + "\n", f"{graph.name}.nn")


def value_text_quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
