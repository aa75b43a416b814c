"""Case 4, the front end: `nndsl check` (in-process, its report written to /dev/null) on
generated specs of a chain of N `dense -> relu` layers, and the growth exponent: the slope of
log(time) against log(N), fitted by least squares over the sizes from 100 up (below that the
fixed cost hides the growth). Start-up is case 5's business, so it is not in these figures."""

from __future__ import annotations

import contextlib
import math
import os
import tempfile
from pathlib import Path

from bench.report import Row, a_under, row
from bench.timing import Settings, Timing
from nndsl.cli import main

SIZES = (10, 100, 1_000, 10_000)
QUICK_SIZES = (10, 20, 40)
EXPONENT_GOAL, SECONDS_AT_1000 = 1.1, 1.0
CASE = "4 front end"


def spec_text(layers: int) -> str:
    """A model of `layers` dense layers, each followed by relu (two nodes per layer)."""
    lines = ["model deep {", "  input x: [batch, 8]", "  h0 = x -> dense(8) -> relu"]
    lines += [f"  h{i} = h{i - 1} -> dense(8) -> relu" for i in range(1, layers)]
    return "\n".join([*lines, f"  output h{layers - 1}", "}", ""])


def check(path: Path) -> None:
    with open(os.devnull, "w", encoding="utf-8") as sink, contextlib.redirect_stdout(sink):
        if main(["check", str(path)]) != 0:
            raise RuntimeError(f"nndsl check failed on {path}")


def growth_exponent(times: dict[int, float]) -> float:
    """Least-squares slope of log(seconds) over log(layers)."""
    xs, ys = [math.log(n) for n in times], [math.log(t) for t in times.values()]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / \
        sum((x - mx) ** 2 for x in xs)


def fitted_sizes(settings: Settings) -> str:
    sizes = [n for n in (QUICK_SIZES if settings.quick else SIZES) if n >= 100 or settings.quick]
    return f"{sizes[0]:,}..{sizes[-1]:,} layers"


def rows(settings: Settings) -> tuple[list[Row], float]:
    """The rows (each size against the one before it) and the fitted exponent."""
    sizes = QUICK_SIZES if settings.quick else SIZES
    times: dict[int, Timing] = {}
    with tempfile.TemporaryDirectory(prefix="nndsl-bench-") as tmp:
        for n in sizes:
            path = Path(tmp) / f"deep{n}.nn"
            path.write_text(spec_text(n), encoding="utf-8")
            times[n] = settings.measure({"check": lambda path=path: check(path)})["check"]
    fitted = {n: t.median for n, t in times.items() if n >= 100 or settings.quick}
    exponent = growth_exponent(fitted)
    out = []
    for small, large in zip(sizes, sizes[1:], strict=False):
        goal, test = "", None
        if large == 1_000:
            goal, test = f"< {SECONDS_AT_1000:.0f} s at 1,000", a_under(SECONDS_AT_1000)
        if large == sizes[-1]:
            goal = f"exponent {exponent:.2f} <= {EXPONENT_GOAL}"
            test = lambda _r: exponent <= EXPONENT_GOAL  # noqa: E731
        out.append(row(CASE, f"{large:,} vs {small:,} layers", f"check {large:,}",
                       times[large], f"check {small:,}", times[small], goal, test))
    return out, exponent
