"""ONNX export of every spec: onnxruntime (and the ONNX reference evaluator) match NumPy.

Recurrent specs export too (one native ONNX RNN/LSTM/GRU node per layer, symbolic time axis);
tests/test_export_recurrent.py runs them at several sequence lengths.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime")

from nndsl.backends.numpy.prims import make_numpy_prims  # noqa: E402

from nndsl.check import random_inputs  # noqa: E402
from nndsl.cli import main  # noqa: E402
from nndsl.export import export_onnx, load_onnx, predict  # noqa: E402
from nndsl.initialize import initialize  # noqa: E402
from nndsl.interpreter import run  # noqa: E402
from nndsl.program import load  # noqa: E402

from .conftest import ROOT, SPECS  # noqa: E402

MODELS = [(path, graph.name) for path in SPECS for graph in load(path)[0].models]


@pytest.mark.parametrize(("path", "name"), MODELS, ids=[f"{p.stem}:{n}" for p, n in MODELS])
def test_export_matches_numpy(path: Path, name: str) -> None:
    import onnx
    from nndsl.backends.onnx.runtime import run_onnx
    from onnx.reference import ReferenceEvaluator

    program, sources = load(path)
    graph = next(g for g in program.models if g.name == name)
    weights = initialize(graph, 0)
    model = export_onnx(program, sources, graph, weights)
    onnx.checker.check_model(model, full_check=True)
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["model"] == name and len(meta["spec_sha256"]) == 64
    assert [i.name for i in model.graph.input] == [n for n, _ in graph.inputs]
    assert [o.name for o in model.graph.output] == list(graph.outputs)
    for batch in (1, 7):
        feeds = random_inputs(graph, np.random.default_rng(batch), {"batch": batch})
        want = run(graph, make_numpy_prims(), feeds, weights).outputs(graph)
        got = run_onnx(model, feeds)
        ref = ReferenceEvaluator(model).run(None, feeds)
        for w, g, r in zip(want, got, ref, strict=True):
            np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)
            np.testing.assert_allclose(r, w, rtol=1e-5, atol=1e-5)


def test_batch_dim_is_dynamic(tmp_path: Path) -> None:
    out = tmp_path / "m.onnx"
    assert main(["compile", str(ROOT / "specs" / "digits_mlp.nn"), "-o", str(out)]) == 0
    model = load_onnx(out)
    dim = model.graph.input[0].type.tensor_type.shape.dim[0]
    assert dim.dim_param == "batch"
    x = np.random.default_rng(0).random((13, 1, 8, 8), dtype=np.float32)
    (y,) = predict(model, x).values()
    assert y.shape == (13, 10)
    np.testing.assert_allclose(y.sum(axis=1), 1.0, rtol=1e-5)


def test_predict_prints_nothing_on_stderr(tmp_path: Path) -> None:
    model, x = tmp_path / "m.onnx", tmp_path / "x.npy"
    assert main(["compile", str(ROOT / "specs" / "xor.nn"), "-o", str(model)]) == 0
    np.save(x, np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float32))
    done = subprocess.run([sys.executable, "-m", "nndsl.cli", "predict", str(model),
                           "--input", str(x), "--output", str(tmp_path / "y.csv")],
                          capture_output=True, text=True)
    assert done.returncode == 0 and done.stderr == ""
    assert np.loadtxt(tmp_path / "y.csv", delimiter=",", skiprows=1).shape == (4,)  # a header


@pytest.mark.parametrize("content", [b"", b"not a model", b"\x08\x07garbage\xff"])
def test_corrupt_model_is_a_clear_error(tmp_path: Path, content: bytes,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    bad, x = tmp_path / "bad.onnx", tmp_path / "x.npy"
    bad.write_bytes(content)
    np.save(x, np.zeros((1, 2), dtype=np.float32))
    assert main(["predict", str(bad), "--input", str(x)]) == 1
    err = capsys.readouterr().err
    assert "not a valid ONNX model" in err and "Traceback" not in err


def test_wrong_feature_count_is_a_clear_error(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    model, x = tmp_path / "m.onnx", tmp_path / "x.npy"
    assert main(["compile", str(ROOT / "specs" / "xor.nn"), "-o", str(model)]) == 0
    np.save(x, np.zeros((3, 5), dtype=np.float32))
    assert main(["predict", str(model), "--input", str(x)]) == 1
    assert "needs size 2 on axis 1, got 5" in capsys.readouterr().err


@pytest.mark.parametrize("cut", [0.5, 0.9])
def test_a_truncated_model_is_a_clear_error(tmp_path: Path, cut: float,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    model, x = tmp_path / "m.onnx", tmp_path / "x.npy"
    assert main(["compile", str(ROOT / "specs" / "digits_mlp.nn"), "-o", str(model)]) == 0
    data = model.read_bytes()
    model.write_bytes(data[: int(len(data) * cut)])
    np.save(x, np.zeros((1, 1, 8, 8), dtype=np.float32))
    assert main(["predict", str(model), "--input", str(x)]) == 1
    err = capsys.readouterr().err
    assert "not a valid ONNX model" in err and "Traceback" not in err


@pytest.mark.parametrize("target", ["/proc/nndsl/y.npy", "/dev/full"])
def test_an_unwritable_prediction_output_is_a_clear_error(
        tmp_path: Path, target: str, capsys: pytest.CaptureFixture[str]) -> None:
    model, x = tmp_path / "m.onnx", tmp_path / "x.npy"
    assert main(["compile", str(ROOT / "specs" / "xor.nn"), "-o", str(model)]) == 0
    np.save(x, np.zeros((3, 2), dtype=np.float32))
    assert main(["predict", str(model), "--input", str(x), "--output", target,
                 "--format", "npy"]) == 1
    assert f"error: cannot write {target}:" in capsys.readouterr().err


def test_a_model_onnxruntime_cannot_run_is_a_clear_error(tmp_path: Path, write_spec,
                                                        capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    """onnxruntime has no float64 Conv kernel on the CPU: predict says so, with a way out."""
    spec = write_spec("model m { input x: f64[batch, 1, 4, 4]\n"
                      "  y = x -> conv2d(2, 3) -> flatten\n  output y }\n")
    model, x = tmp_path / "m.onnx", tmp_path / "x.npy"
    assert main(["compile", str(spec), "-o", str(model)]) == 0
    np.save(x, np.zeros((2, 1, 4, 4)))
    assert main(["predict", str(model), "--input", str(x)]) == 1
    err = capsys.readouterr().err
    assert "error: onnxruntime cannot run this model:" in err and "declare the inputs f32" in err
