"""Case 8, the cost of training diagnostics: the training loop (per-epoch metrics, no files) of
digits_mlp (NumPy and torch) and digits_cnn (torch) with `diagnostics = true` against the same
loop without, on the CPU. Diagnostics add one forward and backward pass per epoch (on its last
batch) and a few reductions per layer, so the goal is at most 1.15x.

    python -m bench.diagnostics             # prints the table (one thread per library)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

from bench.report import Row, ratio_at_most, row
from bench.timing import Settings

if TYPE_CHECKING:
    from bench.models import Workload

BACKENDS = {"digits_mlp": ("numpy", "torch"), "digits_cnn": ("torch",)}
WORKLOADS = tuple(BACKENDS)
CASE, GOAL = "8 diagnostics", 1.15
ON, OFF = "with diagnostics", "without"


def loop(w: Workload, backend: str, epochs: int, diagnostics: bool) -> Callable[[], object]:
    """`epochs` epochs of the spec's training loop in memory, diagnostics on or off."""
    from nndsl.backend import make_engine
    from nndsl.training.run import train_in_memory

    train = replace(w.train, settings=(*w.train.settings, ("diagnostics", diagnostics)))
    engine = make_engine(backend, "cpu")
    return lambda: train_in_memory(w.program, train, engine, w.data,
                                   {w.graph.name: dict(w.weights)}, epochs)


def rows(workloads: list[Workload], settings: Settings) -> list[Row]:
    epochs = 1 if settings.quick else 3
    out = []
    for w in workloads:
        for backend in BACKENDS[w.name]:
            times = settings.measure({ON: loop(w, backend, epochs, True),
                                      OFF: loop(w, backend, epochs, False)})
            out.append(row(CASE, f"{w.name} {epochs} ep, {backend}", ON, times[ON], OFF,
                           times[OFF], f"<= {GOAL}x", ratio_at_most(GOAL)))
    return out


def main() -> None:
    from bench.timing import pin_threads

    pin_threads(1)  # before NumPy and torch are imported
    import torch

    from bench.models import load_workload
    from bench.report import Report
    from bench.timing import machine

    torch.set_num_threads(1)
    settings = Settings()
    report = Report(machine(1), {"repeats": settings.repeats, "warmup": settings.warmup,
                                 "quick": False, "cases": [CASE]})
    report.rows += rows([load_workload(n) for n in WORKLOADS], settings)
    print(report.render())


if __name__ == "__main__":
    main()
