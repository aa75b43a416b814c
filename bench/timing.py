"""Side-by-side timing: every contender of a row is warmed up, then the contenders take turns
(A, B, C, A, B, C, ...) so that load from other processes falls on all of them alike, and each
figure is the median of its repeats."""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                    "NUMEXPR_NUM_THREADS", "VECLIB_MAXIMUM_THREADS")


@dataclass(frozen=True)
class Timing:
    """Seconds per repeat (or another amount per repeat, such as peak memory): the median and
    every run, in the order they ran."""

    median: float
    runs: tuple[float, ...]

    def as_json(self, unit: str = "s") -> dict[str, Any]:
        return {f"median_{unit}": self.median, f"runs_{unit}": list(self.runs)}

    def scaled(self, factor: float) -> Timing:
        return Timing(self.median * factor, tuple(r * factor for r in self.runs))


@dataclass(frozen=True)
class Settings:
    """How hard to measure: `quick` is the smoke test's one repeat on tiny sizes."""

    quick: bool = False
    repeats: int = 5
    warmup: int = 1
    threads: int = 1

    def measure(self, contenders: Mapping[str, Callable[[], Any]]) -> dict[str, Timing]:
        return side_by_side(contenders, self.repeats, self.warmup)

    def per_call(self, contenders: Mapping[str, Callable[[], Any]], calls: int,
                 device: str = "cpu") -> dict[str, Timing]:
        """Seconds per call, for calls too short to time one by one: each repeat makes
        `calls` calls (and waits for the GPU once, at its end)."""
        times = self.measure({k: synced(_repeated(fn, calls), device)
                              for k, fn in contenders.items()})
        return {k: t.scaled(1 / calls) for k, t in times.items()}


def clock(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def side_by_side(contenders: Mapping[str, Callable[[], Any]], repeats: int,
                 warmup: int = 1) -> dict[str, Timing]:
    """Median seconds of each contender over `repeats` interleaved runs, after `warmup` each.
    Each repeat starts one contender further on, so that none always runs right after the same
    one: a run that follows another framework's finds the caches filled with that one's data
    (after Keras's and Lightning's fits, `nndsl train` of sine_lstm took 10-15 ms longer)."""
    for fn in contenders.values():
        for _ in range(warmup):
            fn()
    runs: dict[str, list[float]] = {name: [] for name in contenders}
    order = list(contenders.items())
    for repeat in range(repeats):
        start = repeat % len(order)
        for name, fn in order[start:] + order[:start]:
            runs[name].append(clock(fn))
    return {name: Timing(statistics.median(r), tuple(r)) for name, r in runs.items()}


def _repeated(fn: Callable[[], Any], calls: int) -> Callable[[], None]:
    def run() -> None:
        for _ in range(calls):
            fn()

    return run


def synced(fn: Callable[[], Any], device: str) -> Callable[[], Any]:
    """`fn`, then wait for the GPU to finish what it queued (a no-op on the CPU)."""
    if device == "cpu":
        return fn
    import torch

    def run() -> Any:
        out = fn()
        torch.cuda.synchronize()
        return out

    return run


def pin_threads(threads: int) -> None:
    """The same thread count for every library, set before NumPy or torch is imported: NumPy's
    BLAS and torch's OpenMP pool otherwise both size themselves to the machine and, in one
    process, contend for the same cores (a 10x slowdown was measured)."""
    for name in THREAD_VARIABLES:
        os.environ[name] = str(threads)


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine(threads: int) -> dict[str, Any]:
    """What the figures were measured on: CPU, cores, GPU (if torch sees one), versions (and
    those of the peers installed). matplotlib's is read, not imported: it draws the plots in
    the picture worker, and its version moves `nndsl train`'s end (constraints.txt)."""
    from importlib.metadata import version

    import numpy as np
    import onnxruntime as ort
    import torch

    from bench.peers import installed

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"cpu": cpu_model(), "cores": os.cpu_count(), "threads": threads, "gpu": gpu,
            "python": platform.python_version(), "numpy": np.__version__,
            "torch": torch.__version__, "onnxruntime": ort.__version__,
            "matplotlib": version("matplotlib"), "peers": installed()}
