"""Case 9, large data: an MLP on 200,000 generated rows x 64 features, 2 epochs, measured as
whole processes: `nndsl train` on a spec that reads the rows from an .npz file, against
bench/handwritten_script.py doing the same (import, load, hold out 10%, train, evaluate after
every epoch, save the weights, export ONNX). Each side's wall time and peak resident memory
(the process's own ru_maxrss, from wait4) are reported side by side, over at most 3 repeats.

The data is generated at bench time in a temporary folder (float32 features, class ids from a
random linear teacher), so nothing large is committed.

    python -m bench --cases largedata
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from bench.report import Row, ratio_at_most, row
from bench.startup import nndsl_command
from bench.timing import Settings, Timing

CASE = "9 large data"
SCRIPT = Path(__file__).resolve().parent / "handwritten_script.py"
NNDSL, SCRIPTED = "nndsl train", "hand-written script"
TIME_GOAL, MEMORY_GOAL = 1.0, 1.1
REPEATS = 3  # at most: each repeat is two processes of 5-15 s


@dataclass(frozen=True)
class Shape:
    """The generated problem and the train block both sides run."""

    rows: int = 200_000
    features: int = 64
    hidden: tuple[int, ...] = (128, 64)
    classes: int = 10
    epochs: int = 2
    batch: int = 128
    lr: float = 1e-3
    split: float = 0.1

    def spec(self, data: Path) -> str:
        layers = "".join(f" -> dense({h}) -> relu" for h in self.hidden)
        return f"""model big_mlp {{
  input x: [batch, {self.features}]
  probs = x{layers} -> dense({self.classes}) -> softmax
  output probs
}}

train big_mlp {{
  data      = npz("{data.name}")
  target y: [batch]
  loss      = cross_entropy(probs, y)
  optimizer = adam(lr={self.lr})
  split     = {self.split}
  metrics   = [accuracy]
  batch     = {self.batch}
  epochs    = {self.epochs}
  seed      = 0
}}
"""

    def script_args(self) -> list[str]:
        return ["--epochs", str(self.epochs), "--batch", str(self.batch), "--lr", str(self.lr),
                "--split", str(self.split), "--hidden", ",".join(map(str, self.hidden)),
                "--classes", str(self.classes)]


FULL, QUICK = Shape(), Shape(rows=2_000, epochs=1)


def generate(shape: Shape, path: Path, seed: int = 0) -> Path:
    """Features from a standard normal, labels the argmax of a random linear map plus noise."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((shape.rows, shape.features), dtype=np.float32)
    teacher = rng.standard_normal((shape.features, shape.classes), dtype=np.float32)
    noise = rng.standard_normal((shape.rows, shape.classes), dtype=np.float32)
    np.savez(path, x=x, y=np.argmax(x @ teacher + 2 * noise, axis=1).astype(np.int64))
    return path


# Linux keeps, as a process's ru_maxrss, the peak of the memory it had before exec too: a child
# forked straight from this process (torch and the peers loaded) would report at least this
# process's size. So a bare interpreter (-S: no site, a few MiB) forks the measured command and
# writes the grandchild's own ru_maxrss (KiB) to the file named by its first argument.
LAUNCHER = """import os, sys
pid = os.fork()
if pid == 0:
    os.execvp(sys.argv[2], sys.argv[2:])
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as f:
    f.write(str(usage.ru_maxrss))
sys.exit(os.waitstatus_to_exitcode(status))
"""


def run_process(argv: list[str], log: Path) -> tuple[float, float]:
    """Wall seconds and peak resident MiB of one process (launched through LAUNCHER, whose own
    start, about 20 ms, counts in the time); a failing process is an error with its output's
    tail."""
    peak = log.with_suffix(".maxrss")
    with log.open("wb") as out:
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-I", "-S", "-c", LAUNCHER, str(peak), *argv],
                              stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                              check=False)
        elapsed = time.perf_counter() - start
    if done.returncode != 0:
        tail = log.read_text(encoding="utf-8", errors="replace")[-2000:]
        raise RuntimeError(f"{' '.join(argv)} exited {done.returncode}:\n{tail}")
    return elapsed, int(peak.read_text(encoding="utf-8")) / 1024


def commands(shape: Shape, folder: Path) -> dict[str, list[str]]:
    """The two processes, on the same generated data file."""
    data = generate(shape, folder / "big.npz")
    spec = folder / "big_mlp.nn"
    spec.write_text(shape.spec(data), encoding="utf-8")
    return {NNDSL: [*nndsl_command(), "train", str(spec), "--backend", "torch", "--device",
                    "cpu", "--run-dir", str(folder / "nndsl-run"), "--overwrite", "--quiet"],
            SCRIPTED: [sys.executable, str(SCRIPT), str(data), str(folder / "script-out"),
                       *shape.script_args()]}


def rows(settings: Settings) -> list[Row]:
    shape = QUICK if settings.quick else FULL
    settings = replace(settings, repeats=min(settings.repeats, REPEATS))
    memory: dict[str, list[float]] = {NNDSL: [], SCRIPTED: []}
    with tempfile.TemporaryDirectory(prefix="nndsl-bench-large-") as tmp:
        argvs = commands(shape, Path(tmp))

        def measured(name: str) -> Callable[[], None]:
            def run() -> None:
                memory[name].append(run_process(argvs[name], Path(tmp) / f"{name}.log")[1])
            return run

        times = settings.measure({name: measured(name) for name in argvs})
    peak = {name: Timing(float(np.median(m[settings.warmup:])), tuple(m[settings.warmup:]))
            for name, m in memory.items()}
    workload = f"{shape.rows:,} x {shape.features} mlp, {shape.epochs} ep"
    return [row(CASE, f"{workload}, wall time", NNDSL, times[NNDSL], SCRIPTED, times[SCRIPTED],
                f"<= {TIME_GOAL:.1f}x", ratio_at_most(TIME_GOAL)),
            row(CASE, f"{workload}, peak memory", NNDSL, peak[NNDSL], SCRIPTED, peak[SCRIPTED],
                f"<= {MEMORY_GOAL:.1f}x", ratio_at_most(MEMORY_GOAL), unit="MiB")]
