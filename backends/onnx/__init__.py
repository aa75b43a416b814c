"""The ONNX backend: export (an emitter table over value names) and onnxruntime. It trains
nothing; it registers itself so that tools listing the backends see it."""

from __future__ import annotations

from nndsl.backend import Backend, register_backend

register_backend(Backend("onnx", "ONNX export, run by onnxruntime (inference only)",
                         devices=("cpu", "cuda"), order=30))
