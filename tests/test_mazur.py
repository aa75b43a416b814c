"""Mazur's step-by-step backpropagation example, whole (specs/mazur.nn): one bias shared by the
units of a layer (`dense(shared_bias=true)`), single frozen weights (`freeze = [h.bias]`), and
two updates that reproduce the worked numbers on NumPy and torch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from nndsl.cli import main
from nndsl.initialize import initialize
from nndsl.program import load

from .conftest import ROOT
from .trained import train_run

SPEC = ROOT / "specs" / "mazur.nn"
X, T = np.array([0.05, 0.10]), np.array([0.01, 0.99])
H0 = np.array([[0.15, 0.20], [0.25, 0.30]])  # w1 w2 / w3 w4, [out, in]
O0 = np.array([[0.40, 0.45], [0.50, 0.55]])  # w5 w6 / w7 w8
# The worked example's numbers: the error before the first update, the weights after it.
E1 = 0.298371109
H1 = np.array([[0.149780716, 0.19956143], [0.24975114, 0.29950229]])
O1 = np.array([[0.35891648, 0.408666186], [0.511301270, 0.561370121]])


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def by_hand(h: np.ndarray, o: np.ndarray, lr: float = 0.5) -> tuple[float, np.ndarray,
                                                                    np.ndarray]:
    """One update written out with the delta rules (biases 0.35 and 0.60, not updated)."""
    out_h = _sigmoid(h @ X + 0.35)
    out_o = _sigmoid(o @ out_h + 0.60)
    delta_o = (out_o - T) * out_o * (1 - out_o)
    delta_h = (o.T @ delta_o) * out_h * (1 - out_h)  # the old w5..w8, as the example says
    return 0.5 * float(np.sum((T - out_o) ** 2)), h - lr * np.outer(delta_h, X), \
        o - lr * np.outer(delta_o, out_h)


def _train(tmp_path: Path, backend: str, epochs: int) -> tuple[dict[str, np.ndarray],
                                                                 list[float]]:
    return train_run(SPEC, tmp_path / f"{backend}{epochs}", "--backend", backend, "--epochs",
                     str(epochs))


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_two_steps_reproduce_the_worked_example(tmp_path: Path, backend: str) -> None:
    if backend == "torch":
        pytest.importorskip("torch")
    one, losses = _train(tmp_path, backend, 1)
    assert losses[0] == pytest.approx(E1, abs=1e-9)
    np.testing.assert_allclose(one["h.weight"], H1, atol=1e-8)
    np.testing.assert_allclose(one["o.weight"], O1, atol=1e-8)
    two, losses = _train(tmp_path, backend, 2)
    e2, h2, o2 = by_hand(*by_hand(H0, O0)[1:])
    assert losses == pytest.approx([E1, e2], abs=1e-9)
    np.testing.assert_allclose(two["h.weight"], h2, atol=1e-12)
    np.testing.assert_allclose(two["o.weight"], o2, atol=1e-12)
    for name, value in (("h.bias", 0.35), ("o.bias", 0.60)):  # shared, [1], never updated
        np.testing.assert_array_equal(two[name], [value])


def test_the_hand_computation_is_the_worked_example() -> None:
    e1, h1, o1 = by_hand(H0, O0)
    assert e1 == pytest.approx(E1, abs=1e-9)
    np.testing.assert_allclose(h1, H1, atol=1e-8)
    np.testing.assert_allclose(o1, O1, atol=1e-8)


def test_a_shared_bias_is_one_number_whose_gradient_sums_the_units() -> None:
    from nndsl.backends.numpy.autodiff import loss_and_grad

    program, _ = load(SPEC)
    model, train = program.models[0], program.trains[0]
    weights = initialize(model)
    assert weights["h.bias"].shape == (1,) and weights["o.bias"].shape == (1,)
    g = loss_and_grad(model, train, {"x": X[None], "y": T[None]}, weights, frozen=())
    out_h = _sigmoid(H0 @ X + 0.35)
    out_o = _sigmoid(O0 @ out_h + 0.60)
    delta_o = (out_o - T) * out_o * (1 - out_o)
    delta_h = (O0.T @ delta_o) * out_h * (1 - out_h)
    np.testing.assert_allclose(g.weights["o.bias"], [delta_o.sum()], atol=1e-15)
    np.testing.assert_allclose(g.weights["h.bias"], [delta_h.sum()], atol=1e-15)
    frozen = loss_and_grad(model, train, {"x": X[None], "y": T[None]}, weights)
    assert set(frozen.weights) == {"h.weight", "o.weight"}  # the block's freeze


def test_a_shared_bias_exports_and_verifies() -> None:
    pytest.importorskip("onnxruntime")
    from nndsl.verify import verify_program

    program, sources = load(SPEC)
    rows = verify_program(program, sources)
    assert rows and all(r.ok for r in rows), [r for r in rows if not r.ok]


@pytest.mark.parametrize(("freeze", "words"), [
    ("[h.bais]", ["no weight 'h.bais'", "did you mean 'h.bias'"]),
    ("[zzzzzz.qq]", ["no weight 'zzzzzz.qq'", "labelled layers: h, o"]),
    ("[hh]", ["no layer with weights is labelled 'hh'"]),
])
def test_freezing_an_unknown_weight_is_a_positioned_error(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], freeze: str,
        words: list[str]) -> None:
    spec = tmp_path / "m.nn"
    spec.write_text(SPEC.read_text(encoding="utf-8").replace("[h.bias, o.bias]", freeze),
                    encoding="utf-8")
    assert main(["check", str(spec)]) == 1
    err = capsys.readouterr().err
    line = next(i for i, text in enumerate(spec.read_text().splitlines(), 1)
                if "freeze    =" in text)
    assert f"m.nn:{line}:" in err
    for word in words:
        assert word in err


def test_a_weight_name_reads_the_weight_in_a_loss(tmp_path: Path) -> None:
    """`h.weight` names that weight in a loss expression, as a label names a layer's weight."""
    spec = tmp_path / "m.nn"
    spec.write_text(SPEC.read_text(encoding="utf-8").replace(
        "loss      = sse(out, y)", "loss      = sse(out, y) + 2 * mse(h.weight, 0.0 * h.weight)"),
        encoding="utf-8")
    program, _ = load(spec)
    assert "h.weight" in dict(program.trains[0].loss.inputs)
    from nndsl.backends.numpy.autodiff import loss_and_grad

    model, train = program.models[0], program.trains[0]
    weights = initialize(model)
    g = loss_and_grad(model, train, {"x": X[None], "y": T[None]}, weights)
    base, _ = load(SPEC)
    plain = loss_and_grad(base.models[0], base.trains[0], {"x": X[None], "y": T[None]}, weights)
    extra = H0  # d/dW of 2 mean(W²) is W
    np.testing.assert_allclose(g.weights["h.weight"], plain.weights["h.weight"] + extra,
                               atol=1e-12)
