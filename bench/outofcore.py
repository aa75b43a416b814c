"""Case 13, data larger than memory: `nndsl train` on a 4 GiB float32 .npy file (4,194,304 rows
x 256 features, generated at bench time a chunk at a time, never committed), as a whole process
through the large-data case's launcher; the row is the process's peak resident memory (its own
ru_maxrss) against the size of the data file. The goal is under 1.5 GiB: the file is memory-mapped
and read a batch at a time (nndsl/data/stream.py), the evaluation runs in batches too.

`--quick` runs the same on a 16 MiB file with NNDSL_STREAM_BYTES=0, so the streamed path runs
but the figure is mostly the interpreter and torch.

    python -m bench --cases outofcore
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.largedata import run_process
from bench.report import Row, a_under, row
from bench.startup import nndsl_command
from bench.timing import Settings, Timing

CASE = "13 larger than memory"
GOAL_MIB = 1536.0
CHUNK_ROWS = 65_536


@dataclass(frozen=True)
class Shape:
    rows: int
    features: int = 256
    hidden: int = 64
    classes: int = 10
    batch: int = 1024

    @property
    def mib(self) -> float:
        return self.rows * self.features * 4 / 2**20

    def spec(self) -> str:
        return f"""model wide_mlp {{
  input x: [batch, {self.features}]
  probs = x -> dense({self.hidden}) -> relu -> dense({self.classes}) -> softmax
  output probs
}}

train wide_mlp {{
  data      = npy(x="x.npy", y="y.npy")
  target y: [batch]
  loss      = cross_entropy(probs, y)
  optimizer = adam(lr=1e-3)
  split     = 0.05
  metrics   = [accuracy]
  batch     = {self.batch}
  epochs    = 1
  seed      = 0
}}
"""


FULL, QUICK = Shape(rows=4 * 2**20), Shape(rows=16_384)


def generate(shape: Shape, folder: Path, seed: int = 0) -> None:
    """x.npy written a chunk at a time through a memory map (this process never holds it),
    y.npy the argmax of a random linear teacher."""
    rng = np.random.default_rng(seed)
    teacher = rng.standard_normal((shape.features, shape.classes), dtype=np.float32)
    x = np.lib.format.open_memmap(folder / "x.npy", mode="w+", dtype=np.float32,
                                  shape=(shape.rows, shape.features))
    y = np.empty(shape.rows, dtype=np.int64)
    for start in range(0, shape.rows, CHUNK_ROWS):
        stop = min(start + CHUNK_ROWS, shape.rows)
        chunk = rng.standard_normal((stop - start, shape.features), dtype=np.float32)
        x[start:stop] = chunk
        y[start:stop] = np.argmax(chunk @ teacher, axis=1)
    x.flush()
    del x
    np.save(folder / "y.npy", y)


def rows(settings: Settings) -> list[Row]:
    shape = QUICK if settings.quick else FULL
    with tempfile.TemporaryDirectory(prefix="nndsl-bench-outofcore-") as tmp:
        folder = Path(tmp)
        generate(shape, folder)
        (folder / "wide.nn").write_text(shape.spec(), encoding="utf-8")
        force = ["env", "NNDSL_STREAM_BYTES=0"] if settings.quick else []
        argv = [*force, *nndsl_command(), "train", str(folder / "wide.nn"), "--backend",
                "torch", "--device", "cpu", "--run-dir", str(folder / "run"), "--quiet"]
        seconds, peak = run_process(argv, folder / "train.log")
    size = Timing(shape.mib, (shape.mib,))
    workload = (f"{shape.rows:,} x {shape.features} f32 .npy ({shape.mib / 1024:.2f} GiB), "
                f"1 epoch in {seconds:.0f} s, peak memory")
    return [row(CASE, workload, "nndsl train (memory-mapped)", Timing(peak, (peak,)),
                "the data file", size, f"< {GOAL_MIB:.0f} MiB", a_under(GOAL_MIB), unit="MiB")]
