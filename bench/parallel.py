"""Case 11, data-parallel speed-up: the same `nndsl train` on the same generated data, as whole
processes, with `--nproc 2` (two gloo ranks on this machine, one thread each) against one process
with one thread. The global batch is the same, so both make the same updates; the ratio is the
2-rank wall time over the 1-rank one (below 1: the ranks pay for their all-reduce and start-up).

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
from bench.timing import Settings

CASE = "11 data-parallel"
TWO, ONE = "nndsl train --nproc 2", "nndsl train (1 rank)"
GOAL = 0.75  # two ranks should take under 3/4 of one rank's time
REPEATS = 3  # at most: each repeat is three processes of several seconds

FULL = Shape(rows=100_000, features=64, hidden=(256, 256), epochs=2, batch=512, split=0.0)
QUICK = Shape(rows=2_000, features=16, hidden=(32,), epochs=1, batch=256, split=0.0)


def spec_text(shape: Shape, data: Path) -> str:
    """The large-data case's spec without validation rows: the time is the training's."""
    return shape.spec(data).replace(f"  split     = {shape.split}\n", "")


def rows(settings: Settings) -> list[Row]:
    shape = QUICK if settings.quick else FULL
    settings = replace(settings, repeats=min(settings.repeats, REPEATS))
    with tempfile.TemporaryDirectory(prefix="nndsl-bench-parallel-") as tmp:
        folder = Path(tmp)
        data = generate(shape, folder / "big.npz")
        spec = folder / "big_mlp.nn"
        spec.write_text(spec_text(shape, data), encoding="utf-8")
        base = [*nndsl_command(), "train", str(spec), "--backend", "torch", "--device", "cpu",
                "--overwrite", "--quiet"]
        argvs = {TWO: [*base, "--run-dir", str(folder / "two"), "--nproc", "2"],
                 ONE: [*base, "--run-dir", str(folder / "one")]}
        times = settings.measure({name: _process(argv, folder / f"{i}.log")
                                  for i, (name, argv) in enumerate(argvs.items())})
    workload = f"{shape.rows:,} x {shape.features} mlp {shape.hidden}, batch {shape.batch}"
    return [row(CASE, f"{workload}, wall time", TWO, times[TWO], ONE, times[ONE],
                f"< {GOAL:.2f}x", ratio_below(GOAL))]


def _process(argv: list[str], log: Path) -> Callable[[], tuple[float, float]]:
    return lambda: run_process(argv, log)
