"""Runs the selected cases and gathers their rows into one report."""

from __future__ import annotations

from collections.abc import Iterable

import torch

from bench import evolution, frontend, inference, largedata, reference, startup, training
from bench.models import Workload, load_workload
from bench.report import Report
from bench.timing import Settings, machine

# the specs each case trains or runs (GPU: cases 1 and 2 again, on CUDA)
WORKLOADS = {"training": training.WORKLOADS, "inference": inference.WORKLOADS,
             "reference": reference.WORKLOADS, "gpu": training.WORKLOADS + inference.WORKLOADS}


def run(settings: Settings, cases: Iterable[str]) -> Report:
    """Every case asked for; the GPU case only when torch sees a GPU (else a note says so)."""
    cases = set(cases)
    torch.set_num_threads(settings.threads)
    report = Report(machine(settings.threads), {"repeats": settings.repeats,
                                                "warmup": settings.warmup,
                                                "quick": settings.quick,
                                                "cases": sorted(cases)})
    loaded = {n: load_workload(n, rows=64 if settings.quick else None)
              for n in sorted({n for c in cases for n in WORKLOADS.get(c, ())})}

    if "training" in cases:
        report.rows += training.rows(_pick(loaded, training.WORKLOADS), settings)
    if "inference" in cases:
        report.rows += inference.rows(_pick(loaded, inference.WORKLOADS), settings)
    if "reference" in cases:
        report.rows += reference.rows(_pick(loaded, reference.WORKLOADS), settings)
    if "frontend" in cases:
        rows, exponent = frontend.rows(settings)
        report.rows += rows
        report.notes.append(f"front end: check time grows as layers^{exponent:.2f} "
                            f"(log-log least squares over {frontend.fitted_sizes(settings)})")
    if "startup" in cases:
        report.rows += startup.rows(settings)
    if "evolution" in cases:
        report.rows += evolution.rows(settings)
    if "largedata" in cases:
        report.rows += largedata.rows(settings)
    if "gpu" in cases:
        _gpu(report, settings, loaded)
    return report


def _pick(loaded: dict[str, Workload], names: Iterable[str]) -> list[Workload]:
    return [loaded[n] for n in names]


def _gpu(report: Report, settings: Settings, loaded: dict[str, Workload]) -> None:
    """Cases 1 and 2 on CUDA, in their own table."""
    if not torch.cuda.is_available():
        report.notes.append("GPU: none here, so case 6 (training and inference on CUDA) did "
                            "not run")
        return
    report.gpu_rows += training.rows(_pick(loaded, training.WORKLOADS), settings, "cuda")
    try:
        report.gpu_rows += inference.rows(_pick(loaded, inference.WORKLOADS), settings, "cuda")
    except RuntimeError as e:  # onnxruntime without a working CUDA provider
        report.notes.append(f"GPU inference did not run: {e}")
