"""Running exported models in onnxruntime, quietly and on a device that really works.

onnxruntime-gpu lists CUDAExecutionProvider whenever the package is installed, even with no GPU
or driver; asking for it then prints C++ errors and falls back. So CUDA is used only when the
driver reports a device and a probe session really runs on it; otherwise the CPU provider.
"""

from __future__ import annotations

import ctypes
import functools
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort

CPU = ["CPUExecutionProvider"]
_STATE = ort.capi.onnxruntime_pybind11_state
# What onnxruntime raises for a model it cannot load or run (its own classes, none of them
# a RuntimeError), for callers that turn it into a user-facing error.
ORT_ERRORS: tuple[type[Exception], ...] = (
    _STATE.Fail, _STATE.InvalidArgument, _STATE.InvalidGraph, _STATE.NotImplemented,
    _STATE.RuntimeException, _STATE.NoSuchFile, _STATE.InvalidProtobuf)


def _cuda_device_count() -> int:
    """Devices the CUDA driver sees (0 without a driver); asks libcuda directly, no torch."""
    try:
        lib = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return 0
    count = ctypes.c_int(0)
    if lib.cuInit(0) != 0 or lib.cuDeviceGetCount(ctypes.byref(count)) != 0:
        return 0
    return count.value


@functools.cache
def default_providers() -> tuple[str, ...]:
    """CUDA then CPU when CUDA demonstrably works here, else CPU alone."""
    if "CUDAExecutionProvider" not in ort.get_available_providers() or not _cuda_device_count():
        return tuple(CPU)
    from onnx import TensorProto, helper

    probe = helper.make_model(
        helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "probe",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])]),
        opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    ort.set_default_logger_severity(4)  # a failed CUDA load is reported, not printed
    try:
        options = ort.SessionOptions()
        options.log_severity_level = 4
        session = ort.InferenceSession(probe.SerializeToString(), options,
                                       providers=["CUDAExecutionProvider", *CPU])
        works = session.get_providers()[0] == "CUDAExecutionProvider"
    except Exception:  # any failure to start CUDA means: use the CPU
        works = False
    finally:
        ort.set_default_logger_severity(2)
    return ("CUDAExecutionProvider", *CPU) if works else tuple(CPU)


def session(model: onnx.ModelProto | bytes | str,
            providers: Sequence[str] | None = None) -> ort.InferenceSession:
    """An inference session (warnings silenced: unused-initializer notes are not errors)."""
    options = ort.SessionOptions()
    options.log_severity_level = 3
    source = model.SerializeToString() if isinstance(model, onnx.ModelProto) else model
    return ort.InferenceSession(source, options,
                                providers=list(providers or default_providers()))


def run_onnx(model: onnx.ModelProto | bytes | str, feeds: Mapping[str, Any],
             providers: Sequence[str] | None = None) -> list[np.ndarray]:
    """Run `model` once on `feeds` (name -> array) and return its outputs in order."""
    sess = session(model, providers)
    return sess.run(None, {name: np.asarray(value) for name, value in feeds.items()})
