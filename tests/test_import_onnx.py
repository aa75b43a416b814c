"""`nndsl import`: ONNX models back to specs and weights.

Two kinds of round trip. nndsl's own export of every shipped model imports to a spec whose
re-export is the same ONNX graph (node types, order, attributes, initializer values). A model
written by hand in torch and exported by torch.onnx imports to a spec whose NumPy forward, with
the imported weights, equals onnxruntime on the original file.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from nndsl.check import check_program
from nndsl.cli import main
from nndsl.errors import NndslError
from nndsl.export import export_onnx
from nndsl.importer import import_model, supported_ops
from nndsl.initialize import initialize
from nndsl.interpreter import run
from nndsl.program import load

SPECS = Path(__file__).resolve().parent.parent / "specs"


def exported_models() -> list[tuple[str, str]]:
    """(spec file, model) for every model of every shipped spec."""
    cases = []
    for spec in sorted(SPECS.glob("*.nn")):
        program, _ = load(spec)
        cases += [(spec.name, g.name) for g in program.models]
    return cases


def graph_signature(model: onnx.ModelProto) -> list[tuple]:
    """Everything that makes two graphs compute the same, except value names: per node its op
    type, attributes and, for each input, the initializer's values or 'computed'."""
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    nodes = []
    for n in model.graph.node:
        attrs = sorted((a.name, a.SerializeToString()) for a in n.attribute)
        ins = [(inits[i].dtype.str, inits[i].shape, inits[i].tobytes()) if i in inits
               else ("computed" if i else "") for i in n.input]
        nodes.append((n.op_type, attrs, ins))
    return nodes


def import_into(tmp_path: Path, model: onnx.ModelProto, name: str):  # type: ignore[no-untyped-def]
    """Import `model`, write the spec and its .npz, load the spec back (checked)."""
    imported = import_model(model, name, f"{name}.npz")
    np.savez(tmp_path / f"{name}.npz", **imported.weights)
    spec = tmp_path / f"{name}.nn"
    spec.write_text(imported.spec, encoding="utf-8")
    program, sources = load(spec)
    check_program(program)
    return imported, program, sources


@pytest.mark.parametrize(("spec", "model"), exported_models())
def test_own_export_round_trips_to_the_same_graph(spec: str, model: str, tmp_path: Path) -> None:
    program, sources = load(SPECS / spec)
    graph = program.model(model)
    weights = initialize(graph, seed=7)
    weights = {k: v + np.float32(0.01) * (i + 1) for i, (k, v) in enumerate(weights.items())}
    first = export_onnx(program, sources, graph, weights)
    _, program2, sources2 = import_into(tmp_path, first, model)
    graph2 = program2.models[0]
    second = export_onnx(program2, sources2, graph2, initialize(graph2))
    assert [n.op_type for n in second.graph.node] == [n.op_type for n in first.graph.node]
    assert graph_signature(second) == graph_signature(first)
    assert [o.name for o in second.graph.output] == [o.name for o in first.graph.output]


ALIASES = {"linear": ("identity",), "ramp": ("hardtanh",), "rrelu": ("leaky_relu",)}


def _weightless() -> list[str]:
    from nndsl.importer.generic import candidates

    return [d.name for d in candidates()]


@pytest.mark.parametrize(("op", "args"), [(name, "") for name in _weightless()] + [
    ("leaky_relu", "0.3"), ("elu", "alpha=0.7"), ("step", "at_zero=0.5"),
    ("sign", "at_zero=-1"), ("hardtanh", "low=-2, high=0.5"), ("swish", "beta=2.5"),
    ("gelu", "approximate=tanh"), ("softmax", "axis=1")])
def test_every_weightless_layer_round_trips(op: str, args: str, tmp_path: Path) -> None:
    """Each weightless catalog op, alone, read back from its own export as itself."""
    from nndsl.ops import OPS

    shape = "[batch, 6]" if OPS[op].kind == "activation" or op in ("neg", "flatten") \
        else "[batch, 2, 3, 4]"
    call = f"{op}({args})" if args else op
    text = f"model m {{\n  input x: {shape}\n  y = x -> {call}\n  output y\n}}\n"
    program, sources = load("m.nn", text)
    first = export_onnx(program, sources, program.models[0])
    imported, program2, sources2 = import_into(tmp_path, first, "m")
    second = export_onnx(program2, sources2, program2.models[0])
    assert graph_signature(second) == graph_signature(first)
    ops = [n.op for n in program2.models[0].nodes]  # one layer (or one with the same export:
    assert len(ops) == 1 and ops[0] in (op, *ALIASES.get(op, ())), ops  # ramp is a hardtanh)


