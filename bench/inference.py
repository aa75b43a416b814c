"""Case 2, inference: onnxruntime on nndsl's export against torch eager and against onnxruntime
on `torch.onnx.export` (the legacy TorchScript exporter, dynamo=False) of the hand-written twin,
with the same weights, at batch 1 and 256.

onnxruntime gets NumPy arrays and returns NumPy arrays; torch eager gets a tensor already on
the device, under inference_mode, so the copies onnxruntime makes count against it. Both
onnxruntime sessions use the same options (intra-op threads as pinned, one inter-op thread, all
graph optimisations).
"""

from __future__ import annotations

import io
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import onnxruntime as ort
import torch

from bench.models import Workload
from bench.report import Row, ratio_at_least, ratio_at_most, row
from bench.timing import Settings, Timing
from nndsl.errors import SourceMap
from nndsl.export import export_onnx

WORKLOADS = ("digits_mlp", "digits_cnn", "sine_lstm")
BATCHES = (1, 256)
# "No slower than torch's export": the two graphs have the same ONNX ops node for node, and
# the same session runs them within a few percent of each other from run to run.
SAME = 1.05
OURS, EAGER, THEIRS = "nndsl export (ORT)", "torch eager", "torch.onnx.export (ORT)"


def session(model: bytes, threads: int, device: str) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    options.log_severity_level = 3
    providers = ["CPUExecutionProvider"]
    if device == "cuda":
        providers.insert(0, "CUDAExecutionProvider")
    sess = ort.InferenceSession(model, options, providers=providers)
    if sess.get_providers()[0] != providers[0]:  # onnxruntime falls back to the CPU quietly
        raise RuntimeError(f"onnxruntime cannot run on {device} here "
                           f"(providers: {', '.join(sess.get_providers())})")
    return sess


def nndsl_model(w: Workload) -> bytes:
    return export_onnx(w.program, SourceMap(), w.graph, w.weights).SerializeToString()


def torch_model(module: torch.nn.Module, example: torch.Tensor) -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings():  # its LSTM batch-size advice does not apply: h0 is zeros
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (example,), buffer, dynamo=False, input_names=["x"],
                          output_names=["y"], dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}},
                          opset_version=17)
    return buffer.getvalue()


def calls_for(fn: Callable[[], Any], settings: Settings, seconds: float = 0.1) -> int:
    """How many calls make one repeat last about `seconds` (one call in quick mode)."""
    if settings.quick:
        return 1
    fn()
    start = time.perf_counter()
    fn()
    once = max(time.perf_counter() - start, 1e-7)
    return int(min(max(seconds / once, 1), 20_000))


def rows(workloads: list[Workload], settings: Settings, device: str = "cpu") -> list[Row]:
    out: list[Row] = []
    for w in workloads:
        module = w.inference_module(device)
        example = torch.as_tensor(w.inputs(2), device=device)
        ours = session(nndsl_model(w), settings.threads, device)
        theirs = session(torch_model(module, example), settings.threads, device)
        for batch in (2,) if settings.quick else BATCHES:
            times = _measure(w, module, ours, theirs, batch, settings, device)
            out += _rows(w.name, batch, times, device)
    return out


def _measure(w: Workload, module: torch.nn.Module, ours: ort.InferenceSession,
             theirs: ort.InferenceSession, batch: int, settings: Settings,
             device: str) -> dict[str, Timing]:
    """Seconds per call of each contender on `batch` rows."""
    x = w.inputs(batch)
    xt = torch.as_tensor(x, device=device)
    feed = {w.graph.inputs[0][0]: x}

    def eager() -> Any:
        with torch.inference_mode():
            return module(xt)

    contenders = {OURS: lambda: ours.run(None, feed),
                  THEIRS: lambda: theirs.run(None, {"x": x}), EAGER: eager}
    return settings.per_call(contenders, calls_for(contenders[OURS], settings), device)


def _rows(name: str, batch: int, t: dict[str, Timing], device: str) -> list[Row]:
    case = "2 inference" if device == "cpu" else f"6 inference ({device})"
    workload = f"{name} batch {batch}"
    eager_goal = (">= 2.0x", ratio_at_least(2.0)) if batch == 1 else ("", None)
    return [row(case, workload, OURS, t[OURS], THEIRS, t[THEIRS], f"<= {SAME:.2f}x",
                ratio_at_most(SAME)),
            row(case, workload, EAGER, t[EAGER], OURS, t[OURS], *eager_goal)]


def check_outputs(w: Workload) -> float:
    """Largest difference between the two exports on a few rows (a sanity check, not timed)."""
    module = w.inference_module()
    x = w.inputs(5)
    a = session(nndsl_model(w), 1, "cpu").run(None, {w.graph.inputs[0][0]: x})[0]
    b = session(torch_model(module, torch.as_tensor(x)), 1, "cpu").run(None, {"x": x})[0]
    return float(np.max(np.abs(a - b)))
