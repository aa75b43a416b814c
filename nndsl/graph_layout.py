"""Where each box of a network picture goes: layers from networkx's topological generations,
one row per layer, placed by `networkx.multipartite_layout`.

Two steps around networkx keep the picture readable, both standard in layered drawing
(Sugiyama et al. 1981, as graphviz's `dot` does them): an edge that skips layers (a residual
connection) runs through invisible waypoints, one per layer it crosses, so it is routed beside
the boxes instead of through them; and each layer is ordered by the mean position of its
predecessors (one barycentre sweep), which removes most crossings. A deep model is folded into
columns so that a 1,000-layer chain is a wide page of short columns, not a ribbon 1,000 rows
tall. Units: x counts box slots, y counts rows; `slot_in` and `row_in` say how many inches each.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from nndsl.graph_picture import Picture

if TYPE_CHECKING:
    import networkx as nx

FONT_PT = 8.0
LINE_IN = FONT_PT * 1.25 / 72  # one text line
CHAR_IN = FONT_PT * 0.62 / 72  # one character, a little over DejaVu Sans' average width
BOX_PAD_IN = 0.3 * FONT_PT / 72  # matplotlib's "round,pad=0.3" around the text
SLOT_GAP_IN, ROW_GAP_IN = 0.35, 0.45  # space between neighbouring boxes
GROUP_PAD_IN, LABEL_IN = 0.05, 0.13  # a block's frame around its boxes; its name's height
GUTTER_SLOTS = 0.5  # space between folded columns, where edges climb to the next column
FOLD_ROWS = 40  # a model with more layers than this is folded into columns
ASPECT = 1.5  # width / height a folded picture aims at


@dataclass
class Layout:
    """Positions of boxes (and edge waypoints), the edges' polylines and the page size."""

    pos: dict[Hashable, tuple[float, float]]
    column: dict[Hashable, int]
    paths: list[tuple[list[tuple[float, float]], str]] = field(default_factory=list)
    width: float = 1.0  # in slots
    rows: int = 1
    slot_in: float = 1.0
    row_in: float = 1.0


def layout(picture: Picture) -> Layout:
    """Place every box of `picture` and route every edge."""
    import networkx as nx

    graph = nx.DiGraph()
    graph.add_nodes_from(picture.boxes)
    graph.add_edges_from(picture.edges)
    rank = _ranks(graph)
    chains = [_chain(u, v, rank) for u, v in picture.edges]
    layers = _ordered_layers(rank, chains)
    everything = nx.Graph()
    everything.add_nodes_from(rank)
    placed = nx.multipartite_layout(everything, subset_key=dict(enumerate(layers)),
                                    align="horizontal")
    offset = _unscaled(placed, layers)
    return _fold(picture, layers, offset, chains)


def _ranks(graph: nx.DiGraph) -> dict[Hashable, int]:
    """Each box's layer: its topological generation (longest path from an input); an input
    sits just above its first reader, so a late input (a label fed to the last layers) does
    not hang at the top of the page."""
    import networkx as nx

    rank = {n: i for i, generation in enumerate(nx.topological_generations(graph))
            for n in generation}
    for n in graph:
        readers = list(graph.successors(n))
        if graph.in_degree(n) == 0 and readers:
            rank[n] = min(rank[s] for s in readers) - 1
    used = {r: i for i, r in enumerate(sorted(set(rank.values())))}
    return {n: used[r] for n, r in rank.items()}


def _chain(u: str, v: str, rank: dict[Hashable, int]) -> list[Hashable]:
    """The edge u -> v as a path through one waypoint per layer it crosses (added to rank;
    a waypoint is a tuple, so it never collides with a value name)."""
    chain: list[Hashable] = [u]
    for r in range(rank[u] + 1, rank[v]):
        rank[(u, v, r)] = r
        chain.append((u, v, r))
    chain.append(v)
    return chain


