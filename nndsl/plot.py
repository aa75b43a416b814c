"""A run's plots, drawn by matplotlib (its Agg canvas: no display, no pyplot state): loss.png
with every loss series, one PNG per other metric (training and validation of it together),
the diagnostics per layer, and `nndsl plot`'s overlay of several runs.

Each axis has ticks and a grid; a series spanning more than two decades (losses often do)
gets a log scale; phases are marked by a dashed line where each begins. Rows are metrics.csv
rows (dicts); epoch rows are drawn against the epoch count across phases, and a run that has
only step rows (`--steps` shorter than an epoch) against the update count.
"""

from __future__ import annotations

import functools
import io
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

SIZE, DPI = (6.4, 4.0), 100  # inches: 640 x 400 pixels per panel
SKIP = ("kind", "step", "epoch", "phase")
LOG_SPAN = 100.0  # a y range wider than this factor (two decades) is drawn on a log scale
TICKS_AHEAD = 12  # major ticks a spare figure's axes have ready (a plot draws up to 11)
X_MARGIN = 0.05  # of the x range, at each end (matplotlib's default margin)
Y_BINS, Y_STEPS = 9, (1, 2, 2.5, 5, 10)  # a linear y axis's ticks (see `_scale`)
MARKERS_UP_TO = 30  # points: a curve with more has no markers


def base(key: str) -> str:
    """The metric a column measures: `val_accuracy` -> `accuracy`."""
    return key[4:] if key.startswith("val_") else key


def group(key: str) -> str:
    """The plot a column goes in: every loss (`loss`, `val_loss`, `d_loss`) in `loss`."""
    b = base(key)
    return "loss" if b == "loss" or b.endswith("_loss") else b


def _numbers(rows: Iterable[Mapping[str, Any]], key: str) -> list[float]:
    out = []
    for row in rows:
        value = row.get(key)
        try:
            out.append(float(value) if value not in (None, "") else math.nan)
        except (TypeError, ValueError):
            out.append(math.nan)
    return out


def curves(rows: list[Mapping[str, Any]]) -> tuple[str, list[Mapping[str, Any]]]:
    """Which rows to draw and against what: epoch rows, else step rows."""
    epochs = [r for r in rows if r.get("kind", "epoch") == "epoch"]
    if epochs:
        return "epoch", epochs
    return "step", [r for r in rows if r.get("kind") == "step"]


def groups(rows: list[Mapping[str, Any]]) -> dict[str, list[str]]:
    """Plot name -> its columns, in the order they first appear; `lr` only when it changes.
    Each column is read once (a column left out, such as a constant `lr`, was read again at
    every row: 7 s for 5,000 epochs)."""
    out: dict[str, list[str]] = {}
    seen: set[str] = set(SKIP)
    for row in rows:
        for key in row:
            if key in seen:
                continue
            seen.add(key)
            values = [v for v in _numbers(rows, key) if not math.isnan(v)]
            if not values or (key == "lr" and max(values) == min(values)):
                continue
            out.setdefault(group(key), []).append(key)
    return out


