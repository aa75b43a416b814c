"""nndsl's ONNX graphs are no larger than what `torch.onnx.export` makes of the same network
written by hand in torch (nn.Linear, nn.Conv2d, nn.MaxPool2d, nn.LSTM, ...).

Each hand-written module gets nndsl's initial weights and must compute what nndsl computes
(so the comparison is between equivalent networks); both are exported at opset 17 with a dynamic
batch (and time) axis, and every node counts. torch's legacy TorchScript exporter is used
(`dynamo=False`): the default exporter needs onnxscript, which the project does not install.
Run with `pytest -s` to see the counts.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")

from torch import nn  # noqa: E402

from nndsl.check import random_inputs  # noqa: E402
from nndsl.export import export_onnx  # noqa: E402
from nndsl.initialize import initialize  # noqa: E402
from nndsl.interpreter import run  # noqa: E402
from nndsl.program import load  # noqa: E402

from .conftest import ROOT  # noqa: E402

OPSET = 17


class LastStep(nn.Module):
    """LSTM over the sequence, then the head on the last hidden state (lstm(sequences=false))."""

    def __init__(self, features: int, units: int, out: int) -> None:
        super().__init__()
        self.lstm = nn.LSTM(features, units, batch_first=True)
        self.head = nn.Linear(units, out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, (h, _) = self.lstm(x)
        return self.head(h[-1])


def mlp() -> nn.Module:
    """specs/digits_mlp.nn (its dropout is the identity at inference and is not exported)."""
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 128), nn.ReLU(), nn.Dropout(0.2),
                         nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, 10), nn.Softmax(-1))


def cnn() -> nn.Module:
    """specs/digits_cnn.nn: two conv(same)-relu-maxpool blocks, then a dense head."""
    return nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, 10),
                         nn.Softmax(-1))


@dataclass(frozen=True)
class Case:
    spec: str
    module: Callable[[], nn.Module]
    sizes: dict[str, int]


CASES = {
    "mlp": Case("digits_mlp.nn", mlp, {"batch": 3}),
    "cnn": Case("digits_cnn.nn", cnn, {"batch": 3}),
    "lstm": Case("sine_lstm.nn", lambda: LastStep(1, 16, 1), {"batch": 3, "time": 5}),
}


def hand_written(case: Case, weights: dict[str, np.ndarray], names: list[str]) -> nn.Module:
    """The torch module with nndsl's weights (same order and layout: dense [out, in], conv
    [out, in, kh, kw], LSTM gates (i, f, g, o) as torch stacks them)."""
    module = case.module().eval()
    params = list(module.parameters())
    assert [tuple(p.shape) for p in params] == [weights[n].shape for n in names]
    with torch.no_grad():
        for p, name in zip(params, names, strict=True):
            p.copy_(torch.from_numpy(weights[name]))
    return module


def torch_node_count(module: nn.Module, x: np.ndarray, dynamic: dict[int, str]) -> int:
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter announces its deprecation
        torch.onnx.export(module, (torch.from_numpy(x),), buffer, dynamo=False,
                          opset_version=OPSET, input_names=["x"], output_names=["y"],
                          dynamic_axes={"x": dynamic, "y": {0: "batch"}})
    model = onnx.load_from_string(buffer.getvalue())
    onnx.checker.check_model(model)
    return len(model.graph.node)


@pytest.mark.parametrize("name", sorted(CASES))
def test_no_more_nodes_than_torch_export(name: str) -> None:
    from nndsl.backends.numpy.prims import make_numpy_prims

    case = CASES[name]
    program, sources = load(ROOT / "specs" / case.spec)
    graph = program.models[0]
    weights = initialize(graph, 0)
    names = [w.name for w in graph.weights]
    module = hand_written(case, weights, names)
    (input_name, _), = graph.inputs
    x = random_inputs(graph, np.random.default_rng(0), case.sizes)[input_name]
    want = run(graph, make_numpy_prims(), {input_name: x}, weights).outputs(graph)[0]
    with torch.no_grad():
        got = module(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)  # really the same network

    dynamic = {0: "batch", 1: "time"} if "time" in case.sizes else {0: "batch"}
    theirs = torch_node_count(module, x, dynamic)
    ours = len(export_onnx(program, sources, graph, weights).graph.node)
    print(f"\n{name} ({case.spec}): nndsl {ours} nodes, torch.onnx.export {theirs} nodes")
    assert ours <= theirs, f"nndsl exports {ours} nodes, torch.onnx.export {theirs}"
