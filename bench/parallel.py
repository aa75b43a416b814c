"""Case 11, data-parallel speed-up: the same `nndsl train` on the same generated data, as whole
processes, with `--nproc 2` (two gloo ranks on this machine, one thread each) against one process
with one thread. The global batch is the same, so both make the same updates.

Two rows: the whole process (imports, rendezvous, data, training, per-epoch evaluation, files,
export), and the time per epoch — the difference between a long and a short run of each
divided by the extra epochs — which is what more ranks divide. A launched run pays a fixed cost
first (torch's launcher starts, then each rank imports torch and joins the process group).

    python -m bench --cases parallel
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from bench.largedata import Shape, generate, run_process
from bench.report import Row, ratio_below, row
from bench.startup import nndsl_command
from bench.timing import Settings, Timing

CASE = "11 data-parallel"
TWO, ONE = "nndsl train --nproc 2", "nndsl train (1 rank)"
WHOLE_GOAL, EPOCH_GOAL = 1.0, 0.6  # faster end to end; an epoch in under 60% of one rank's
REPEATS = 3  # at most: each repeat is four processes of several seconds

FULL = Shape(rows=50_000, features=64, hidden=(512, 512), epochs=10, batch=4096, split=0.0)
QUICK = Shape(rows=2_000, features=16, hidden=(32,), epochs=2, batch=256, split=0.0)
SHORT = 2  # the short run's epochs (the quick shape: 1)


def spec_text(shape: Shape, data: Path) -> str:
    """The large-data case's spec without validation rows: the time is the training's."""
    return shape.spec(data).replace(f"  split     = {shape.split}\n", "")


def rows(settings: Settings) -> list[Row]:
    shape = QUICK if settings.quick else FULL
    short = replace(shape, epochs=1 if settings.quick else SHORT)
    settings = replace(settings, repeats=min(settings.repeats, REPEATS))
    with tempfile.TemporaryDirectory(prefix="nndsl-bench-parallel-") as tmp:
        folder = Path(tmp)
        data = generate(shape, folder / "big.npz")
        argvs = {}
        for label, s in (("long", shape), ("short", short)):
            spec = folder / f"{label}.nn"
            spec.write_text(spec_text(s, data), encoding="utf-8")
            base = [*nndsl_command(), "train", str(spec), "--backend", "torch", "--device",
                    "cpu", "--overwrite", "--quiet"]
            argvs[TWO, label] = [*base, "--run-dir", str(folder / f"two-{label}"), "--nproc",
                                 "2"]
            argvs[ONE, label] = [*base, "--run-dir", str(folder / f"one-{label}")]
        times = settings.measure({key: _process(argv, folder / f"{i}.log")
                                  for i, (key, argv) in enumerate(argvs.items())})
    extra = shape.epochs - short.epochs
    per_epoch = {side: _per_epoch(times[side, "long"], times[side, "short"], extra)
                 for side in (TWO, ONE)}
    workload = f"{shape.rows:,} x {shape.features} mlp {shape.hidden}, batch {shape.batch}"
    return [row(CASE, f"{workload}, {shape.epochs} ep, whole process", TWO, times[TWO, "long"],
                ONE, times[ONE, "long"], f"< {WHOLE_GOAL:.1f}x", ratio_below(WHOLE_GOAL)),
            row(CASE, f"{workload}, time per epoch", TWO, per_epoch[TWO], ONE, per_epoch[ONE],
                f"< {EPOCH_GOAL:.1f}x", ratio_below(EPOCH_GOAL))]


def _per_epoch(long: Timing, short: Timing, extra: int) -> Timing:
    """(long run - short run) / extra epochs, repeat by repeat (each pair ran back to back)."""
    runs = tuple(max(a - b, 1e-9) / extra for a, b in zip(long.runs, short.runs, strict=True))
    return Timing(sorted(runs)[len(runs) // 2], runs)


def _process(argv: list[str], log: Path) -> Callable[[], tuple[float, float]]:
    return lambda: run_process(argv, log)
