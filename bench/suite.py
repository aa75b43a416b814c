"""Runs the selected cases and gathers their rows into one report."""

from __future__ import annotations

from collections.abc import Iterable

import torch

from bench import frontend, inference, reference, startup, training
from bench.models import load_workload
from bench.report import Report
from bench.timing import Settings, machine


def run(settings: Settings, cases: Iterable[str]) -> Report:
    """Every case asked for; the GPU case only when torch sees a GPU (else a note says so)."""
    cases = set(cases)
    torch.set_num_threads(settings.threads)
    report = Report(machine(settings.threads), {"repeats": settings.repeats,
                                                "warmup": settings.warmup,
                                                "quick": settings.quick,
                                                "cases": sorted(cases)})
    names = {n for c, ns in (("training", training.WORKLOADS), ("inference", training.WORKLOADS),
                             ("reference", reference.WORKLOADS), ("gpu", training.WORKLOADS))
             if c in cases for n in ns}
    workloads = {n: load_workload(n, rows=64 if settings.quick else None)
                 for n in sorted(names)}

    def pick(ns: Iterable[str]) -> list:  # type: ignore[type-arg]
        return [workloads[n] for n in ns]

    if "training" in cases:
        report.rows += training.rows(pick(training.WORKLOADS), settings)
    if "inference" in cases:
        report.rows += inference.rows(pick(training.WORKLOADS), settings)
    if "reference" in cases:
        report.rows += reference.rows(pick(reference.WORKLOADS), settings)
    if "frontend" in cases:
        rows, exponent = frontend.rows(settings)
        report.rows += rows
        report.notes.append(f"front end: check time grows as layers^{exponent:.2f} "
                            f"(log-log least squares over {frontend.fitted_sizes(settings)})")
    if "startup" in cases:
        report.rows += startup.rows(settings)
    if "gpu" in cases:
        if torch.cuda.is_available():
            report.gpu_rows += training.rows(pick(training.WORKLOADS), settings, "cuda")
            report.gpu_rows += inference.rows(pick(training.WORKLOADS), settings, "cuda")
        else:
            report.notes.append("GPU: none here, so case 6 (training and inference on CUDA) "
                                "did not run")
    return report
