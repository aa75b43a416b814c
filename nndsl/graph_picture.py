"""`nndsl graph`: a picture of a network (SVG, PNG or PDF), as Keras' `plot_model` or Netron
give one. This module says *what* is drawn (one box per value with its op, output shape and
parameter count; block scopes, tied weights and frozen layers); `graph_layout` places the
boxes with networkx and `graph_drawing` draws them with matplotlib, both imported only here.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from nndsl.errors import NndslError, did_you_mean
from nndsl.ir import Graph, Program

FORMATS = {".svg": "svg", ".png": "png", ".pdf": "pdf"}  # file suffix -> matplotlib format
MAX_NAME = 28  # longer value names are shortened with an ellipsis so boxes keep a sane width


@dataclass
class Box:
    """One value of the model: a graph input or a node's output."""

    key: str
    lines: list[str]
    kind: str = "layer"  # input | layer
    output: bool = False
    scope: tuple[str, ...] = ()  # enclosing block (or repeat) instances, outermost first
    frozen: tuple[str, ...] = ()  # the training stages that freeze its weights
    tied: tuple[str, ...] = ()  # weights it shares with another layer


@dataclass
class Picture:
    """What one model's picture shows, before any placement."""

    title: str
    boxes: dict[str, Box]
    edges: list[tuple[str, str]] = field(default_factory=list)
    ties: list[tuple[str, str, str]] = field(default_factory=list)  # (box, box, weight)


def draw_network(program: Program, graph: Graph, path: str | Path) -> None:
    """Draw one model of `program` to `path` (.svg, .png or .pdf)."""
    draw_models(program, [graph], [path])


def draw_models(program: Program, graphs: Sequence[Graph], paths: Sequence[str | Path]) -> None:
    """Draw `graphs` side by side in one figure, saved once per path (one layout for all)."""
    targets = [output_format(p) for p in paths]
    from nndsl.graph_drawing import render, save
    from nndsl.graph_layout import layout

    pictures = [describe(program, g) for g in graphs]
    figure = render([(p, layout(p)) for p in pictures])
    for path, fmt in zip(paths, targets, strict=True):
        save(figure, Path(path), fmt)


def output_format(path: str | Path) -> str:
    """The matplotlib format for `path`; an unknown suffix or a missing folder is an error
    found before any drawing starts."""
    path = Path(path)
    if path.is_dir():
        raise NndslError(f"cannot write '{path}': it is a directory",
                         hint="give a file name such as net.svg")
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise NndslError(f"cannot draw a network to '{path}': unsupported file type",
                         expected=", ".join(FORMATS), received=path.suffix or "no suffix",
                         hint="name the output file net.svg, net.png or net.pdf")
    if not path.parent.is_dir():
        why = "is not a folder" if path.parent.exists() else "does not exist"
        raise NndslError(f"cannot write '{path}': '{path.parent}' {why}",
                         hint="create the folder first or choose another path")
    return fmt


def select_models(program: Program, name: str | None) -> list[Graph]:
    """The model called `name`, or every model of the spec when no name is given."""
    if name is None:
        return list(program.models)
    names = [m.name for m in program.models]
    if name not in names:
        raise NndslError(f"{program.file} has no model '{name}'",
                         hint=did_you_mean(name, names) or f"models: {', '.join(names)}",
                         expected=" | ".join(names), received=name)
    return [program.model(name)]


def describe(program: Program, graph: Graph) -> Picture:
    """The boxes, data edges and weight ties of `graph`, marked with what training does."""
    from nndsl.check import report, shape_text

    rows = report(graph).layers
    tied = _shared_weights(graph)
    frozen = _frozen_stages(program, graph)
    scopes = _scopes(graph)
    boxes = {name: Box(name, [f"{_short(name)}: input", _type_text(ty)], kind="input",
                       output=name in graph.outputs) for name, ty in graph.inputs}
    edges = []
    for node, row in zip(graph.nodes, rows, strict=True):
        weights = [w for _, w in node.weights]
        box = Box(node.name, [f"{_short(node.name)}: {node.op}"], output=node.name in graph.outputs,
                  scope=scopes[node.name], tied=tuple(w for w in weights if w in tied),
                  frozen=tuple(dict.fromkeys(s for w in weights for s in frozen.get(w, ()))))
        params = f" · {row.params:,} params" if row.params else ""
        box.lines.append(shape_text(row.shape) + params)
        box.lines += _marks(box)
        boxes[node.name] = box
        edges += [(i, node.name) for i in dict.fromkeys(node.inputs) if i in boxes]
    ties = [(users[i], users[i + 1], w) for w, users in tied.items() for i in range(len(users) - 1)]
    title = f"model {graph.name} · {graph.param_count():,} params · {len(graph.nodes):,} nodes"
    return Picture(title, boxes, edges, ties)


def _marks(box: Box) -> list[str]:
    """The extra lines of a box: what ties or freezes it (also shown by colour)."""
    lines = [f"tied weight {w}" for w in box.tied]
    stages = [s for s in box.frozen if s != "main"]
    if box.frozen:
        lines.append(f"frozen in {', '.join(stages)}" if stages else "frozen")
    return lines


def _short(name: str) -> str:
    """The last part of a value name (its block scope is the group around it), shortened."""
    short = name.rsplit("/", 1)[-1]
    return short if len(short) <= MAX_NAME else short[:MAX_NAME - 1] + "…"


def _type_text(ty: object) -> str:
    from nndsl.check import shape_text

    dtype = getattr(ty, "dtype", "f32")
    return shape_text(ty) if dtype == "f32" else f"{dtype}{shape_text(ty)}"  # type: ignore[arg-type]


def _shared_weights(graph: Graph) -> dict[str, list[str]]:
    """Weight name -> the nodes that use it, for weights used by more than one node (tying:
    `dense(8, tied=enc)` reads `enc.weight`, or one label written twice)."""
    uses = Counter(w for n in graph.nodes for _, w in n.weights)
    shared: dict[str, list[str]] = {}
    for node in graph.nodes:
        for w in dict.fromkeys(w for _, w in node.weights if uses[w] > 1):
            shared.setdefault(w, []).append(node.name)
    return shared


def _frozen_stages(program: Program, graph: Graph) -> dict[str, list[str]]:
    """Weight name -> the training stages (phases, or `main`) that freeze it. A stage freezes
    weights by layer label (`freeze = [enc]`) or by weight name, as training reads it."""
    from nndsl.training.stages import stages

    owner = {w.name: w.name.rsplit(".", 1)[0] for w in graph.weights}
    frozen: dict[str, list[str]] = {}
    for spec in (t for t in program.trains if t.model == graph.name):
        for stage in stages(spec):
            for name, label in owner.items():
                if name in stage.frozen or label in stage.frozen:
                    frozen.setdefault(name, []).append(stage.name)
    return frozen


def _scopes(graph: Graph) -> dict[str, tuple[str, ...]]:
    """Each node's enclosing block instances, read from its layer label or value name
    (`conv_pool_1/conv2d_1`). A block's last node may carry the name it is assigned to
    (`f = x -> conv_pool(16)`); it belongs to the scope of the node before it that came from
    the same call sites (`Node.via`)."""
    scopes: dict[str, tuple[str, ...]] = {}
    last_by_site: dict[tuple[object, ...], tuple[str, ...]] = {}
    for node in graph.nodes:
        scope = tuple((node.label or node.name).split("/")[:-1])
        if not scope and node.via:
            scope = last_by_site.get(node.via, ())
        if node.via and scope:
            last_by_site[node.via] = scope
        scopes[node.name] = scope
    return scopes
