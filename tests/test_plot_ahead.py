"""Plots drawn ahead of the last epoch (nndsl/plot_ahead.py): finished from the picture kept,
they are the bytes of the plot drawn in full; a history whose frame moved (a new decade, a new
phase, an early stop, a new series) is drawn in full; the limits are rounded out to ticks, so
that the last epochs rarely move them."""

from __future__ import annotations

import math
from typing import Any

import pytest

pytest.importorskip("matplotlib")

from nndsl import plot, plot_ahead  # noqa: E402


def _rows(n: int, **kw: Any) -> list[dict[str, Any]]:
    return [{"kind": "epoch", "epoch": i, "step": 10 * i, "phase": "a", "loss": 2.0 / i,
             "val_loss": 2.5 / i, "accuracy": 1 - 1 / (i + 1), **kw} for i in range(1, n + 1)]


HISTORIES = {
    "few": _rows(6), "many": _rows(45),
    "log": [{**r, "loss": 3.0 * 10.0 ** (-r["epoch"] / 2)} for r in _rows(8)],
    "phases": [{**r, "phase": "ab"[r["epoch"] > 4]} for r in _rows(9)],
    "gaps": [{**r, "val_loss": "" if r["epoch"] % 2 else 1.0} for r in _rows(7)],
    "two": _rows(2),
}
STABLE = ("few", "many", "log", "gaps")  # whose loss plot keeps its frame at the last epoch


@pytest.fixture(autouse=True)
def _fresh() -> Any:
    plot_ahead.forget()
    yield
    plot_ahead.forget()


def _plots(rows: list[dict[str, Any]]) -> list[tuple[str, list[str]]]:
    return list(plot.history_files(rows).values())


@pytest.mark.parametrize("history", list(HISTORIES))
def test_a_plot_drawn_ahead_is_the_bytes_of_the_plot_drawn_in_full(history: str) -> None:
    rows = HISTORIES[history]
    for name, keys in _plots(rows):
        assert plot_ahead.prepare(rows[:-1], name, keys, len(rows))
        full = plot.history_plot(rows, name, keys)
        if name == "loss" and history in STABLE:  # the last point stays inside the limits
            assert plot_ahead.ready(rows, name, keys)
        if plot_ahead.ready(rows, name, keys):
            assert plot_ahead.finish(rows, name, keys) == full
            assert plot_ahead.finish(rows, name, keys) == full  # finished again: the same
        else:  # its last point passed a tick (a rising accuracy, two points): drawn in full
            assert plot_ahead.finish(rows, name, keys) is None
        assert plot_ahead.history_plot(rows, name, keys) == full


def test_it_is_finished_again_for_another_history_with_the_same_frame() -> None:
    rows = _rows(12)
    other = [{**r, "loss": r["loss"] * 0.9} for r in rows]  # other points, the same limits
    (name, keys), *_ = _plots(rows)
    assert plot.frame(rows, keys, name) == plot.frame(other, keys, name)
    assert plot_ahead.prepare(rows[:11], name, keys, 12)
    assert plot_ahead.finish(rows, name, keys) == plot.history_plot(rows, name, keys)
    assert plot_ahead.finish(other, name, keys) == plot.history_plot(other, name, keys)


def test_the_same_frame_is_not_drawn_twice_and_a_moved_one_is_drawn_again() -> None:
    rows = [{**r, "loss": 3.0 * 10.0 ** -r["epoch"]} for r in _rows(8)]
    name, keys = "loss", ["loss", "val_loss"]
    assert plot_ahead.prepare(rows[:5], name, keys, 8)
    assert not plot_ahead.prepare(rows[:5], name, keys, 8)
    assert not plot_ahead.ready(rows, name, keys)  # each epoch a new decade: the frame moved
    assert plot_ahead.finish(rows, name, keys) is None
    assert plot_ahead.history_plot(rows, name, keys) == plot.history_plot(rows, name, keys)
    assert plot_ahead.prepare(rows[:7], name, keys, 8)  # drawn again, for the new frame
    assert not plot_ahead.ready(rows, name, keys)


@pytest.mark.parametrize("change", ["early stop", "new phase", "new series", "step rows"])
def test_a_history_whose_frame_moved_is_drawn_in_full(change: str) -> None:
    rows = _rows(10)
    name, keys = "loss", ["loss", "val_loss"]
    final = {"early stop": rows[:8],  # planned 10 epochs: the x axis is shorter
             "new phase": [*rows[:9], {**rows[9], "phase": "b"}],
             "new series": rows,
             "step rows": [{**r, "kind": "step"} for r in rows]}[change]
    asked = ["loss"] if change == "new series" else keys
    plot_ahead.prepare(rows[:7], name, asked, 10)
    assert not plot_ahead.ready(final, name, keys)
    assert plot_ahead.history_plot(final, name, keys) == plot.history_plot(final, name, keys)


def test_step_rows_and_histories_not_begun_are_not_drawn_ahead() -> None:
    steps = [{**r, "kind": "step"} for r in _rows(6)]
    assert not plot_ahead.prepare(steps, "loss", ["loss"], 10)
    assert not plot_ahead.prepare([], "loss", ["loss"], 10)
    assert not plot_ahead.prepare(_rows(6), "loss", ["loss"], 5)  # more rows than planned


def test_only_the_latest_few_plots_are_kept() -> None:
    rows = _rows(4)
    for n in range(plot_ahead.KEEP + 2):
        assert plot_ahead.prepare(rows, f"p{n}", ["loss"], 5)
    assert not plot_ahead.ready(rows, "p0", ["loss"])
    assert len(plot_ahead._AHEAD) == plot_ahead.KEEP


def test_limits_are_rounded_out_to_ticks_and_rarely_move_late_in_training() -> None:
    rows = _rows(40)
    frames = [plot.frame(rows[:n], ["loss", "val_loss"], "loss", 40) for n in range(20, 41)]
    assert len(set(frames)) == 1
    f = frames[0]
    assert f.y_limits == (0.0, 2.5) and not f.log and not f.markers
    assert f.x_limits == pytest.approx((1 - 0.05 * 39, 40 + 0.05 * 39))
    decades = plot.frame([{**r, "loss": 0.5 * 0.8 ** r["epoch"]} for r in rows], ["loss"],
                         "loss")
    assert decades.log and decades.y_limits == (1e-05, 1.0)
    one = plot.frame(rows[:1], ["accuracy"], "accuracy")
    assert one.x_limits == (0.5, 1.5) and one.y_limits[0] < 0.5 < one.y_limits[1]
    assert all(math.isfinite(v) for v in one.y_limits)


def test_several_runs_on_one_axis_share_limits_over_all_of_them() -> None:
    from matplotlib.figure import Figure

    short, long_ = _rows(5), [{**r, "loss": r["loss"] * 3} for r in _rows(20)]
    png = plot.overlay({"short": short, "long": long_}, ["loss"])
    assert png.startswith(b"\x89PNG")
    ax = Figure().subplots()
    drawn = [plot.draw(ax, rows, ["loss"], "loss", label=f"{n}: ")
             for n, rows in (("short", short), ("long", long_))]
    xs = [x for d in drawn for x in d.xs]
    values = [v for d in drawn for v in d.values]
    assert max(xs) == 20 and max(values) == pytest.approx(6.0)
    assert plot._y_limits(values, False)[1] >= 6.0