def _ordered_layers(rank: dict[Hashable, int], chains: list[list[Hashable]]
                    ) -> list[list[Hashable]]:
    """The keys of each layer, sorted by the mean centred position of their predecessors in
    the layer above (stable: ties keep the model's order; sources go left)."""
    layers: list[list[Hashable]] = [[] for _ in range(max(rank.values(), default=-1) + 1)]
    for key, r in rank.items():
        layers[r].append(key)
    above: dict[Hashable, list[Hashable]] = defaultdict(list)
    for chain in chains:
        for a, b in zip(chain, chain[1:], strict=False):
            above[b].append(a)
    where: dict[Hashable, float] = {}
    for layer in layers:
        layer.sort(key=lambda k: (sum(where[p] for p in above[k]) / len(above[k])
                                  if above[k] else -math.inf))
        where.update({k: i - (len(layer) - 1) / 2 for i, k in enumerate(layer)})
    return layers


def _unscaled(placed: dict[Hashable, object], layers: list[list[Hashable]]
              ) -> dict[Hashable, float]:
    """Each key's offset from its layer's centre in slots. multipartite_layout spaces a
    layer's nodes one unit apart, centred, then scales the whole drawing by one factor; the
    distance between two layers (or two neighbours) gives that factor back."""
    first = layers[0]
    if len(layers) > 1:
        unit = float(placed[layers[1][0]][1] - placed[first[0]][1])  # type: ignore[index]
    elif len(first) > 1:
        unit = float(placed[first[1]][0] - placed[first[0]][0])  # type: ignore[index]
    else:
        unit = 1.0
    return {k: float(p[0]) / unit for k, p in placed.items()}  # type: ignore[index]


def box_size(picture: Picture) -> tuple[float, float]:
    """(slot, row) in inches: room for the widest and the tallest box plus a gap, which grows
    with the nesting of blocks so that nested frames and their names fit between rows."""
    lines = max(len(box.lines) for box in picture.boxes.values())
    depth = max(len(box.scope) for box in picture.boxes.values())
    gap = max(ROW_GAP_IN, (2 * GROUP_PAD_IN + LABEL_IN) * depth + 0.05)
    return 2 * box_half_width(picture) + SLOT_GAP_IN, lines * LINE_IN + 2 * BOX_PAD_IN + gap


def box_half_width(picture: Picture) -> float:
    """Half the widest box in inches (boxes are as wide as their longest line)."""
    chars = max(len(line) for box in picture.boxes.values() for line in box.lines)
    return chars * CHAR_IN / 2 + BOX_PAD_IN


def _fold(picture: Picture, layers: list[list[Hashable]], offset: dict[Hashable, float],
          chains: list[list[Hashable]]) -> Layout:
    """Layers top to bottom, in as many columns as keep a deep model near ASPECT."""
    slot_in, row_in = box_size(picture)
    col_w = max(len(layer) for layer in layers) + GUTTER_SLOTS
    n = len(layers)
    rows = n
    if n > FOLD_ROWS:
        rows = max(FOLD_ROWS, math.ceil(math.sqrt(n * col_w * slot_in / (ASPECT * row_in))))
        rows = math.ceil(n / math.ceil(n / rows))  # balance the columns
    out = Layout({}, {}, width=math.ceil(n / rows) * col_w, rows=rows, slot_in=slot_in,
                 row_in=row_in)
    for r, layer in enumerate(layers):
        for key in layer:
            out.column[key] = r // rows
            out.pos[key] = ((r // rows + 0.5) * col_w + offset[key], float(r % rows))
    for chain in chains:
        points = [out.pos[chain[0]]]
        for a, b in zip(chain, chain[1:], strict=False):
            if out.column[a] != out.column[b]:  # down, into the gutter, up, over to b
                (xa, ya), (xb, _) = out.pos[a], out.pos[b]
                gutter = (out.column[a] + 1) * col_w
                points += [(xa, ya + 0.5), (gutter, ya + 0.5), (gutter, -0.5), (xb, -0.5)]
            points.append(out.pos[b])
        out.paths.append((points, chain[-1]))  # type: ignore[arg-type]
    return out
