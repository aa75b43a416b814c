"""The torch engine applies the same update rules as the NumPy reference: after k steps on the
same spec, seed and data, the weights agree (float32: rtol 1e-5, atol 1e-6)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

from nndsl.cli import main  # noqa: E402
from nndsl.ops import names  # noqa: E402

from .conftest import ROOT  # noqa: E402

SPEC = """
model m {{
  input x: [batch, 2]
  h = x -> dense(8, init=normal(0, 0.5)) -> tanh
  out = h -> dense(1, init=normal(0, 0.5)) -> sigmoid
  output out
}}
train m {{
  data = builtin("xor"); target y: [batch, 1]; loss = mse(out, y)
  optimizer = {optimizer}; regularize = l2(1e-3); clip = norm(2.0); batch = 2
}}
"""
OPTIMIZERS = {
    "sgd": "sgd(lr=0.5, momentum=0.9, nesterov=true)", "nesterov": "nesterov(lr=0.3)",
    "adagrad": "adagrad(lr=0.1)", "adadelta": "adadelta()", "rmsprop": "rmsprop(lr=0.01)",
    "adam": "adam(lr=0.01)", "rprop": "rprop()", "adaptive_gains": "adaptive_gains(lr=0.1)",
}


def test_every_optimizer_is_covered() -> None:
    assert set(OPTIMIZERS) == set(names("optimizer"))


def _train(spec: Path, backend: str, run_dir: Path, steps: int = 6) -> dict[str, np.ndarray]:
    assert main(["train", str(spec), "--backend", backend, "--device", "cpu", "--steps",
                 str(steps), "--run-dir", str(run_dir), "--quiet"]) == 0
    return dict(np.load(run_dir / "weights.npz"))


# float32 to 1e-5; float64 (an f64 input makes the whole model f64) to 1e-8
PRECISIONS = {"f32": (1e-5, 1e-6), "f64": (1e-8, 1e-10)}


@pytest.mark.parametrize("precision", sorted(PRECISIONS))
@pytest.mark.parametrize("optimizer", sorted(OPTIMIZERS))
def test_torch_steps_equal_numpy_steps(optimizer: str, precision: str, write_spec,  # type: ignore[no-untyped-def]
                                       tmp_path: Path) -> None:
    text = SPEC.format(optimizer=OPTIMIZERS[optimizer])
    spec = write_spec(text.replace("[batch,", f"{precision}[batch,"))
    want = _train(spec, "numpy", tmp_path / "numpy")
    got = _train(spec, "torch", tmp_path / "torch")
    assert set(want) == set(got)
    rtol, atol = PRECISIONS[precision]
    for name in want:
        assert want[name].dtype == np.dtype("float64" if precision == "f64" else "float32")
        np.testing.assert_allclose(got[name], want[name], rtol=rtol, atol=atol, err_msg=name)


def test_torch_metrics_match_numpy(tmp_path: Path) -> None:
    spec = ROOT / "specs" / "xor.nn"
    _train(spec, "numpy", tmp_path / "numpy", steps=20)
    _train(spec, "torch", tmp_path / "torch", steps=20)
    numpy_rows = (tmp_path / "numpy" / "metrics.csv").read_text().splitlines()
    torch_rows = (tmp_path / "torch" / "metrics.csv").read_text().splitlines()
    assert numpy_rows[0] == torch_rows[0]
    for a, b in zip(numpy_rows[1:], torch_rows[1:], strict=True):
        left, right = a.split(","), b.split(",")
        assert left[:3] == right[:3]  # kind, step, epoch
        for x, y in zip(left[3:], right[3:], strict=True):
            if x.replace(".", "").replace("e-", "").isdigit():
                np.testing.assert_allclose(float(y), float(x), rtol=1e-5)
            else:
                assert x == y


def test_torch_training_is_reproducible(tmp_path: Path) -> None:
    spec = ROOT / "specs" / "digits_mlp.nn"
    _train(spec, "torch", tmp_path / "a", steps=15)
    _train(spec, "torch", tmp_path / "b", steps=15)
    assert (tmp_path / "a" / "metrics.csv").read_text() == \
        (tmp_path / "b" / "metrics.csv").read_text()


def test_trained_classifier_exports_a_checked_model_with_labels(tmp_path: Path) -> None:
    from nndsl.export import load_onnx, predict

    _train(ROOT / "specs" / "digits_mlp.nn", "torch", tmp_path, steps=10)
    model = load_onnx(tmp_path / "model.onnx")
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["class_labels"] == ",".join(str(i) for i in range(10))
    assert meta["model"] == "digits_mlp"
    (probs,) = predict(model, np.load(tmp_path / "heldout_x.npy")).values()
    assert probs.shape == (5, 10)