# ---- torch-exported models ------------------------------------------------------------------


def torch_cases():  # type: ignore[no-untyped-def]
    """Hand-written torch modules: bench's three (MLP, CNN, LSTM) and more layer kinds."""
    import torch
    from torch import nn

    from bench.models import SineLSTM, WithSoftmax, digits_cnn, digits_mlp

    class Sequence(nn.Module):
        def __init__(self, kind: str, bidirectional: bool = False, layers: int = 1) -> None:
            super().__init__()
            self.rnn = getattr(nn, kind)(3, 5, batch_first=True, bidirectional=bidirectional,
                                         num_layers=layers)
            self.head = nn.Linear(5 * (1 + bidirectional), 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.rnn(x)[0])

    class Conv1d(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv1d(2, 4, 3, padding=1)
            self.fc = nn.Linear(8, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = nn.functional.avg_pool1d(nn.functional.leaky_relu(self.conv(x), 0.1), 2)
            h = nn.functional.elu(self.fc(h.view(h.size(0), -1)))
            return torch.log_softmax(h * 0.5, dim=1)

    class Conv2d(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(1, 3, 3, stride=2, padding=1)
            self.bn, self.act = nn.BatchNorm2d(3), nn.PReLU(3)
            self.fc = nn.Linear(3, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = nn.functional.relu6(self.act(self.bn(self.conv(x))))
            return torch.sigmoid(self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(h, 1),
                                                       1)))

    class Dense(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc, self.bn, self.out = nn.Linear(6, 5), nn.BatchNorm1d(5), nn.Linear(5, 2)
            self.drop = nn.Dropout(0.3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = torch.tanh(self.bn(self.fc(x)))
            return self.out(self.drop(h)) - nn.functional.softplus(self.out(h))

    image, sequence = (1, 8, 8), (7, 3)
    return [("mlp", WithSoftmax(digits_mlp()), image), ("cnn", WithSoftmax(digits_cnn()), image),
            ("lstm", SineLSTM(), (7, 1)), ("lstm_steps", Sequence("LSTM"), sequence),
            ("bilstm", Sequence("LSTM", True), sequence), ("gru", Sequence("GRU"), sequence),
            ("rnn", Sequence("RNN"), sequence), ("lstm2", Sequence("LSTM", layers=2), sequence),
            ("bigru2", Sequence("GRU", True, 2), sequence), ("conv1d", Conv1d(), (2, 4)),
            ("conv2d", Conv2d(), image), ("dense", Dense(), (6,))]


def torch_onnx(net, shape: tuple[int, ...]) -> onnx.ModelProto:  # type: ignore[no-untyped-def]
    """`net` (random weights and statistics, eval mode) exported as torch users do."""
    import torch

    torch.manual_seed(0)
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0.0, 0.3)
        for m in net.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.running_mean.normal_(0.0, 0.2)
                m.running_var.uniform_(0.5, 1.5)
    net.eval()
    axes = {0: "batch", 1: "time"} if len(shape) == 2 and shape[1] in (1, 3) else {0: "batch"}
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (torch.randn(2, *shape),), buffer, dynamo=False,
                          opset_version=17, input_names=["x"], output_names=["y"],
                          dynamic_axes={"x": axes, "y": {0: "batch"}})
    return onnx.load_from_string(buffer.getvalue())


def test_torch_exports_import_and_match_onnxruntime(tmp_path: Path) -> None:
    from nndsl.backends.numpy.prims import make_numpy_prims
    from nndsl.backends.onnx.runtime import session

    rng = np.random.default_rng(1)
    for name, net, shape in torch_cases():
        model = torch_onnx(net, shape)
        imported, program, _ = import_into(tmp_path, model, name)
        graph = program.models[0]
        x = rng.standard_normal((5, *shape)).astype(np.float32)
        want = session(model).run(None, {"x": x})[0]
        weights = initialize(graph)  # through from_npz: the written spec and .npz
        got = run(graph, make_numpy_prims(), {graph.inputs[0][0]: x}, weights).outputs(graph)[0]
        np.testing.assert_allclose(got, want, atol=1e-5, rtol=0, err_msg=name)
        assert set(weights) == set(imported.weights), name


def test_torch_decoder_and_transformer_layers_import(tmp_path: Path) -> None:
    """ConvTranspose2d, F.interpolate, LayerNorm and GELU as torch exports them."""
    import torch
    from nndsl.backends.numpy.prims import make_numpy_prims
    from nndsl.backends.onnx.runtime import session
    from torch import nn

    from nndsl.ops import OPS

    if not {"conv_transpose2d", "upsample", "layer_norm", "gelu"} <= set(OPS):
        pytest.skip("the decoder and transformer layers are not in this op catalog")

    class Decoder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.up = nn.ConvTranspose2d(2, 3, 4, stride=2, padding=1)
            self.norm = nn.LayerNorm(8)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = nn.functional.interpolate(self.up(x), scale_factor=2, mode="nearest")
            return nn.functional.gelu(self.norm(nn.functional.avg_pool2d(h, 2)))

    model = torch_onnx(Decoder(), (2, 4, 4))
    imported, program, _ = import_into(tmp_path, model, "decoder")
    assert "conv_transpose2d(3, kernel=4, stride=2, padding=1)" in imported.spec
    assert "upsample(2)" in imported.spec and "layer_norm" in imported.spec
    assert "gelu" in imported.spec
    graph = program.models[0]
    x = np.random.default_rng(2).standard_normal((3, 2, 4, 4)).astype(np.float32)
    got = run(graph, make_numpy_prims(), {"x": x}, initialize(graph)).outputs(graph)[0]
    np.testing.assert_allclose(got, session(model).run(None, {"x": x})[0], atol=1e-5)


def test_torch_lstm_reads_the_last_state_and_names_its_head(tmp_path: Path) -> None:
    from bench.models import SineLSTM

    imported, _, _ = import_into(tmp_path, torch_onnx(SineLSTM(), (7, 1)), "sine")
    assert "lstm_1: lstm(16, sequences=false) -> head: dense(1)" in imported.spec
    assert "input x: [batch, time, 1]" in imported.spec


# ---- refusals ------------------------------------------------------------------------------


def _model(nodes: list, inits: list | None = None, opset: int = 17) -> onnx.ModelProto:
    x = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["N", 4])
    y = helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)
    graph = helper.make_graph(nodes, "g", [x], [y], initializer=inits or [])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def test_an_unsupported_op_names_the_node_and_what_imports() -> None:
    model = _model([helper.make_node("Relu", ["x"], ["r"], name="act"),
                    helper.make_node("Sin", ["r"], ["y"], name="wave")])
    with pytest.raises(NndslError) as info:
        import_model(model, "m")
    assert "node 'wave' (Sin)" in info.value.message
    assert "Gemm" in info.value.hint and "LSTM" in info.value.hint
    assert supported_ops() == sorted(supported_ops()) and "Conv" in supported_ops()


