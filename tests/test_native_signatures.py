"""Every native form a backend registers has its op's signature (the same parameters, kinds
and defaults), so a native can stand in for the decomposition wherever the op is called."""

from __future__ import annotations

import inspect

import pytest

from nndsl.ops.registry import all_ops


def _loaded() -> None:
    pytest.importorskip("torch")
    pytest.importorskip("onnx")
    import nndsl.backends.onnx.emitter  # noqa: F401  (registers the ONNX forms)
    import nndsl.backends.torch.prims  # noqa: F401  (registers the torch forms)


def _natives() -> list[tuple[str, str, object, object]]:
    _loaded()
    return [(d.name, backend, d.compute, fn) for d in all_ops() for backend, fn in
            sorted(d.native.items())]


def test_the_backends_register_natives() -> None:
    backends = {backend for _, backend, _, _ in _natives()}
    assert backends == {"onnx", "torch"}


@pytest.mark.parametrize(("op", "backend", "compute", "native"), _natives() if __import__(
    "importlib").util.find_spec("torch") else [], ids=lambda v: v if isinstance(v, str) else "")
def test_a_native_has_its_ops_signature(op: str, backend: str, compute: object,
                                         native: object) -> None:
    want = list(inspect.signature(compute).parameters.values())  # type: ignore[arg-type]
    got = list(inspect.signature(native).parameters.values())  # type: ignore[arg-type]
    shape = [(p.name, p.kind, p.default) for p in want]
    assert [(p.name, p.kind, p.default) for p in got] == shape, f"{op} on {backend}"