def _figure(panels: int = 1, columns: int = 1) -> tuple[Any, list[Any]]:
    from matplotlib.figure import Figure

    rows = -(-panels // columns)
    # fixed margins: a constrained layout measures every tick label, and costs more than the
    # rest of the drawing
    fig = Figure(figsize=(SIZE[0] * columns, SIZE[1] * rows), dpi=DPI)
    fig.subplots_adjust(left=0.11 / columns, right=1 - 0.03 / columns, top=1 - 0.08 / rows,
                        bottom=0.12 / rows, wspace=0.25, hspace=0.35)
    axes = fig.subplots(rows, columns, squeeze=False).ravel().tolist()
    for extra in axes[panels:]:
        extra.set_visible(False)
    return fig, axes[:panels]


def _png(fig: Any, kind: str = "png") -> bytes:
    """The figure as `kind` bytes; a PNG is drawn by Agg as savefig draws it, then encoded by
    `encode_png`."""
    out = io.BytesIO()
    if kind != "png":
        fig.savefig(out, format=kind, dpi=DPI)
        return out.getvalue()
    fig.savefig(out, format="raw", dpi=DPI)  # RGBA, row by row from the top
    _remember_label_drop(fig)
    width, height = fig.canvas.get_width_height(physical=True)
    return encode_png(out.getbuffer(), width, height)


def encode_png(rgba: Any, width: int, height: int) -> bytes:
    """An RGBA picture (a buffer, row by row from the top) as PNG bytes: an opaque picture
    (every plot's: a white figure) without its alpha channel, a quarter less to filter and
    compress (a fifth less time than savefig's RGBA PNG, 12% smaller files), at zlib level 1
    (these flat line plots compress nearly as well, in half the time)."""
    import matplotlib
    import numpy as np
    from PIL import Image, PngImagePlugin

    image = Image.frombuffer("RGBA", (width, height), rgba, "raw", "RGBA", 0, 1)
    if np.frombuffer(rgba, np.uint8)[3::4].min() == 255:
        image = image.convert("RGB")
    info = PngImagePlugin.PngInfo()  # what savefig writes
    info.add_text("Software", f"Matplotlib version{matplotlib.__version__}, "
                              "https://matplotlib.org/")
    png = io.BytesIO()
    image.save(png, format="png", compress_level=1, pnginfo=info)
    return png.getvalue()


# How far below its axes matplotlib puts an x label, in points: under the tick labels (the
# tick, its pad, a line of text) by the label pad. Placing it measures every tick label on each
# drawing (an eighth of a plot's cost), so the first figure this process draws measures it
# and the later ones put their labels there (tests/test_run_records.py compares the pixels).
_LABEL_DROP: list[float] = []


def _remember_label_drop(fig: Any) -> None:
    if _LABEL_DROP or not fig.axes:
        return
    ax = fig.axes[0]  # placed by matplotlib: none is placed here before this is known
    _, y = ax.xaxis.label.get_position()  # placed: pixels from the figure's bottom
    if not ax.xaxis.get_ticklabels() or not math.isfinite(y):
        return
    _LABEL_DROP.append((ax.bbox.y0 - y) * 72.0 / fig.dpi)


def _place_labels(ax: Any) -> None:
    """The x label where matplotlib would put it, once `_LABEL_DROP` is known; an empty y
    label is not placed at all."""
    if not _LABEL_DROP:
        return
    from matplotlib.transforms import ScaledTranslation

    drop = ScaledTranslation(0.0, -_LABEL_DROP[0] / 72.0, ax.figure.dpi_scale_trans)
    ax.xaxis.set_label_coords(0.5, 0.0, transform=ax.transAxes + drop)
    if not ax.get_ylabel():
        ax.yaxis.set_label_coords(0.0, 0.5, transform=ax.transAxes)


def _is_log(values: Iterable[float]) -> bool:
    """Every value positive, spanning more than two decades (losses often do)."""
    finite = [v for v in values if math.isfinite(v)]
    return bool(finite) and min(finite) > 0 and max(finite) / min(finite) > LOG_SPAN


def _scale(ax: Any, log: bool) -> None:
    """A log scale has a tick and a plain label (0.01, 0.1, 1) per decade: matplotlib's default
    minor ticks and math-text labels cost three quarters of such a plot's drawing. A linear one
    has at most nine steps of 1, 2, 2.5 or 5 times a power of ten (matplotlib's own choice for
    a panel this size), which `_y_limits` rounds the range out to."""
    from matplotlib.ticker import FuncFormatter, MaxNLocator, NullLocator

    if log:
        ax.set_yscale("log")
        ax.yaxis.set_minor_locator(NullLocator())
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    else:
        ax.yaxis.set_major_locator(MaxNLocator(nbins=Y_BINS, steps=Y_STEPS))


def _x_limits(xs: Iterable[float]) -> tuple[float, float]:
    """The points' range with matplotlib's 5% margin at each end (one point: half a unit)."""
    finite = [x for x in xs if math.isfinite(x)]
    if not finite:
        return 0.0, 1.0
    lo, hi = min(finite), max(finite)
    if lo == hi:
        return lo - 0.5, hi + 0.5
    pad = (hi - lo) * X_MARGIN
    return lo - pad, hi + pad


def _y_limits(values: Iterable[float], log: bool) -> tuple[float, float]:
    """The values' range rounded out to ticks: whole decades on a log scale, else the nearest
    tick steps (matplotlib's `round_numbers` limits). Rounded limits rarely move when one more
    epoch is recorded, so a plot drawn ahead of the last epoch can keep its axes."""
    finite = [v for v in values if math.isfinite(v) and (v > 0 or not log)]
    if not finite:
        return 0.0, 1.0
    lo, hi = min(finite), max(finite)
    if log:
        return 10.0 ** math.floor(math.log10(lo)), 10.0 ** math.ceil(math.log10(hi))
    import matplotlib
    from matplotlib.ticker import MaxNLocator

    ticks = MaxNLocator(nbins=Y_BINS, steps=Y_STEPS)
    with matplotlib.rc_context({"axes.autolimit_mode": "round_numbers"}):
        low, high = ticks.view_limits(*ticks.nonsingular(lo, hi))
    return float(low), float(high)


def _phase_starts(rows: list[Mapping[str, Any]]) -> tuple[tuple[int, str], ...]:
    """(row, phase name) where each phase begins: one entry when there is a single phase."""
    names = [r.get("phase") for r in rows]
    return tuple((i, str(name)) for i, name in enumerate(names)
                 if i == 0 or name != names[i - 1])


def _phases(ax: Any, starts: tuple[tuple[int, str], ...], xs: list[float]) -> None:
    """A dashed line and the phase's name where each phase after the first begins."""
    if len(starts) < 2:
        return
    for i, name in starts:
        x = xs[i] - 0.5 if i else xs[0]
        if i:
            ax.axvline(x, color="0.5", linestyle="--", linewidth=0.8)
        ax.annotate(name, (x, 1.0), xycoords=("data", "axes fraction"),
                    xytext=(3, -12), textcoords="offset points", fontsize=8, color="0.3")


def _segments(rows: list[Mapping[str, Any]]) -> list[tuple[int, int]]:
    """(start, stop) of each run of rows of one phase."""
    edges = [i for i, _ in _phase_starts(rows)] + [len(rows)]
    return list(zip(edges, edges[1:], strict=False)) if rows else [(0, 0)]


def _style(key: str, colors: dict[str, str]) -> dict[str, Any]:
    """Training and validation of one metric share a colour; validation is dashed."""
    color = colors.setdefault(base(key), f"C{len(colors) % 10}")
    return {"color": color, "linestyle": "--" if key.startswith("val_") else "-"}


def _axes(ax: Any, title: str, xlabel: str) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.set_title(title, y=1.0)  # placed, not fitted: nothing is drawn above the axes, and
    # fitting it measures every tick label (a fifth of the drawing)
    ax.set_xlabel(xlabel)
    _place_labels(ax)
    ax.xaxis.set_major_locator(MaxNLocator(nbins=6, integer=True))  # epochs, steps: counts
    ax.grid(True, which="major", alpha=0.4)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)


