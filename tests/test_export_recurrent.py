"""rnn, lstm and gru export as one native ONNX RNN/LSTM/GRU node (backends/onnx/recurrent.py).

The native form must equal the decomposition (the NumPy interpreter): every configuration
(rnn tanh/relu/sigmoid, lstm plain/peephole/coupled/both, gru with and without
linear_before_reset; each one- and bidirectional, with sequences true and false) and every spec
with a time axis is exported ONCE with a symbolic "time" dim, checked by onnx's full checker,
and run in onnxruntime (CPU) at batch 1 and 7 and sequence lengths 3 and 11: float32, rtol and
atol 1e-5. Weights are random (peepholes too: they start at zero), so every gate block is
exercised. onnx's reference evaluator cross-checks the mapping where it implements the op
(its RNN knows only Tanh).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("onnxruntime")

import onnx  # noqa: E402
from nndsl.backends.numpy.prims import make_numpy_prims  # noqa: E402
from nndsl.backends.onnx.emitter import OnnxEmitter, emitter_of, make_onnx_prims  # noqa: E402
from nndsl.backends.onnx.runtime import CPU, session  # noqa: E402
from onnx.reference import ReferenceEvaluator  # noqa: E402

from nndsl.check import random_inputs  # noqa: E402
from nndsl.errors import (
    NndslError,  # noqa: E402
    SourceMap,  # noqa: E402
)
from nndsl.export import export_onnx  # noqa: E402
from nndsl.interpreter import run  # noqa: E402
from nndsl.ir import NUMPY_DTYPE, Graph, Program  # noqa: E402
from nndsl.ops.registry import OPS  # noqa: E402
from nndsl.program import load  # noqa: E402

from .conftest import ROOT, SPECS  # noqa: E402

RECURRENT = {"rnn": "RNN", "lstm": "LSTM", "gru": "GRU"}
BATCHES, TIMES = (1, 7), (3, 11)
TOLERANCE = dict(rtol=1e-5, atol=1e-5)

VARIANTS = {
    "rnn": {f"{act}": f"activation={act}" for act in ("tanh", "relu", "sigmoid")},
    "lstm": {"plain": "", "peephole": "peephole=true", "coupled": "coupled=true",
             "peephole_coupled": "peephole=true, coupled=true"},
    "gru": {"lbr": "linear_before_reset=true", "no_lbr": "linear_before_reset=false"},
}
CONFIGS = [(op, variant, params, bi, seq) for op, variants in VARIANTS.items()
           for variant, params in variants.items()
           for bi in (False, True) for seq in (True, False)]
CONFIG_IDS = [f"{op}-{variant}-{'bi' if bi else 'uni'}-{'seq' if seq else 'last'}"
              for op, variant, _, bi, seq in CONFIGS]

TIME_SPECS = [path for path in SPECS for graph in load(path)[0].models
              if any("time" in ty.shape for _, ty in graph.inputs)]


def one_layer_spec(tmp_path: Path, call: str, time: str = "time", dtype: str = "") -> Path:
    path = tmp_path / "layer.nn"
    path.write_text(f"model m {{\n  input x: {dtype}[batch, {time}, 3]\n  y = x -> {call}\n"
                    "  output y\n}\n", encoding="utf-8")
    return path


def random_weights(graph: Graph, seed: int) -> dict[str, np.ndarray]:
    """Random weights of the declared shapes and dtypes (peepholes would start at zero)."""
    rng = np.random.default_rng(seed)
    return {w.name: (0.5 * rng.standard_normal(w.shape)).astype(NUMPY_DTYPE[w.dtype])
            for w in graph.weights}


def exported(path: Path, seed: int = 0) -> tuple[Program, SourceMap, Graph, dict[str, Any],
                                                   onnx.ModelProto]:
    program, sources = load(path)
    graph = program.models[0]
    weights = random_weights(graph, seed)
    model = export_onnx(program, sources, graph, weights)
    onnx.checker.check_model(model, full_check=True)
    return program, sources, graph, weights, model


def dims(value: onnx.ValueInfoProto) -> list[int | str]:
    return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]


def op_types(model: onnx.ModelProto) -> list[str]:
    return [n.op_type for n in model.graph.node]


def max_difference(graph: Graph, weights: dict[str, Any], model: onnx.ModelProto,
                   reference: bool = True) -> float:
    """Run one exported file at every batch size and sequence length against NumPy; the
    largest absolute difference seen (asserting the tolerance on the way)."""
    sess = session(model, CPU)
    worst = 0.0
    for batch in BATCHES:
        for time in TIMES:
            feeds = random_inputs(graph, np.random.default_rng(100 * batch + time),
                                  {"batch": batch, "time": time})
            want = run(graph, make_numpy_prims(), feeds, weights).outputs(graph)
            got = sess.run(None, feeds)
            ref = ReferenceEvaluator(model).run(None, feeds) if reference else got
            for w, g, r in zip(want, got, ref, strict=True):
                assert g.shape == w.shape and g.dtype == w.dtype
                np.testing.assert_allclose(g, w, **TOLERANCE, err_msg=f"{batch=} {time=}")
                np.testing.assert_allclose(r, w, **TOLERANCE, err_msg=f"reference {batch=}")
                worst = max(worst, float(np.abs(g - w).max()))
    return worst


@pytest.mark.parametrize(("op", "variant", "params", "bi", "seq"), CONFIGS, ids=CONFIG_IDS)
def test_native_matches_the_decomposition(tmp_path: Path, op: str, variant: str, params: str,
                                          bi: bool, seq: bool) -> None:
    args = ", ".join(a for a in ("4", params, f"bidirectional={str(bi).lower()}",
                                 f"sequences={str(seq).lower()}") if a)
    _, _, graph, weights, model = exported(one_layer_spec(tmp_path, f"{op}({args})"))
    assert dims(model.graph.input[0]) == ["batch", "time", 3]
    assert dims(model.graph.output[0]) == (["batch", "time", 4 * (1 + bi)] if seq
                                           else ["batch", 4 * (1 + bi)])
    # Transpose in, the op, Transpose and Reshape out: nothing per time step
    assert op_types(model) == ["Transpose", RECURRENT[op], "Transpose", "Reshape"]
    node = model.graph.node[1]
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    assert attrs["direction"] == (b"bidirectional" if bi else b"forward")
    assert "input_forget" not in attrs and "layout" not in attrs
    if op == "gru":
        assert attrs["linear_before_reset"] == (variant == "lbr")
    # the reference evaluator's RNN implements only Tanh
    assert max_difference(graph, weights, model,
                          reference=not (op == "rnn" and variant != "tanh")) < 1e-5


@pytest.mark.parametrize("path", TIME_SPECS, ids=[p.stem for p in TIME_SPECS])
def test_spec_exports_with_a_dynamic_time_axis(path: Path) -> None:
    _, _, graph, weights, model = exported(path)
    time_axes = [dims(i).index("time") for i in model.graph.input if "time" in dims(i)]
    assert time_axes == [1]
    layers = [n.op for n in graph.nodes if n.op in RECURRENT]
    types = op_types(model)
    assert sorted(t for t in types if t in RECURRENT.values()) == sorted(
        RECURRENT[op] for op in layers)
    assert "Slice" not in types  # no unrolled time steps
    if layers:
        assert len(types) <= 8 * len(layers) + 24  # a handful per layer, not hundreds
    max_difference(graph, weights, model)


def test_lstm_spec_is_a_handful_of_nodes() -> None:
    _, _, _, _, model = exported(ROOT / "specs" / "sine_lstm.nn")
    assert op_types(model) == ["Transpose", "LSTM", "Transpose", "Reshape", "Gemm"]
    # the weights were re-laid out at export time: ONNX's W, R, B, named after the layer
    inits = sorted(t.name.split(":")[0] for t in model.graph.initializer)
    assert [n for n in inits if n.startswith("lstm_1.")] == [
        "lstm_1.onnx_B", "lstm_1.onnx_R", "lstm_1.onnx_W"]


def test_fixed_time_axis_uses_the_native_too(tmp_path: Path) -> None:
    _, _, graph, weights, model = exported(
        one_layer_spec(tmp_path, "lstm(5, peephole=true, bidirectional=true)", time="6"))
    assert op_types(model).count("LSTM") == 1 and len(model.graph.node) == 4
    feeds = random_inputs(graph, np.random.default_rng(0), {"batch": 7})
    want = run(graph, make_numpy_prims(), feeds, weights).outputs(graph)
    np.testing.assert_allclose(session(model, CPU).run(None, feeds)[0], want[0], **TOLERANCE)


def test_rnn_activation_without_an_onnx_form(tmp_path: Path) -> None:
    """Over a symbolic time axis: a clear error; over a fixed one: the unrolled decomposition."""
    program, sources = load(one_layer_spec(tmp_path, "rnn(4, activation=elu)"))
    with pytest.raises(NndslError, match=r"rnn\(activation=elu\) has no ONNX RNN form"):
        export_onnx(program, sources, program.models[0])
    _, _, graph, weights, model = exported(
        one_layer_spec(tmp_path, "rnn(4, activation=elu)", time="5"))
    assert "RNN" not in op_types(model)
    feeds = random_inputs(graph, np.random.default_rng(0), {"batch": 3})
    want = run(graph, make_numpy_prims(), feeds, weights).outputs(graph)
    np.testing.assert_allclose(session(model, CPU).run(None, feeds)[0], want[0], **TOLERANCE)


def test_float64_with_a_fixed_time_axis_is_unrolled(tmp_path: Path) -> None:
    """onnxruntime has float32 kernels only: a fixed-length float64 layer takes the
    decomposition, which it runs; a symbolic one still gets the (standard) ONNX op."""
    _, _, graph, weights, model = exported(
        one_layer_spec(tmp_path, "gru(4)", time="5", dtype="f64"))
    assert "GRU" not in op_types(model)
    feeds = random_inputs(graph, np.random.default_rng(0), {"batch": 2})
    want = run(graph, make_numpy_prims(), feeds, weights).outputs(graph)
    got = session(model, CPU).run(None, feeds)[0]
    assert got.dtype == want[0].dtype == np.float64
    np.testing.assert_allclose(got, want[0], rtol=1e-9, atol=1e-12)
    _, _, _, _, model = exported(one_layer_spec(tmp_path, "gru(4)", dtype="f64"))
    assert "GRU" in op_types(model)


def test_weights_that_are_not_initializers() -> None:
    """Computed weights (here graph inputs) are re-laid out by ONNX nodes, same result."""
    rng = np.random.default_rng(3)
    units, features = 4, 3
    shapes = {"weight_ih": (3 * units, features), "weight_hh": (3 * units, units),
              "bias_ih": (3 * units,), "bias_hh": (3 * units,), "weight_peephole": (2 * units,)}
    shapes.update({f"{k}_reverse": s for k, s in shapes.items()})
    arrays = {k: (0.5 * rng.standard_normal(s)).astype(np.float32) for k, s in shapes.items()}
    x = rng.standard_normal((5, 6, features)).astype(np.float32)
    params = dict(units=units, bidirectional=True, peephole=True, coupled=True)
    em = OnnxEmitter()
    P = make_onnx_prims(em)
    names = {k: em.add_input(k, "f32", s) for k, s in shapes.items()}
    out = OPS["lstm"].native["onnx"](P, em.add_input("x", "f32", ("batch", "time", features)),
                                     **params, **names)
    model = em.build_model([(out, "y")])
    assert {"Neg", "Concat", "LSTM"} <= set(op_types(model))
    got = session(model, CPU).run(None, {"x": x, **arrays})[0]
    want = OPS["lstm"].compute(make_numpy_prims(), x, **params, **arrays)
    np.testing.assert_allclose(got, want, **TOLERANCE)


def test_emitter_of_needs_an_onnx_table() -> None:
    em = OnnxEmitter()
    assert emitter_of(make_onnx_prims(em)) is em
    with pytest.raises(TypeError, match="not an ONNX primitive table"):
        emitter_of(make_numpy_prims())


def test_op_catalog_does_not_import_onnx() -> None:
    """The backend registers its native forms itself: loading every op imports no onnx, and
    the ONNX forms appear once the emitter is loaded."""
    code = ("import sys, nndsl, nndsl.ops\n"
            "from nndsl.ops.registry import OPS\n"
            "assert not any('onnx' in OPS[n].native for n in ('rnn', 'lstm', 'gru'))\n"
            "assert 'onnx' not in sys.modules and 'onnxruntime' not in sys.modules\n"
            "import nndsl.backends.onnx.emitter\n"
            "assert all(callable(OPS[n].native['onnx']) for n in ('rnn', 'lstm', 'gru'))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_compile_and_predict_at_any_sequence_length(tmp_path: Path) -> None:
    """The user-facing path: `nndsl compile` writes one file that predicts any length."""
    from nndsl.cli import main
    from nndsl.export import load_onnx, predict

    out = tmp_path / "sine_lstm.onnx"
    assert main(["compile", str(ROOT / "specs" / "sine_lstm.nn"), "-o", str(out)]) == 0
    model = load_onnx(out)
    assert dims(model.graph.input[0]) == ["batch", "time", 1]
    for batch, time in ((1, 2), (5, 40)):
        x = np.random.default_rng(time).standard_normal((batch, time, 1)).astype(np.float32)
        (y,) = predict(model, x).values()
        assert y.shape == (batch, 1) and np.isfinite(y).all()
