"""`nndsl compile SPEC --emit torch`: a model as a standalone, readable torch.nn.Module file.

One attribute per layer with weights (`nn.Linear`, `nn.Conv2d`, `nn.LSTM`, ... where torch's
module computes exactly the nndsl layer; a `Weights` holder of plain parameters otherwise), a
`forward` that follows the spec's bindings with comments quoting the spec lines, and
`load_nndsl_weights(path)` that copies a run's `weights.npz` in. Layers come from the template
registry (backends/torch/source_layers.py) or, for every other op, from the op's decomposition
written out as tensor code (backends/torch/source_prims.py); an op whose decomposition needs a
size only known at run time as a Python number is a positioned error naming it.

The file needs torch and NumPy only: it imports nothing from nndsl.
"""

from __future__ import annotations

import ast
import keyword
import re
from collections.abc import Mapping
from typing import Any

import numpy as np
from nndsl.backends.numpy.prims import make_numpy_prims
from nndsl.backends.torch.source_layers import LAYERS, Ctx
from nndsl.backends.torch.source_prims import (
    RUNS,
    Code,
    NeedsFixedSize,
    Tracer,
    make_source_prims,
    render,
)

from nndsl import __version__, ops
from nndsl.errors import NndslError, SourceMap
from nndsl.interpreter import run
from nndsl.ir import NUMPY_DTYPE, Graph, Node
from nndsl.ops.registry import WithUpdates

TAKEN = {"self", "torch", "F", "nn", "np", "step", "Weights", "h_n", "_"}
MODULE_NAMES = {"training", "forward", "train", "eval", "to", "cuda", "cpu", "float", "double",
                "half", "type", "apply", "parameters", "buffers", "children", "modules",
                "state_dict", "load_state_dict", "zero_grad", "register_buffer",
                "register_parameter", "add_module", "get_parameter", "get_buffer",
                "requires_grad_", "extra_repr", "WEIGHTS", "load_nndsl_weights"}


def identifier(text: str, taken: set[str]) -> str:
    """`text` as a fresh Python name (other characters become '_')."""
    base = re.sub(r"\W+", "_", text).strip("_") or "v"
    if base[0].isdigit() or keyword.iskeyword(base) or base in TAKEN:
        base = f"{base}_"
    name, i = base, 1
    while name in taken:
        i += 1
        name = f"{base}_{i}"
    taken.add(name)
    return name


def samples(graph: Graph) -> tuple[list[dict[str, Any]], dict[str, np.ndarray]]:
    """Two NumPy runs of the model whose symbolic sizes differ (see source_prims), and the
    stand-in weights (zeros: only their shapes matter)."""
    weights = {w.name: np.zeros(w.shape, NUMPY_DTYPE[w.dtype]) for w in graph.weights}
    symbols = sorted({d for _, t in graph.inputs for d in t.shape if isinstance(d, str)})
    rng = np.random.default_rng(0)
    envs = []
    for r in range(RUNS):
        size = {s: 3 + j + r * (2 + j) for j, s in enumerate(symbols)}
        feeds = {}
        for name, ty in graph.inputs:
            shape = tuple(size[d] if isinstance(d, str) else d for d in ty.shape)
            feeds[name] = np.zeros(shape, NUMPY_DTYPE[ty.dtype]) if ty.dtype == "i64" else \
                rng.standard_normal(shape).astype(NUMPY_DTYPE[ty.dtype])
        with np.errstate(all="ignore"):
            envs.append(run(graph, make_numpy_prims(training=False), feeds, weights).env)
    return envs, weights