@dataclass(frozen=True)
class Frame:
    """Everything a plot of `keys` draws but its curves' points: the axes' limits and scale,
    markers or not, where phases begin. Two histories with the same frame draw the same axes,
    ticks, labels and legend entries (nndsl/plot_ahead.py draws them ahead on that ground)."""

    title: str
    keys: tuple[str, ...]
    x_name: str
    x_limits: tuple[float, float]
    y_limits: tuple[float, float]
    log: bool
    markers: bool
    phases: tuple[tuple[int, str], ...]
    empty: bool


def _xs(x_name: str, rows: list[Mapping[str, Any]], count: int) -> list[float]:
    return list(range(1, count + 1)) if x_name == "epoch" else _numbers(rows, "step")


def frame(rows: list[Mapping[str, Any]], keys: list[str], title: str,
          count: int | None = None, log: bool | None = None) -> Frame:
    """The frame of `keys` of `rows`, or of the history they begin when it will hold `count`
    epoch rows; `log` decides the scale instead of these values (several runs on one axis)."""
    x_name, drawn = curves(rows)
    n = len(drawn) if count is None else count
    values = [v for key in keys for v in _numbers(drawn, key)]
    log = _is_log(values) if log is None else log
    return Frame(title, tuple(keys), x_name, _x_limits(_xs(x_name, drawn, n)),
                 _y_limits(values, log), log, n <= MARKERS_UP_TO, _phase_starts(drawn),
                 not drawn)


def curve_points(rows: list[Mapping[str, Any]], keys: list[str]
                 ) -> list[tuple[str, int, list[float], list[float]]]:
    """(key, phase number, xs, ys) of each line a plot of `keys` draws, in order: one per key
    and phase (phases are not joined: another phase may train another loss)."""
    x_name, drawn = curves(rows)
    xs = _xs(x_name, drawn, len(drawn))
    out = []
    for key in keys:
        ys = _numbers(drawn, key)
        out += [(key, n, xs[lo:hi], ys[lo:hi]) for n, (lo, hi) in enumerate(_segments(drawn))]
    return out


