"""Runs the selected cases and gathers their rows into one report."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch

from bench import (
    diagnostics,
    evalmemory,
    evolution,
    frontend,
    inference,
    largedata,
    outofcore,
    parallel,
    reference,
    startup,
    step_options,
    training,
    truncation,
)
from bench.models import Workload, load_workload
from bench.report import Report
from bench.timing import Settings, machine


@dataclass(frozen=True)
class Case:
    """One benchmark case: the specs it needs loaded, and what measures it."""

    workloads: tuple[str, ...]
    rows: Callable[[Report, Settings, list[Workload]], None]


def _rows_of(module: Any) -> Callable[[Report, Settings, list[Workload]], None]:
    """A case whose module measures the loaded specs: `module.rows(workloads, settings)`."""
    return lambda report, settings, loaded: report.rows.extend(module.rows(loaded, settings))


def _settings_only(module: Any) -> Callable[[Report, Settings, list[Workload]], None]:
    """A case that needs no loaded spec: `module.rows(settings)`."""
    return lambda report, settings, loaded: report.rows.extend(module.rows(settings))


def _frontend(report: Report, settings: Settings, loaded: list[Workload]) -> None:
    rows, exponent = frontend.rows(settings)
    report.rows += rows
    report.notes.append(f"front end: check time grows as layers^{exponent:.2f} "
                        f"(log-log least squares over {frontend.fitted_sizes(settings)})")


# The registry of cases, in the order they run and print (python -m bench --cases NAME,...).
CASES: dict[str, Case] = {
    "training": Case(training.WORKLOADS, _rows_of(training)),
    "inference": Case(inference.WORKLOADS, _rows_of(inference)),
    "reference": Case(reference.WORKLOADS, _rows_of(reference)),
    "frontend": Case((), _frontend),
    "startup": Case((), _settings_only(startup)),
    "evolution": Case((), _settings_only(evolution)),
    "diagnostics": Case(diagnostics.WORKLOADS, _rows_of(diagnostics)),
    "largedata": Case((), _settings_only(largedata)),
    "truncation": Case((), _settings_only(truncation)),
    "stepoptions": Case(step_options.WORKLOADS, _rows_of(step_options)),
    "parallel": Case((), _settings_only(parallel)),
    "outofcore": Case((), _settings_only(outofcore)),
    "evalmemory": Case((), _settings_only(evalmemory)),
    "gpu": Case(training.WORKLOADS + inference.WORKLOADS + step_options.WORKLOADS,
                lambda report, settings, loaded: _gpu(report, settings, loaded)),
}


def run(settings: Settings, cases: Iterable[str]) -> Report:
    """Every case asked for; the GPU case only when torch sees a GPU (else a note says so)."""
    cases = set(cases)
    torch.set_num_threads(settings.threads)
    report = Report(machine(settings.threads), {"repeats": settings.repeats,
                                                "warmup": settings.warmup,
                                                "quick": settings.quick,
                                                "cases": sorted(cases)})
    names = sorted({n for c in cases for n in CASES[c].workloads})
    loaded = {n: load_workload(n, rows=64 if settings.quick else None) for n in names}
    for name, case in CASES.items():
        if name in cases:
            case.rows(report, settings, [loaded[n] for n in case.workloads])
    return report


def _gpu(report: Report, settings: Settings, loaded: list[Workload]) -> None:
    """Cases 1, 2 and 12 (bf16, fp16, compile) on CUDA, in their own table."""
    if not torch.cuda.is_available():
        report.notes.append("GPU: none here, so case 6 (training, inference, bf16/fp16 and "
                            "compile on CUDA) did not run")
        return
    by_name = {w.name: w for w in loaded}
    report.gpu_rows += training.rows([by_name[n] for n in training.WORKLOADS], settings, "cuda")
    report.gpu_rows += step_options.rows([by_name[n] for n in step_options.WORKLOADS], settings,
                                         "cuda")
    try:
        report.gpu_rows += inference.rows([by_name[n] for n in inference.WORKLOADS], settings,
                                          "cuda")
    except RuntimeError as e:  # onnxruntime without a working CUDA provider
        report.notes.append(f"GPU inference did not run: {e}")