class ModuleWriter:
    """The parts of the file: attributes of __init__, lines of forward, the weight map."""

    def __init__(self, graph: Graph, sources: SourceMap) -> None:
        self.graph, self.sources = graph, sources
        self.envs, self.stand_ins = samples(graph)
        self.names: set[str] = set()
        self.var = {name: identifier(name, self.names) for name, _ in graph.inputs}
        for node in graph.nodes:
            self.var[node.name] = identifier(node.name, self.names)
        self.attrs: dict[str, str] = {}  # label (or node) -> attribute
        self.inits: list[str] = []  # __init__ lines
        self.paths: dict[str, str] = {}  # nndsl weight -> attribute path below self
        self.count = 0
        self.uses_holder = False

    def fresh(self) -> str:
        while True:
            self.count += 1
            if f"t{self.count}" not in self.names:
                return f"t{self.count}"

    def code(self, value: str) -> Code:
        return Code(self.var[value], [env[value] for env in self.envs])

    # ---- attributes ------------------------------------------------------------------------
    def module(self, node: Node, constructor: str, names: Mapping[str, str]) -> str:
        """`self.<attr>`, created once per label (a label used twice shares the module)."""
        key = node.label or node.name
        if key not in self.attrs:
            attr = identifier(key, MODULE_NAMES | set(self.attrs.values()))
            self.attrs[key] = attr
            self.inits.append(f"self.{attr} = {constructor}")
            for param, wname in node.weights:
                if param in names and wname not in self.paths:
                    self.paths[wname] = f"{attr}.{names[param]}"
        return f"self.{self.attrs[key]}"

    def weights(self, node: Node) -> dict[str, Code]:
        """The node's weights as tensors of a `Weights` holder (others' where shared)."""
        own = {p: w for p, w in node.weights if w not in self.paths}
        if own:
            decls = {w.name: w for w in self.graph.weights}
            shapes = ", ".join(f"{p}={render(decls[w].shape)}" for p, w in own.items())
            buffers = tuple(p for p, w in own.items() if decls[w].role == "buffer")
            fixed = tuple(p for p, w in own.items() if not decls[w].trainable
                          and decls[w].role != "buffer")
            extra = (f", buffers={render(buffers)}" if buffers else "") + \
                (f", frozen={render(fixed)}" if fixed else "")
            self.module(node, f"Weights({shapes}{extra})", {p: p for p in own})
            self.uses_holder = True
        return {p: Code(f"self.{self.paths[w]}", [self.stand_ins[w]] * RUNS)
                for p, w in node.weights}

    # ---- forward ---------------------------------------------------------------------------
    def node_lines(self, node: Node) -> list[str]:
        out = self.var[node.name]
        ctx = Ctx(node, [self.code(v) for v in node.inputs],
                  [self.graph.types()[v] for v in node.inputs], out,
                  lambda constructor, names: self.module(node, constructor, names),
                  lambda: self.weights(node), self.fresh)
        template = LAYERS.get(node.op)
        try:
            lines = template(ctx) if template is not None else None
            return lines if lines is not None else self.decomposed(node, ctx)
        except NeedsFixedSize as e:
            raise NndslError(f"{node.op} has no torch template and its decomposition cannot "
                             f"be written as torch code: {e}", node.span,
                             hint="give the symbolic axis a fixed size in the input "
                             "declaration") from None

    def decomposed(self, node: Node, ctx: Ctx) -> list[str]:
        """The op's own decomposition run on the source table: its lines of tensor code."""
        tracer = Tracer(self.fresh, self.var[self.graph.inputs[0][0]])
        kwargs = {**dict(node.params), **self.weights(node)}
        value = ops.get(node.op).compute(make_source_prims(tracer), *ctx.inputs, **kwargs)
        value = value.value if isinstance(value, WithUpdates) else value
        note = [f"# {node.op}: written out from its decomposition"] if len(tracer.lines) > 1 \
            else []
        lines = note + tracer.lines
        if not isinstance(value, Code):
            return [*lines, f"{ctx.out} = torch.tensor({render(value)})"]
        if any(value is i for i in ctx.inputs):  # the identity at inference (noise, ...)
            self.var[node.name] = value.text
            return [f"# {node.op}: the identity at inference"]
        last = tracer.lines[-1].split(" = ", 1) if tracer.lines else None
        if last is not None and last[0] == value.text:
            return [*lines[:-1], f"{ctx.out} = {last[1]}"]
        return [*lines, f"{ctx.out} = {value.text}"]

    def comment(self, node: Node) -> str | None:
        if node.span is None:
            return None
        text = self.sources.get(node.span.file, "").splitlines()
        line = text[node.span.line - 1].strip() if node.span.line <= len(text) else ""
        where = f"  (in a block used at {node.via[0]})" if node.via else ""
        return f"# {node.span.file}:{node.span.line}  {line}{where}"

    def forward(self) -> list[str]:
        lines: list[str] = []
        last = None
        for node in self.graph.nodes:
            comment = self.comment(node)
            if comment is not None and comment != last:
                lines += ([""] if lines else []) + [comment]
                last = comment
            lines += inline_temporaries(self.node_lines(node))
        outs = [self.var[o] for o in self.graph.outputs]
        return [*lines, "", f"return {', '.join(outs)}"]


TEMP = re.compile(r"^(\s*)(t\d+) = (.+)$")
WIDTH = 88  # the forward's lines get 8 more columns of indentation


def _atomic(expr: str) -> bool:
    """Whether `expr` can stand inside another expression without parentheses."""
    try:
        tree = ast.parse(expr, mode="eval").body
    except SyntaxError:
        return False
    return isinstance(tree, ast.Name | ast.Attribute | ast.Call | ast.Subscript | ast.Constant)


def _fold(line: str, word: re.Pattern[str], expr: str) -> str | None:
    """`line` with `expr` in place of the temporary, re-written with only the parentheses the
    precedence needs (None when the line is not an assignment of one expression)."""
    head, sep, rhs = line.partition(" = ")
    if not sep:
        return None
    piece = expr if _atomic(expr) else f"({expr})"
    try:
        rhs = ast.unparse(ast.parse(word.sub(lambda _: piece, rhs), mode="eval"))
    except SyntaxError:
        return None
    return f"{head}{sep}{rhs}"


