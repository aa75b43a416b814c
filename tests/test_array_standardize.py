"""`standardize=true` on npz and npy data, as on csv: each model input rescaled per feature by
the training rows' mean and standard deviation, kept in data.json and folded into model.onnx
(so it takes raw features); an array streamed from disk is refused, since standardising it
would load it whole."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from nndsl.cli import main

SPEC = """model m {{
  input x: [batch, 3]
  probs = x -> dense(8) -> tanh -> dense(2) -> softmax
  output probs
}}

train m {{
  data = {data}
  target y: [batch]
  loss = cross_entropy(probs, y)
  optimizer = adam(lr=0.05)
  metrics = [accuracy]
  split = 0.25
  epochs = 5
  seed = 2
}}
"""
SCALE = np.array([1000.0, 0.01, 5.0])  # features on very different scales
SHIFT = np.array([5000.0, -3.0, 40.0])


def features(rows: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((rows, 3))
    y = (z[:, 0] + z[:, 1] - z[:, 2] > 0).astype(np.int64)
    return (z * SCALE + SHIFT).astype(np.float32), y


def write(folder: Path, kind: str) -> Path:
    x, y = features(120, 0)
    if kind == "npz":
        np.savez(folder / "d.npz", x=x, y=y)
        data = 'npz("d.npz", standardize=true)'
    else:
        np.save(folder / "x.npy", x)
        np.save(folder / "y.npy", y)
        data = 'npy(x="x.npy", y="y.npy", standardize=true)'
    (folder / "m.nn").write_text(SPEC.format(data=data), encoding="utf-8")
    return folder / "m.nn"


@pytest.mark.parametrize("kind", ["npz", "npy"])
def test_the_training_rows_statistics_are_kept_and_folded_into_the_export(
        tmp_path: Path, kind: str, capsys: pytest.CaptureFixture[str]) -> None:
    import onnxruntime as ort

    from nndsl.data.dataset import load_dataset
    from nndsl.program import load
    from nndsl.training.run import plan

    spec_file = write(tmp_path, kind)
    program, _ = load(spec_file)
    spec = program.trains[0]
    data = load_dataset(plan(program, spec).data, [program.model("m")], spec, tmp_path)
    mean, std = (np.asarray(v) for v in data.binding.scale["x"])
    raw = data.binding.raw("x", data.train["x"]).astype(np.float64)
    np.testing.assert_allclose(raw.mean(axis=0), mean, rtol=1e-5)
    np.testing.assert_allclose(raw.std(axis=0), std, rtol=1e-4)
    np.testing.assert_allclose(data.train["x"].std(axis=0), 1.0, rtol=1e-4)

    run = tmp_path / "run"
    assert main(["train", str(spec_file), "--backend", "numpy", "--quiet", "--run-dir",
                 str(run)]) == 0, capsys.readouterr().err
    stored = json.loads((run / "data.json").read_text(encoding="utf-8"))
    assert stored["standardize"]["x"]["mean"] == pytest.approx(mean.tolist())
    model = onnx.load(str(run / "model.onnx"))
    assert [n.op_type for n in model.graph.node][:2] == ["Sub", "Div"]
    x, _ = features(16, 1)  # raw, unseen rows
    session = ort.InferenceSession(model.SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    got = session.run(None, {"x": x})[0]
    from nndsl.backends.numpy.engine import NumpyEngine

    with np.load(run / "weights.npz") as archive:
        weights = {k: archive[k] for k in archive.files}
    want = NumpyEngine().predict(program.model("m"), {"x": ((x - mean) / std).astype(np.float32)},
                                 weights)["probs"]
    # float32 features in the thousands: the subtraction costs a few ulps either way
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    assert float(np.load(run / "heldout_x.npy").mean()) > 100  # raw units, not standardised
    line = [r for r in (run / "metrics.csv").read_text().splitlines() if r][-1]
    assert float(line.split(",")[-1]) > 0.8  # val_accuracy: trainable once rescaled


def test_an_array_read_from_disk_cannot_be_standardised(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    spec_file = write(tmp_path, "npy")
    monkeypatch.setenv("NNDSL_STREAM_BYTES", "1024")  # every array here is streamed
    assert main(["train", str(spec_file), "--backend", "numpy", "--quiet", "--run-dir",
                 str(tmp_path / "run")]) == 1
    err = capsys.readouterr().err
    assert "m.nn:8:10: error: standardize = true would load input 'x'" in err, err
    assert "standardise the file once" in err