@dataclass
class Drawn:
    """What `draw` put on an axis: its frame, its curves (in `curve_points`' order) and every
    point's coordinates."""

    frame: Frame
    lines: list[Any]
    xs: list[float]
    values: list[float]


def draw(ax: Any, rows: list[Mapping[str, Any]], keys: list[str], title: str,
         label: str = "", colors: dict[str, str] | None = None, phases: bool = True,
         count: int | None = None, log: bool | None = None) -> Drawn:
    """`keys` of `rows` on one axis (markers when there are few points); `count` and `log` as
    in `frame`. The limits are left to the caller (`fit`): several runs may share the axis."""
    f = frame(rows, keys, title, count, log)
    colors = {} if colors is None else colors
    marker = "o" if f.markers else None
    lines, xs, values = [], [], []
    for key, n, x, y in curve_points(rows, keys):
        lines += ax.plot(x, y, label=None if n else f"{label}{key}", marker=marker,
                         markersize=3, **_style(key, colors))
        xs += x
        values += y
    if phases:
        drawn = curves(rows)[1]
        _phases(ax, f.phases, _xs(f.x_name, drawn, len(drawn)))
    _scale(ax, f.log)
    _axes(ax, title, f.x_name)
    if f.empty:
        ax.text(0.5, 0.5, "no epochs recorded", transform=ax.transAxes, ha="center")
    return Drawn(f, lines, xs, values)


def fit(ax: Any, x_limits: tuple[float, float], y_limits: tuple[float, float]) -> None:
    ax.set_xlim(*x_limits)
    ax.set_ylim(*y_limits)


def history_files(rows: list[Mapping[str, Any]]) -> dict[str, tuple[str, list[str]]]:
    """File -> (plot name, columns): loss.png, then plots/METRIC.png for every other series."""
    _, drawn = curves(rows)
    found = groups(drawn)
    return {("loss.png" if name == "loss" else f"plots/{name}.png"): (name, keys)
            for name, keys in {"loss": found.pop("loss", []), **found}.items()}


def history_plot(rows: list[Mapping[str, Any]], name: str, keys: list[str]) -> bytes:
    """One of `history_files`' plots, as PNG bytes (on a spare figure when one is ready)."""
    fig, (ax,) = _SPARE.pop() if _SPARE else _figure()
    f = draw(ax, rows, keys, name).frame
    fit(ax, f.x_limits, f.y_limits)
    return _png(fig)


# Figures drawn once and emptied, for `history_plot`: a new axis creates its tick marks and
# labels on its first drawing, a third of a plot's cost. An emptied figure draws the same
# pixels as a new one (tests/test_run_records.py compares them byte for byte). Only the picture
# worker (nndsl/training/painter.py) prepares them, while it would otherwise wait.
_SPARE: list[tuple[Any, list[Any]]] = []


# One Agg renderer for every spare figure of a size: matplotlib remembers the sizes of the
# texts it has laid out per renderer, and a figure's own renderer starts with none, so each plot
# measured its tick labels, title and legend afresh (a tenth of its drawing). The spare figures
# of a process are drawn one at a time, and each picture is copied out (`_png`) before the next.
_RENDERERS: dict[tuple[int, int, float], Any] = {}


@functools.cache
def _shared_canvas() -> type:
    from matplotlib.backends.backend_agg import FigureCanvasAgg, RendererAgg

    class SharedCanvas(FigureCanvasAgg):  # type: ignore[misc]
        """An Agg canvas drawing with the renderer its size shares (`_RENDERERS`)."""

        def get_renderer(self) -> RendererAgg:
            width, height = self.get_width_height(physical=True)
            key = (width, height, self.figure.dpi)
            if key not in _RENDERERS:
                _RENDERERS[key] = RendererAgg(width, height, self.figure.dpi)
            self.renderer = _RENDERERS[key]
            return self.renderer

    return SharedCanvas


def spare_figure() -> tuple[Any, list[Any]]:
    """A one-panel figure on an Agg canvas: a spare one when one is ready."""
    if _SPARE:
        return _SPARE.pop()
    fig, axes = _figure()
    _shared_canvas()(fig)
    return fig, axes


