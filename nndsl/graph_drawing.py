"""Drawing a placed network picture with matplotlib's object API (a `Figure` without pyplot,
so no global backend is chosen and nothing opens a window).

Boxes are text with a rounded frame; edges are one LineCollection (a 1,000-layer model draws
in a few seconds); blocks are frames behind their boxes, labelled with the block instance;
tied weights are a dashed bracket; the legend names each colour used.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Hashable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nndsl.errors import NndslError
from nndsl.graph_layout import (
    BOX_PAD_IN,
    CHAR_IN,
    FONT_PT,
    GROUP_PAD_IN,
    LABEL_IN,
    LINE_IN,
    Layout,
    box_half_width,
)
from nndsl.graph_picture import Box, Picture

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

MARGIN_IN, TITLE_IN, LEGEND_IN = 0.3, 0.35, 0.4
TITLE_PT = FONT_PT + 2
DPI, MAX_PIXELS, MAX_SIDE_PX = 100, 40e6, 60_000  # big pictures get a lower resolution
EDGE, TIE = "#777777", "#7b3294"
STYLES: dict[str, dict[str, Any]] = {  # box kind -> frame; later entries override earlier
    "layer": {"fc": "white", "ec": "#555555", "lw": 0.8},
    "input": {"fc": "#d9f0d3", "ec": "#1b7837", "lw": 1.4},
    "frozen": {"fc": "#d6e4f5", "ec": "#2c6fbb", "lw": 1.4},
    "output": {"ec": "#d95f02", "lw": 2.2},
}
LEGEND = {"layer": "layer", "input": "input", "output": "output", "frozen": "frozen in training"}
GROUP = {"fc": "#f1f1f1", "ec": "#9a9a9a", "lw": 0.8}


def render(items: list[tuple[Picture, Layout]]) -> Figure:
    """One figure with a panel per model, side by side, and a shared legend on top."""
    from matplotlib.figure import Figure

    sizes = [(max(lay.width * lay.slot_in, _text_in(p.title, TITLE_PT)),
              lay.rows * lay.row_in + _frames_above(p)) for p, lay in items]
    handles = _legend_handles([p for p, _ in items])
    legend_in = sum(0.7 + _text_in(h.get_label(), FONT_PT) for h in handles)
    width = max(sum(w for w, _ in sizes) + MARGIN_IN * (len(items) + 1), legend_in + MARGIN_IN)
    height = max(h for _, h in sizes) + TITLE_IN + LEGEND_IN + MARGIN_IN
    figure = Figure(figsize=(width, height))
    left = MARGIN_IN
    for (picture, lay), (w, h) in zip(items, sizes, strict=True):
        top = height - LEGEND_IN - TITLE_IN
        ax = figure.add_axes((left / width, (top - h) / height, w / width, h / height))
        _panel(ax, picture, lay, w / lay.slot_in)
        left += w + MARGIN_IN
    figure.legend(handles=handles, loc="upper left", ncol=len(handles), frameon=False,
                  fontsize=FONT_PT, bbox_to_anchor=(MARGIN_IN / width, 1 - 0.05 / height))
    return figure


def _text_in(text: str, points: float) -> float:
    """About how wide `text` is at `points` (DejaVu Sans; bold titles are a little wider)."""
    return len(text) * CHAR_IN * points / FONT_PT * 1.1


def save(figure: Figure, path: Path, fmt: str) -> None:
    """Write `figure`; SVG keeps its text as text (searchable, and a third of the size)."""
    from matplotlib import rc_context

    width, height = figure.get_size_inches()
    dpi = min(DPI, math.sqrt(MAX_PIXELS / (width * height)), MAX_SIDE_PX / max(width, height))
    metadata = {"svg": {"Date": None}, "pdf": {"CreationDate": None}}.get(fmt)
    try:
        with rc_context({"svg.fonttype": "none", "svg.hashsalt": "nndsl"}):
            figure.savefig(path, format=fmt, dpi=dpi, facecolor="white", metadata=metadata)
    except OSError as e:
        raise NndslError(f"cannot write '{path}': {e.strerror or e}",
                         hint="check that the folder exists and is writable") from None


def _panel(ax: Axes, picture: Picture, lay: Layout, slots: float) -> None:
    """One model in its axes, `slots` wide (the layout centred when the title is wider)."""
    spare = (slots - lay.width) / 2
    ax.set_xlim(-spare, lay.width + spare)
    ax.set_ylim(lay.rows - 0.5, -0.5 - _frames_above(picture) / lay.row_in)  # first layer on top
    ax.set_axis_off()
    ax.set_title(picture.title, loc="left", pad=4, fontsize=TITLE_PT, fontweight="bold",
                 y=1.0)  # placed, not fitted: fitting it makes and measures tick labels
    _groups(ax, picture, lay)
    _edges(ax, picture, lay)
    _ties(ax, picture, lay)
    for key, box in picture.boxes.items():
        x, y = lay.pos[key]
        ax.text(x, y, "\n".join(box.lines), ha="center", va="center", fontsize=FONT_PT,
                zorder=3, bbox={"boxstyle": "round,pad=0.3", **_style(box)})


def _frames_above(picture: Picture) -> float:
    """Inches above the first row for the frames (and names) of blocks that start there."""
    depth = max(len(box.scope) for box in picture.boxes.values())
    return depth * (GROUP_PAD_IN + LABEL_IN)


def _style(box: Box) -> dict[str, Any]:
    style = dict(STYLES[box.kind])
    for flag in ("frozen", "output"):
        if getattr(box, flag):
            style.update(STYLES[flag])
    return style


def _half_height(box: Box, lay: Layout) -> float:
    """Half a box's height in rows."""
    return (len(box.lines) * LINE_IN / 2 + BOX_PAD_IN) / lay.row_in