def inline_temporaries(lines: list[str]) -> list[str]:
    """Fold a temporary used once into the line that uses it, while that line stays short:
    `t1 = w.permute(1, 0)`, `t2 = x @ t1` -> `t2 = x @ w.permute(1, 0)`."""
    lines = list(lines)
    i = 0
    while i < len(lines):
        match = TEMP.match(lines[i])
        if match is not None:
            name, expr = match.group(2), match.group(3)
            word = re.compile(rf"\b{name}\b")
            users = [j for j in range(i + 1, len(lines)) if word.search(lines[j])]
            if len(users) == 1 and len(word.findall(lines[users[0]])) == 1:
                folded = _fold(lines[users[0]], word, expr)
                if folded is not None and len(folded) <= WIDTH:
                    lines[users[0]] = folded
                    del lines[i]
                    i = max(i - 1, 0)
                    continue
        i += 1
    return lines


def class_name(model: str) -> str:
    name = "".join(part[:1].upper() + part[1:] for part in re.split(r"\W+|_", model) if part)
    return name if name.isidentifier() and not keyword.iskeyword(name) else f"Model{name}"


def module_source(graph: Graph, sources: SourceMap, spec: str) -> str:
    """The Python source of `graph` as a torch.nn.Module (see the module docstring)."""
    writer = ModuleWriter(graph, sources)
    forward = writer.forward()
    types = graph.types()
    args = ", ".join(f"{writer.var[n]}: torch.Tensor" for n, _ in graph.inputs)
    returns = "torch.Tensor" if len(graph.outputs) == 1 else \
        f"tuple[{', '.join(['torch.Tensor'] * len(graph.outputs))}]"
    signature = "; ".join(f"{n} {t}" for n, t in graph.inputs)
    results = "; ".join(f"{o} {types[o]}" for o in graph.outputs)
    weights = [f'        "{w}": "{p}",' for w, p in writer.paths.items()]
    parts = [HEADER.format(model=graph.name, spec=spec, version=__version__,
                           cls=class_name(graph.name)),
             HOLDER if writer.uses_holder else "",
             f"class {class_name(graph.name)}(nn.Module):",
             f'    """model {graph.name} of {spec}: {signature} -> {results}."""', "",
             "    # weights.npz array -> this module's parameter or buffer",
             "    WEIGHTS = {", *weights, "    }", "",
             "    def __init__(self) -> None:", "        super().__init__()",
             *[f"        {line}" for line in writer.inits], "",
             f"    def forward(self, {args}) -> {returns}:",
             *[f"        {line}" if line else "" for line in forward], "", LOADER]
    return "\n".join(p for p in parts if p is not None) + "\n"


HEADER = '''"""{model} as a plain torch.nn.Module.

Written by `nndsl compile {spec} --emit torch` (nndsl {version}); it needs torch and NumPy only.
`forward` follows the spec's bindings (the comments quote its lines). Dropout and batch norm
follow train() / eval() as in torch; other training-only layers (noise) are the identity here.

    model = {cls}().load_nndsl_weights("runs/{model}/weights.npz").eval()
    y = model(torch.as_tensor(x))
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
'''

HOLDER = '''
class Weights(nn.Module):
    """The tensors of a layer that is written out as tensor code in forward."""

    def __init__(self, *, buffers: tuple[str, ...] = (), frozen: tuple[str, ...] = (),
                 **shapes: tuple[int, ...]) -> None:
        super().__init__()
        for name, shape in shapes.items():
            if name in buffers:
                self.register_buffer(name, torch.zeros(shape))
            else:
                setattr(self, name, nn.Parameter(torch.zeros(shape),
                                                 requires_grad=name not in frozen))
'''

LOADER = '''    def load_nndsl_weights(self, path: str):  # noqa: ANN201 (returns self)
        """Copy nndsl's weights in: a run's weights.npz (`nndsl train`) or any .npz of arrays
        named <label>.<param>. A missing array or a wrong shape is an error; returns self."""
        tensors = self.state_dict(keep_vars=True)
        with np.load(path, allow_pickle=False) as arrays:
            missing = [name for name in self.WEIGHTS if name not in arrays.files]
            if missing:
                raise KeyError(f"{path} has no array for {', '.join(missing)}")
            with torch.no_grad():
                for name, target in self.WEIGHTS.items():
                    value = torch.as_tensor(arrays[name])
                    if value.shape != tensors[target].shape:
                        raise ValueError(f"{name} in {path} has shape {list(value.shape)}, "
                                         f"{target} has {list(tensors[target].shape)}")
                    tensors[target].copy_(value)
        return self'''