@pytest.mark.parametrize(("nodes", "words"), [
    ([helper.make_node("MatMul", ["x", "x"], ["y"], name="mm")], "two computed tensors"),
    ([helper.make_node("Conv", ["x", "w"], ["y"], name="c", group=2)], "grouped"),
    ([helper.make_node("Transpose", ["x"], ["y"], name="t", perm=[1, 0])], "no nndsl layer"),
    ([helper.make_node("Add", ["x", "w"], ["y"], name="a")], "constant operand"),
])
def test_patterns_outside_the_subset_are_errors(nodes: list, words: str) -> None:
    w = numpy_helper.from_array(np.ones((4, 4, 3), np.float32), "w")
    with pytest.raises(NndslError) as info:
        import_model(_model(nodes, [w]), "m")
    assert words in info.value.message
    assert f"({nodes[0].op_type})" in info.value.message


def test_an_old_opset_is_refused() -> None:
    model = _model([helper.make_node("Relu", ["x"], ["y"])], opset=9)
    with pytest.raises(NndslError, match="opset 9"):
        import_model(model, "m")


def test_cli_writes_a_spec_that_checks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["compile", str(SPECS / "tied_autoencoder.nn"), "-o", "tied.onnx"]) == 0
    assert main(["import", "tied.onnx", "-o", "out/tied.nn"]) == 0
    out = capsys.readouterr().out
    assert "out/tied.npz" in out and "3 arrays" in out
    text = (tmp_path / "out" / "tied.nn").read_text()
    assert 'defaults { weights = from_npz("tied.npz") }' in text
    assert "dense(8, tied=enc)" in text
    assert main(["check", "out/tied.nn"]) == 0
    assert main(["fmt", "--check", "out/tied.nn"]) == 0  # written in the canonical layout
    assert main(["import", "missing.onnx", "-o", "x.nn"]) == 1
    assert "no such model file" in capsys.readouterr().err