def _edges(ax: Axes, picture: Picture, lay: Layout) -> None:
    """Every edge as a polyline under the boxes, with a small arrowhead on each target box."""
    from matplotlib.collections import LineCollection

    ax.add_collection(LineCollection([points for points, _ in lay.paths], colors=EDGE,
                                     linewidths=0.9, zorder=1))
    heads = [(lay.pos[target][0],
              lay.pos[target][1] - _half_height(picture.boxes[target], lay) - 0.04 / lay.row_in)
             for _, target in lay.paths]
    if heads:
        xs, ys = zip(*heads, strict=True)
        ax.scatter(xs, ys, marker="v", s=14, color=EDGE, zorder=4, linewidths=0)


def _ties(ax: Axes, picture: Picture, lay: Layout) -> None:
    """A dashed bracket in the gap right of two boxes that share a weight, labelled 'tied'."""
    for a, b, _weight in picture.ties:
        (xa, ya), (xb, yb) = lay.pos[a], lay.pos[b]
        side = max(xa, xb) + 0.5 if lay.column[a] == lay.column[b] else None
        xs = [xa, side, side, xb] if side is not None else [xa, xb]
        ys = [ya, ya, yb, yb] if side is not None else [ya, yb]
        ax.plot(xs, ys, linestyle="--", color=TIE, linewidth=1.3, zorder=2)
        ax.text(side if side is not None else (xa + xb) / 2, (ya + yb) / 2, "tied",
                rotation=90 if side is not None else 0, ha="center", va="center",
                fontsize=FONT_PT - 1, color=TIE, zorder=2.5,
                bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none"})


def _groups(ax: Axes, picture: Picture, lay: Layout) -> None:
    """A frame per block instance (and per folded column it spans), outer frames larger so
    nested ones fit inside, each labelled top-left with the instance's name."""
    from matplotlib.patches import FancyBboxPatch

    members: dict[tuple[tuple[str, ...], int], list[Hashable]] = defaultdict(list)
    for key, box in picture.boxes.items():
        for depth in range(1, len(box.scope) + 1):
            members[(box.scope[:depth], lay.column[key])].append(key)
    half_w = box_half_width(picture) / lay.slot_in
    for (scope, _column), keys in members.items():
        inner = max(len(picture.boxes[k].scope) for k in keys) - len(scope)  # frames inside
        pad_x, pad_y = GROUP_PAD_IN * (1 + inner) / lay.slot_in, GROUP_PAD_IN * (1 + inner)
        label_y = LABEL_IN * (1 + inner)
        x0 = min(lay.pos[k][0] for k in keys) - half_w - pad_x
        x1 = max(lay.pos[k][0] for k in keys) + half_w + pad_x
        top = min(lay.pos[k][1] - _half_height(picture.boxes[k], lay) for k in keys)
        bottom = max(lay.pos[k][1] + _half_height(picture.boxes[k], lay) for k in keys)
        y0, y1 = top - (pad_y + label_y) / lay.row_in, bottom + pad_y / lay.row_in
        ax.add_patch(FancyBboxPatch((x0, y0), x1 - x0, y1 - y0, zorder=0.5 + 0.01 * len(scope),
                                    boxstyle="round,pad=0,rounding_size=0.05", **GROUP))
        ax.text(x0 + 0.05 / lay.slot_in, y0 + 0.03 / lay.row_in, scope[-1], ha="left", va="top",
                fontsize=FONT_PT - 1, fontstyle="italic", color="#555555", zorder=0.6)


def _legend_handles(pictures: list[Picture]) -> list[Any]:
    """Legend entries for only what the pictures use."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    boxes = [b for p in pictures for b in p.boxes.values()]
    used = {"input", "output", "layer"} | ({"frozen"} if any(b.frozen for b in boxes) else set())
    handles: list[Any] = [Patch(label=LEGEND[k], **{**STYLES["layer"], **STYLES[k]})
                          for k in LEGEND if k in used]
    if any(b.scope for b in boxes):
        handles.append(Patch(label="block", **GROUP))
    if any(p.ties for p in pictures):
        handles.append(Line2D([], [], linestyle="--", color=TIE, label="tied weights"))
    return handles
