"""Rows of the benchmark table: two contenders measured side by side and their ratio, printed as
one plain-text table and written as JSON."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from bench.timing import Timing


@dataclass(frozen=True)
class Row:
    """`a` against `b`: ratio = a / b, so below 1 means `a` is faster (or smaller). `goal`
    says what the issue asks of this row and `met` whether this run met it (None: no goal on
    this row, or `b` did not run). `unit` is what the figures count: seconds, or "MiB" of peak
    memory. `b_time` is None when `b` could not run here, and `missing` says why."""

    case: str
    workload: str
    a: str
    a_time: Timing
    b: str
    b_time: Timing | None
    goal: str = ""
    met: bool | None = None
    unit: str = "s"
    missing: str = ""

    @property
    def ratio(self) -> float | None:
        if self.b_time is None:
            return None
        return self.a_time.median / self.b_time.median if self.b_time.median else float("inf")

    def as_json(self) -> dict[str, Any]:
        b = {"missing": self.missing} if self.b_time is None else self.b_time.as_json(self.unit)
        return {"case": self.case, "workload": self.workload, "unit": self.unit,
                "a": {"label": self.a, **self.a_time.as_json(self.unit)},
                "b": {"label": self.b, **b},
                "ratio": self.ratio, "goal": self.goal, "met": self.met}


def row(case: str, workload: str, a: str, a_time: Timing, b: str, b_time: Timing,
        goal: str = "", check: Callable[[Row], bool] | None = None, unit: str = "s") -> Row:
    """A row, judged by `check` (on its ratio or its times) when it has a goal."""
    out = Row(case, workload, a, a_time, b, b_time, goal, unit=unit)
    return replace(out, met=check(out)) if check is not None else out


def missing_row(case: str, workload: str, a: str, a_time: Timing, b: str, why: str,
                goal: str = "") -> Row:
    """A row whose `b` did not run here (a peer that is not installed): no ratio, no verdict."""
    return Row(case, workload, a, a_time, b, None, goal, missing=why)


def ratio_at_most(limit: float) -> Callable[[Row], bool]:
    return lambda r: r.ratio <= limit


def ratio_below(limit: float) -> Callable[[Row], bool]:
    return lambda r: r.ratio < limit


def ratio_at_least(limit: float) -> Callable[[Row], bool]:
    return lambda r: r.ratio >= limit


def a_under(seconds: float) -> Callable[[Row], bool]:
    return lambda r: r.a_time.median < seconds


@dataclass
class Report:
    """Everything one `python -m bench` run measured."""

    machine: dict[str, Any]
    settings: dict[str, Any]
    rows: list[Row] = field(default_factory=list)
    gpu_rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {"machine": self.machine, "settings": self.settings,
                "rows": [r.as_json() for r in self.rows],
                "gpu_rows": [r.as_json() for r in self.gpu_rows], "notes": self.notes}

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.as_json(), indent=2) + "\n", encoding="utf-8")

    def render(self) -> str:
        m = self.machine
        head = (f"nndsl bench — CPU {m['cpu']}, {m['cores']} cores ({m['threads']} thread(s) "
                f"per library), GPU {m['gpu'] or 'none'}; torch {m['torch']}, onnxruntime "
                f"{m['onnxruntime']}, numpy {m['numpy']}, matplotlib {m['matplotlib']}, "
                f"Python {m['python']}; peers: "
                + (", ".join(f"{k} {v}" for k, v in m["peers"].items()) or "none installed"))
        s = self.settings
        parts = [head, f"median of {s['repeats']} interleaved repeats after {s['warmup']} "
                 f"warm-up; ratio = A / B (below 1: A is faster)", "", format_rows(self.rows)]
        if self.gpu_rows:
            parts += ["", f"GPU ({m['gpu']})", format_rows(self.gpu_rows)]
        if self.notes:
            parts += ["", *self.notes]
        return "\n".join(parts)


COLUMNS = ("case", "workload", "A", "time A", "B", "time B", "A/B", "goal", "met")


def format_rows(rows: list[Row]) -> str:
    cells = [COLUMNS] + [(r.case, r.workload, r.a, amount(r.a_time.median, r.unit), r.b,
                          r.missing if r.b_time is None else amount(r.b_time.median, r.unit),
                          "-" if r.ratio is None else f"{r.ratio:.2f}x", r.goal,
                          {True: "yes", False: "NO", None: ""}[r.met]) for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(COLUMNS))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
             for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def amount(value: float, unit: str) -> str:
    """A figure in its row's unit: a duration, or mebibytes."""
    return seconds(value) if unit == "s" else f"{value:.0f} {unit}"


def seconds(value: float) -> str:
    """A duration with a unit that keeps three significant figures readable."""
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if value >= scale:
            return f"{value / scale:.3g} {unit}"
    return f"{value / 1e-9:.3g} ns"
