"""Case 12, the torch step options on the CPU: `compile = true` (torch.compile of the step
plan) and `precision = bf16` (autocast) against the plain float32 step, on the training loop
(per-epoch metrics, no files) of digits_mlp and digits_cnn. The GPU case (6) runs the same rows
on CUDA, with `precision = fp16` (a loss scale) as well.

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
PLAIN, BF16, FP16 = "f32, not compiled", "precision = bf16", "precision = fp16"
COMPILED = "compile = true"


def loop(w: Workload, epochs: int, device: str = "cpu", **options: Any) -> Callable[[], object]:
    """`epochs` epochs of the spec's training loop on the torch engine on `device` with
    `options` (compile=, precision=) set in the train block."""
    from nndsl.backends.torch.engine import TorchEngine

    from nndsl.training.run import train_in_memory

    train = replace(w.train, settings=(*w.train.settings, *options.items()))
    return lambda: train_in_memory(w.program, train, TorchEngine(device), w.data,
                                   {w.graph.name: dict(w.weights)}, epochs)


def rows(workloads: list[Workload], settings: Settings, device: str = "cpu") -> list[Row]:
    """bf16 (and on CUDA fp16) and compile against the float32 step on `device`."""
    import torch

    epochs = 1 if settings.quick else 3
    out = []
    for w in workloads:
        work = f"{w.name} {epochs} ep" + ("" if device == "cpu" else f", {device}")
        contenders = {PLAIN: loop(w, epochs, device),
                      BF16: loop(w, epochs, device, precision="bf16")}
        if device != "cpu":
            contenders[FP16] = loop(w, epochs, device, precision="fp16")
        if not settings.quick:
            contenders[COMPILED] = loop(w, epochs, device, compile=True)
            torch._dynamo.reset()
            first = clock(contenders[COMPILED])
        times = settings.measure(contenders)
        out += [row(CASE, work, name, times[name], PLAIN, times[PLAIN])
                for name in (BF16, FP16) if name in times]
        if not settings.quick:
            out += [row(CASE, work, f"{COMPILED}, first run", Timing(first, (first,)), PLAIN,
                        times[PLAIN]),
                    row(CASE, work, f"{COMPILED}, compiled", times[COMPILED], PLAIN,
                        times[PLAIN])]
    return out
