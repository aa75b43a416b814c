"""Case 14, evaluation memory: the peak memory one epoch's evaluation (nndsl/training/
evaluation.py: train metrics, validation loss and metrics, in batches on the device) adds on
top of the data, at 1,000,000 rows against 10,000 rows of the same MLP. In batches it holds one
batch's values at a time, so the ratio should be near 1 (the data set's size does not count).

NumPy engine: the peak of NumPy's allocations during the evaluation (tracemalloc, which NumPy
reports to). torch engine, data on the device (CPU): the growth of the process's resident-set
high-water mark (VmHWM, reset through /proc/self/clear_refs; Linux only, else no row), counted
from 1 MiB up.

    python -m bench --cases evalmemory
"""

from __future__ import annotations

import tempfile
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np

from bench.report import Row, ratio_at_most, row
from bench.timing import Settings, Timing

CASE = "14 evaluation memory"
GOAL = 1.5
RESOLUTION_MIB = 1.0  # the resident-set figures move by pages and allocator arenas: below
# a MiB they are noise, so a smaller growth counts as 1 MiB
SIZES, QUICK_SIZES = (10_000, 1_000_000), (2_000, 20_000)
SPEC = """model eval_mlp {
  input x: [batch, 32]
  probs = x -> dense(128) -> relu -> dense(10) -> softmax
  output probs
}
train eval_mlp {
  data = npz("d.npz")
  target y: [batch]
  loss = cross_entropy(probs, y)
  metrics = [accuracy, f1, precision, top_k_accuracy]
  optimizer = sgd(lr=0.1)
  batch = 256
  split = 0.2
}
"""


def _setup(rows: int, folder: Path) -> tuple[Any, Any, Any, Any]:
    from nndsl.data.dataset import load_dataset
    from nndsl.initialize import initialize
    from nndsl.program import load
    from nndsl.training.run import plan
    from nndsl.training.stages import stages

    rng = np.random.default_rng(0)
    x = rng.standard_normal((rows, 32), dtype=np.float32)
    np.savez(folder / "d.npz", x=x, y=rng.integers(0, 10, rows))
    (folder / "s.nn").write_text(SPEC, encoding="utf-8")
    program, _ = load(folder / "s.nn")
    spec = program.trains[0]
    model = program.model(spec.model)
    data = load_dataset(plan(program, spec).data, [model], spec, folder)
    return model, stages(spec)[0], data, initialize(model, 0)


def _hwm_kib() -> int | None:
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return None
    return next((int(line.split()[1]) for line in status.splitlines()
                 if line.startswith("VmHWM:")), None)


def _reset_hwm() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_mib(backend: str, rows: int) -> float | None:
    """The evaluation's peak memory above what was held before it, in MiB."""
    from nndsl.backend import make_engine
    from nndsl.training.evaluation import evaluate

    with tempfile.TemporaryDirectory(prefix="nndsl-bench-eval-") as tmp:
        model, stage, data, weights = _setup(rows, Path(tmp))
    engine = make_engine(backend, "cpu", "device")
    train, val = engine.to_backend(data.train), engine.to_backend(data.val)
    weights = engine.to_backend(weights)
    evaluate(engine, model, weights, stage, train, val, "y", batch=256)  # warm
    if backend == "numpy":
        tracemalloc.start()
        evaluate(engine, model, weights, stage, train, val, "y", batch=256)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        return peak / 2**20
    before = _hwm_kib()
    if before is None or not _reset_hwm():
        return None
    before = _hwm_kib()
    evaluate(engine, model, weights, stage, train, val, "y", batch=256)
    after = _hwm_kib()
    return max(((after or 0) - (before or 0)) / 1024, RESOLUTION_MIB)


def rows(settings: Settings) -> list[Row]:
    small, large = QUICK_SIZES if settings.quick else SIZES
    out = []
    for backend in ("numpy", "torch"):
        a, b = peak_mib(backend, large), peak_mib(backend, small)
        if a is None or b is None:
            continue
        out.append(row(CASE, f"{backend} engine, peak memory of one epoch's evaluation",
                       f"{large:,} rows", Timing(a, (a,)), f"{small:,} rows", Timing(b, (b,)),
                       f"<= {GOAL:.1f}x", ratio_at_most(GOAL), unit="MiB"))
    return out