def spare_figures() -> int:
    """How many figures `prepare_figure` has left ready."""
    return len(_SPARE)


def drop_spare_figures() -> None:
    """Forget the spare figures and their renderers (a forked copy of the worker prepares its
    own)."""
    _SPARE.clear()
    _RENDERERS.clear()


def prepare_figure() -> None:
    """One more spare figure: a one-panel figure drawn once with a placeholder curve, which is
    then taken away with the limits it set."""
    fig, (ax,) = _figure()
    line, = ax.plot([1, 50], [0.01, 1.0])
    _shared_canvas()(fig).draw()  # an Agg canvas, as savefig would make, whose renderer is kept
    _remember_label_drop(fig)
    for axis in (ax.xaxis, ax.yaxis):  # the ticks a plot may need, made while idle (a plot
        axis.get_major_ticks(TICKS_AHEAD)  # whose axis had too few made them as it drew)
    line.remove()
    ax.relim()
    ax.set_xlim(0.0, 1.0, auto=None)  # a new axis's limits, still autoscaled
    ax.set_ylim(0.0, 1.0, auto=None)
    _SPARE.append((fig, [ax]))


DIAGNOSTICS = (("grad_norm2", "||dE/dz||^2 per layer"), ("update_ratio", "update / weight"),
               ("dead_fraction", "dead ReLUs"), ("saturated_fraction", "saturated units"))


def diagnostics_plot(rows: list[Mapping[str, Any]]) -> bytes:
    """One panel per diagnostic that was measured, one line per layer, against the epoch."""
    panels = [(k, t) for k, t in DIAGNOSTICS if any(r.get(k) not in (None, "") for r in rows)]
    fig, axes = _figure(max(len(panels), 1), 2 if len(panels) > 1 else 1)
    epochs = list(dict.fromkeys((r["phase"], r["epoch"]) for r in rows))
    at = {e: i + 1 for i, e in enumerate(epochs)}
    layers = list(dict.fromkeys(r["layer"] for r in rows))
    for ax, (key, title) in zip(axes, panels, strict=False):
        everything: list[float] = []
        for i, layer in enumerate(layers):
            mine = [r for r in rows if r["layer"] == layer and r.get(key) not in (None, "")]
            if not mine:
                continue
            ys = _numbers(mine, key)
            everything += ys
            ax.plot([at[(r["phase"], r["epoch"])] for r in mine], ys, label=layer,
                    color=f"C{i % 10}", marker="o" if len(epochs) <= 30 else None, markersize=3)
        if key in ("dead_fraction", "saturated_fraction"):
            ax.set_ylim(-0.05, 1.05)
        elif _is_log(everything):
            _scale(ax, True)
        _axes(ax, title, "epoch")
    return _png(fig)


def plotted(runs: Mapping[str, list[Mapping[str, Any]]]) -> dict[str, list[str]]:
    """Plot name -> columns, over several runs (the loss first)."""
    found: dict[str, list[str]] = {"loss": []}
    for rows in runs.values():
        for name, keys in groups(curves(rows)[1]).items():
            found.setdefault(name, [])
            found[name] += [k for k in keys if k not in found[name]]
    return {k: v for k, v in found.items() if v}


def overlay(runs: Mapping[str, list[Mapping[str, Any]]], names: list[str] | None = None,
            kind: str = "png") -> bytes:
    """Several runs on shared axes: a panel per metric (the loss first), a colour per run,
    validation dashed; `kind` is the file format (png, svg, pdf)."""
    found = plotted(runs)
    order = list(dict.fromkeys(n for n in (names or found) if n in found))
    fig, axes = _figure(max(len(order), 1), 2 if len(order) > 1 else 1)
    for ax, name in zip(axes, order, strict=False):
        keys = {run: [k for k in found[name] if any(k in r for r in rows)]
                for run, rows in runs.items()}
        log = _is_log(v for run, rows in runs.items() for k in keys[run]
                      for v in _numbers(curves(rows)[1], k))
        xs, values = [], []
        for i, (run, rows) in enumerate(runs.items()):
            colors = {base(k): f"C{i % 10}" for k in found[name]}
            drawn = draw(ax, rows, keys[run], name, label=f"{run}: ", colors=colors,
                         phases=len(runs) == 1, log=log)
            xs += drawn.xs
            values += drawn.values
        fit(ax, _x_limits(xs), _y_limits(values, log))
    return _png(fig, kind)
