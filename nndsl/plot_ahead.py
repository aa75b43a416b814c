"""Plots drawn ahead of the last epoch, so that the run's end only adds its last points.

Most of a plot's drawing is its axes: ticks, tick labels, grid, title (20-40 ms on 2 cores).
They depend on the history only through its frame (nndsl/plot.py's `Frame`: limits rounded to
ticks, scale, markers, phases), which the last epochs rarely change. The picture worker draws
each plot ahead from the epochs recorded so far, with the x axis of the epochs planned, and
keeps the picture of everything below the curves (Agg's own copy of the canvas, the way
matplotlib's blitting works). When the final history has the same frame, its plot is that
picture with the curves, spines, texts and legend drawn on it in the order a full drawing
draws them — the same pixels (tests/test_plot_ahead.py compares the PNG bytes); when it has
not, the plot is drawn in full as before.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from nndsl import plot

KEEP = 8  # plots kept drawn ahead (a process that trains again reuses them)
BELOW_CURVES = 2.0  # matplotlib's zorder of lines: what is drawn before them is kept


@dataclass
class Ahead:
    """A plot drawn ahead: its frame, figure, curves (in `plot.curve_points`' order), the
    artists drawn over the kept picture (in drawing order), and that picture."""

    frame: plot.Frame
    figure: Any
    lines: list[Any]
    over: list[Any]
    picture: Any

    def finish(self, rows: list[Mapping[str, Any]], keys: list[str]) -> bytes:
        """The PNG of the plot of `keys` of `rows`, a history with this frame."""
        for line, (_, _, xs, ys) in zip(self.lines, plot.curve_points(rows, keys), strict=True):
            line.set_data(xs, ys)
        canvas = self.figure.canvas
        canvas.restore_region(self.picture)
        renderer = canvas.get_renderer()
        for artist in self.over:
            artist.draw(renderer)
        width, height = canvas.get_width_height(physical=True)
        return plot.encode_png(renderer.buffer_rgba(), width, height)


_AHEAD: OrderedDict[tuple[str, tuple[str, ...]], Ahead] = OrderedDict()


def prepare(rows: list[Mapping[str, Any]], name: str, keys: list[str], count: int) -> bool:
    """Draw the plot of `keys` ahead from `rows`, the first epoch rows of a history that will
    hold `count`; False when the one drawn already has this frame (or nothing to draw)."""
    x_name, drawn = plot.curves(rows)
    if x_name != "epoch" or not drawn or count < len(drawn):
        return False
    key = (name, tuple(keys))
    frame = plot.frame(rows, keys, name, count)
    old = _AHEAD.get(key)
    if old is not None and old.frame == frame:
        _AHEAD.move_to_end(key)
        return False
    fig, (ax,) = plot.spare_figure()
    lines = plot.draw(ax, rows, keys, name, count=count).lines
    plot.fit(ax, frame.x_limits, frame.y_limits)
    over = sorted((a for a in ax.get_children()
                   if a is not ax.patch and a.get_zorder() >= BELOW_CURVES),
                  key=lambda a: a.get_zorder())  # stable, as the axes sort their artists
    for artist in over:
        artist.set_animated(True)  # left out of the canvas's drawing
    fig.canvas.draw()
    _AHEAD[key] = Ahead(frame, fig, lines, over, fig.canvas.copy_from_bbox(fig.bbox))
    _AHEAD.move_to_end(key)
    while len(_AHEAD) > KEEP:
        _AHEAD.popitem(last=False)
    return True


def drawn_ahead(rows: list[Mapping[str, Any]], name: str, keys: list[str]) -> Ahead | None:
    """The plot of `keys` drawn ahead with the frame of this final history, if there is one."""
    ahead = _AHEAD.get((name, tuple(keys)))
    return ahead if ahead is not None and ahead.frame == plot.frame(rows, keys, name) else None


def ready(rows: list[Mapping[str, Any]], name: str, keys: list[str]) -> bool:
    """Whether the plot of `keys` of this final history is drawn ahead."""
    return drawn_ahead(rows, name, keys) is not None


def finish(rows: list[Mapping[str, Any]], name: str, keys: list[str]) -> bytes | None:
    """The PNG of the plot of `keys` of this final history from the one drawn ahead, or None
    when there is none with its frame."""
    ahead = drawn_ahead(rows, name, keys)
    return None if ahead is None else ahead.finish(rows, keys)


def forget() -> None:
    """Drop every plot drawn ahead (a forked copy of the worker keeps none)."""
    _AHEAD.clear()


def history_plot(rows: list[Mapping[str, Any]], name: str, keys: list[str]) -> bytes:
    """`plot.history_plot`, from the plot drawn ahead when there is one with its frame."""
    png = finish(rows, name, keys)
    return png if png is not None else plot.history_plot(rows, name, keys)
