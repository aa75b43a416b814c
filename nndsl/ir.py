"""The IR: plain frozen data. A flat SSA list of typed nodes per model, values named by strings.

Passes are functions `Graph -> Graph` that use `dataclasses.replace`; `format_graph` prints the
text form shown by `nndsl compile --emit ir` (one node per line with its source position).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from nndsl.errors import Span

Dim = int | str  # a concrete size or a symbol such as "batch" or "time"
DTYPES = ("f32", "f64", "i64")
NUMPY_DTYPE = {"f32": "float32", "f64": "float64", "i64": "int64"}


@dataclass(frozen=True, slots=True)
class TensorType:
    """Shape (ints and symbols) and dtype of a value."""

    shape: tuple[Dim, ...]
    dtype: str = "f32"

    @property
    def rank(self) -> int:
        return len(self.shape)

    def with_shape(self, shape: tuple[Dim, ...]) -> TensorType:
        return TensorType(tuple(shape), self.dtype)

    def __str__(self) -> str:
        return f"{self.dtype}[{', '.join(str(d) for d in self.shape)}]"


def format_shape(shape: tuple[Dim, ...]) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


@dataclass(frozen=True, slots=True)
class Call:
    """A configured function used as a value: `normal(0, 1)`, `l2(1e-4)`, `adam(lr=1e-3)`.

    After resolution every argument is a keyword argument, in signature order.
    """

    name: str
    kwargs: tuple[tuple[str, Any], ...] = ()
    span: Span | None = field(default=None, compare=False)

    def get(self, key: str, default: Any = None) -> Any:
        return dict(self.kwargs).get(key, default)

    def __str__(self) -> str:
        if not self.kwargs:
            return self.name
        return f"{self.name}({', '.join(f'{k}={format_value(v)}' for k, v in self.kwargs)})"


def format_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "none"
    if isinstance(value, tuple):
        return "[" + ", ".join(format_value(v) for v in value) + "]"
    if isinstance(value, float):
        return repr(value)
    return str(value)


@dataclass(frozen=True, slots=True)
class WeightDecl:
    """A trainable tensor (or buffer) owned by a layer, named `<label>.<param>`."""

    name: str
    shape: tuple[int, ...]
    init: Call
    dtype: str = "f32"
    role: str = "weight"  # weight | bias | buffer | other: decides defaults and penalties
    trainable: bool = True
    fan_in: int = 1
    fan_out: int = 1
    regularize: Call | None = None
    constraint: Call | None = None
    span: Span | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class Node:
    """One op application. `name` is the value it defines (SSA: defined once)."""

    name: str
    op: str
    inputs: tuple[str, ...]
    params: tuple[tuple[str, Any], ...] = ()
    weights: tuple[tuple[str, str], ...] = ()  # (op parameter, weight name)
    type: TensorType | None = None
    label: str | None = None  # the layer label weights are named after
    span: Span | None = field(default=None, compare=False)
    via: tuple[Span, ...] = field(default=(), compare=False)  # block call sites, innermost last

    def param(self, key: str, default: Any = None) -> Any:
        return dict(self.params).get(key, default)


@dataclass(frozen=True, slots=True)
class Graph:
    """A model: typed inputs, nodes in topological order, named outputs, owned weights."""

    name: str
    inputs: tuple[tuple[str, TensorType], ...]
    nodes: tuple[Node, ...]
    outputs: tuple[str, ...]
    weights: tuple[WeightDecl, ...] = ()
    span: Span | None = field(default=None, compare=False)

    def types(self) -> dict[str, TensorType]:
        """Every value's type (inputs and typed nodes)."""
        env = dict(self.inputs)
        env.update({n.name: n.type for n in self.nodes if n.type is not None})
        return env

    def weight(self, name: str) -> WeightDecl:
        return next(w for w in self.weights if w.name == name)

    def node(self, name: str) -> Node:
        return next(n for n in self.nodes if n.name == name)

    def param_count(self, trainable_only: bool = False) -> int:
        total = 0
        for w in self.weights:
            if w.role == "buffer" or (trainable_only and not w.trainable):
                continue
            size = 1
            for d in w.shape:
                size *= d
            total += size
        return total


@dataclass(frozen=True, slots=True)
class Phase:
    """One stage of training; unset fields fall back to the train block's."""

    name: str
    settings: tuple[tuple[str, Any], ...]
    loss: Graph | None = None
    freeze: tuple[str, ...] = ()
    span: Span | None = field(default=None, compare=False)
    spans: tuple[tuple[str, Span], ...] = field(default=(), compare=False)  # where each is set

    def where(self, key: str) -> Span | None:
        return dict(self.spans).get(key, self.span)


@dataclass(frozen=True, slots=True)
class TrainSpec:
    """A checked train block: settings resolved to Calls and literals, the loss as a graph.

    The loss graph's inputs are the model's outputs and inputs plus the declared targets; its
    single output is the scalar loss.
    """

    model: str
    settings: tuple[tuple[str, Any], ...]
    targets: tuple[tuple[str, TensorType], ...] = ()
    loss: Graph | None = None
    phases: tuple[Phase, ...] = ()
    span: Span | None = field(default=None, compare=False)
    spans: tuple[tuple[str, Span], ...] = field(default=(), compare=False)  # where each is set

    def get(self, key: str, default: Any = None) -> Any:
        return dict(self.settings).get(key, default)

    def where(self, key: str) -> Span | None:
        """Where setting `key` (or `loss`) is written, else the block."""
        return dict(self.spans).get(key, self.span)


@dataclass(frozen=True, slots=True)
class Program:
    """Everything one spec file defines (after imports): models and their train blocks."""

    models: tuple[Graph, ...]
    trains: tuple[TrainSpec, ...] = ()
    file: str = "<spec>"

    def model(self, name: str) -> Graph:
        return next(m for m in self.models if m.name == name)


def format_node(node: Node) -> str:
    params = ", ".join(f"{k}={format_value(v)}" for k, v in node.params)
    weights = ", ".join(f"{k}={w}" for k, w in node.weights)
    attrs = ", ".join(a for a in (params, weights) if a)
    head = f"{node.name}: {node.type if node.type else '?'} = {node.op}"
    args = f"({', '.join(node.inputs)})"
    text = f"{head}[{attrs}]{args}" if attrs else f"{head}{args}"
    return f"{text:<72}  # {node.span}" if node.span else text


def format_graph(graph: Graph) -> str:
    """The IR text form: inputs, weights, one node per line with its position, outputs."""
    lines = [f"model {graph.name}  # {graph.span}" if graph.span else f"model {graph.name}"]
    lines += [f"  input {name}: {ty}" for name, ty in graph.inputs]
    for w in graph.weights:
        flags = "" if w.trainable else " frozen"
        shape = format_shape(w.shape)
        lines.append(f"  weight {w.name}: {w.dtype}{shape} init={w.init} role={w.role}{flags}")
    lines += [f"  {format_node(n)}" for n in graph.nodes]
    lines.append(f"  output {', '.join(graph.outputs)}")
    return "\n".join(lines)
