"""Case 12, the torch step options on the CPU: `compile = true` (torch.compile of the step
plan) and `precision = bf16` (autocast) against the plain float32 step, on the training loop
(per-epoch metrics, no files) of digits_mlp and digits_cnn.

Compilation is shown twice: its first run (tracing and code generation included, after
torch._dynamo.reset(); inductor's on-disk cache may still hold kernels from an earlier
process, as it would for a user's second run) and its steady state once compiled. The smoke
test (--quick) measures bf16 only: tracing alone takes tens of seconds.

    python -m bench --cases stepoptions
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from bench.report import Row, row
from bench.timing import Settings, Timing, clock

if TYPE_CHECKING:
    from bench.models import Workload

WORKLOADS = ("digits_mlp", "digits_cnn")
CASE = "12 step options"
PLAIN, BF16, COMPILED = "f32, not compiled", "precision = bf16", "compile = true"


def loop(w: Workload, epochs: int, **options: Any) -> Callable[[], object]:
    """`epochs` epochs of the spec's training loop on the torch CPU engine with `options`
    (compile=, precision=) set in the train block."""
    from nndsl.backends.torch.engine import TorchEngine

    from nndsl.training.run import train_in_memory

    train = replace(w.train, settings=(*w.train.settings, *options.items()))
    return lambda: train_in_memory(w.program, train, TorchEngine("cpu"), w.data,
                                   {w.graph.name: dict(w.weights)}, epochs)


def rows(workloads: list[Workload], settings: Settings) -> list[Row]:
    import torch

    epochs = 1 if settings.quick else 3
    out = []
    for w in workloads:
        work = f"{w.name} {epochs} ep"
        contenders = {PLAIN: loop(w, epochs), BF16: loop(w, epochs, precision="bf16")}
        if not settings.quick:
            contenders[COMPILED] = loop(w, epochs, compile=True)
            torch._dynamo.reset()
            first = clock(contenders[COMPILED])
        times = settings.measure(contenders)
        out.append(row(CASE, work, BF16, times[BF16], PLAIN, times[PLAIN]))
        if not settings.quick:
            out += [row(CASE, work, f"{COMPILED}, first run", Timing(first, (first,)), PLAIN,
                        times[PLAIN]),
                    row(CASE, work, f"{COMPILED}, compiled", times[COMPILED], PLAIN,
                        times[PLAIN])]
    return out
