"""Restricted Boltzmann machines and deep belief networks: the `rbm` layer, the bars-and-stripes
data, contrastive divergence (CD-k and persistent) against a NumPy formula written here with the
same random draws, training, checks, exact resume, and a DBN on the digits."""

from __future__ import annotations

import csv
import itertools
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from nndsl.backends.numpy.prims import make_numpy_prims

from nndsl.cli import main
from nndsl.data.builtin import builtin
from nndsl.data.dataset import load_dataset
from nndsl.initialize import initialize
from nndsl.ir import TensorType
from nndsl.ops.rbm import free_energy
from nndsl.ops.registry import OPS
from nndsl.program import load
from nndsl.training import checkpoint
from nndsl.training.run import plan, train_in_memory
from nndsl.training.stages import stream_seed

from .conftest import ROOT, assert_same_run, stop_after_step

ONE_RBM = """
model m {
  input x: f64[batch, 16]
  h = x -> r: rbm(5)
  output h
}
train m {
  data = builtin("bars_stripes")
  trainer = contrastive_divergence(TRAINER)
  optimizer = sgd(lr=0.5)
  batch = 10
  shuffle = false
  seed = 3
}
"""


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def read_metrics(run_dir: Path) -> list[dict[str, str]]:
    with (run_dir / "metrics.csv").open(encoding="utf-8") as f:
        return [row for row in csv.DictReader(f) if row["kind"] == "epoch"]


# ---- the layer and the data -----------------------------------------------------------------


def test_rbm_forward_is_the_up_pass_and_free_energy_sums_out_the_hidden_units() -> None:
    rng = np.random.default_rng(0)
    v = (rng.random((4, 6)) < 0.5).astype(float)
    w, c, b = rng.normal(size=(3, 6)), rng.normal(size=3), rng.normal(size=6)
    P = make_numpy_prims()
    got = OPS["rbm"].compute(P, v, units=3, weight=w, bias=c, visible_bias=b)
    np.testing.assert_allclose(got, sigmoid(v @ w.T + c), rtol=1e-12)
    specs = OPS["rbm"].weights(TensorType(("batch", 6)), units=3)
    assert {k: (s.shape, s.role) for k, s in specs.items()} == {
        "weight": ((3, 6), "weight"), "bias": ((3,), "bias"), "visible_bias": ((6,), "bias")}
    # F(v) = -log sum_h exp(-E(v, h)), E = -b.v - c.h - h W v, by enumerating all 8 h
    hs = np.array(list(itertools.product([0, 1], repeat=3)), dtype=float)
    energies = -(v @ b)[:, None] - (hs @ c)[None, :] - v @ w.T @ hs.T
    want = -np.log(np.exp(-energies).sum(axis=1))
    np.testing.assert_allclose(free_energy(P, v, w, c, b), want, rtol=1e-12)


def test_bars_and_stripes_are_the_30_distinct_images() -> None:
    x = builtin(Path("."), name="bars_stripes")["x"]
    assert x.shape == (30, 16) and x.dtype == np.float32
    assert len({tuple(r) for r in x}) == 30 and set(np.unique(x)) == {0.0, 1.0}
    images = x.reshape(30, 4, 4)
    stripes = (images == images[:, :, :1]).all(axis=(1, 2))  # every row constant
    bars = (images == images[:, :1, :]).all(axis=(1, 2))  # every column constant
    assert (stripes | bars).all() and stripes.sum() == 16 and bars.sum() == 16  # 2 are both
    drawn = builtin(Path("."), name="bars_stripes", n=50, seed=1)["x"]
    assert drawn.shape == (50, 16) and {tuple(r) for r in drawn} <= {tuple(r) for r in x}


# ---- one update against the formula --------------------------------------------------------


def reference_update(weights: dict[str, np.ndarray], v0: np.ndarray, step: int, k: int,
                     persistent: bool, chain: np.ndarray | None, decay: float, lr: float = 0.5
                     ) -> tuple[dict[str, np.ndarray], float, np.ndarray | None]:
    """CD-k / PCD-k as the docs state it, drawing U[0, 1) numbers in the same order; `decay`
    is l2's strength (its gradient decay·W on W only)."""
    rng = np.random.default_rng(stream_seed(3, step, 2))

    def sample(p: np.ndarray) -> np.ndarray:
        return (rng.random(p.shape) < p).astype(float)

    w, c, b = weights["r.weight"], weights["r.bias"], weights["r.visible_bias"]
    p0 = sigmoid(v0 @ w.T + c)
    h0 = sample(p0)
    recon = sigmoid(h0 @ w + b)
    if persistent:
        h, pv = sample(sigmoid((v0 if chain is None else chain) @ w.T + c)), None
    else:
        h, pv = h0, recon
    for t in range(k):
        pv = sigmoid(h @ w + b) if pv is None else pv
        v = pv if t == k - 1 and not persistent else sample(pv)
        ph = sigmoid(v @ w.T + c)
        if t < k - 1:
            h, pv = sample(ph), None
    data = {"r.weight": p0.T @ v0 / len(v0), "r.bias": p0.mean(0), "r.visible_bias": v0.mean(0)}
    model = {"r.weight": ph.T @ v / len(v), "r.bias": ph.mean(0), "r.visible_bias": v.mean(0)}
    new = {n: weights[n] + lr * (data[n] - model[n]) for n in weights}
    new["r.weight"] -= lr * decay * w
    return new, float(np.mean((v0 - recon) ** 2)), v if persistent else None


def make_engine(backend: str) -> Any:
    if backend == "numpy":
        from nndsl.backends.numpy.engine import NumpyEngine

        return NumpyEngine()
    pytest.importorskip("torch")
    from nndsl.backends.torch.engine import TorchEngine

    return TorchEngine("cpu", rng="reference")


@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize(("k", "persistent", "decay"),
                         [(1, False, 0.0), (3, False, 0.0), (2, True, 0.0), (1, False, 0.01)])
def test_cd_updates_match_the_formula(backend: str, k: int, persistent: bool, decay: float,
                                      write_spec: Any) -> None:
    text = ONE_RBM.replace("TRAINER", f"k={k}, persistent={str(persistent).lower()}")
    path = write_spec(text.replace("seed = 3", f"seed = 3; regularize = l2({decay})")
                      if decay else text)
    program, _ = load(path)
    model, spec = program.models[0], program.trains[0]
    data = load_dataset(plan(program, spec).data, [model], spec, path.parent)
    rng = np.random.default_rng(5)
    start = {n: w + 0.3 * rng.standard_normal(w.shape) for n, w in initialize(model, 0).items()}
    session = train_in_memory(program, spec, make_engine(backend), data, {"m": dict(start)},
                              steps=2)
    want, chain, losses = dict(start), None, []
    for step in range(2):  # batches of 10 rows in data order
        want, loss, chain = reference_update(want, data.train["x"][10 * step:10 * step + 10],
                                             step, k, persistent, chain, decay)
        losses.append(loss)
    for name, array in want.items():
        np.testing.assert_allclose(session.weights["m"][name], array, rtol=1e-10, atol=1e-12,
                                   err_msg=name)
    steps = [r["loss"] for r in session.history.rows if r["kind"] == "step"]
    np.testing.assert_allclose(steps, losses, rtol=1e-10)
    assert not np.allclose(want["r.weight"], start["r.weight"])


# ---- training, records, checks --------------------------------------------------------------


def test_cd1_learns_bars_and_stripes(tmp_path: Path) -> None:
    """Reconstruction error (from hidden probabilities, all 30 images) after the first epoch
    against after the 40th: at least 5 times lower."""
    assert main(["train", str(ROOT / "specs" / "rbm_bars.nn"), "--backend", "numpy",
                 "--epochs", "40", "--run-dir", str(tmp_path), "--quiet"]) == 0
    rows = read_metrics(tmp_path)
    first, last = (float(rows[i]["reconstruction"]) for i in (0, -1))
    assert last * 5 <= first, (first, last)
    energies = [float(r["free_energy"]) for r in rows]
    assert energies[-1] < energies[0]  # the data's free energy falls: its probability rises
    assert float(rows[-1]["loss"]) < float(rows[0]["loss"])
    assert (tmp_path / "model.onnx").exists()


MONITORED = """
model m {
  input x: [batch, 16]
  h = x -> r: rbm(8)
  output h
}
train m {
  data = builtin("bars_stripes", n=120)
  trainer = contrastive_divergence(k=1)
  optimizer = sgd(lr=0.1, momentum=0.5)
  split = 0.25
  epochs = 200
  early_stop = patience(1, monitor=MONITOR, min_delta=0.001)
}
"""


@pytest.mark.parametrize("monitor", ["val_free_energy", "reconstruction", "val_loss"])
def test_cd_records_are_monitorable(monitor: str, write_spec: Any, tmp_path: Path) -> None:
    spec = write_spec(MONITORED.replace("MONITOR", monitor))
    assert main(["train", str(spec), "--backend", "numpy", "--run-dir", str(tmp_path / "r"),
                 "--quiet"]) == 0
    rows = read_metrics(tmp_path / "r")
    assert 2 <= len(rows) < 200  # stopped early on the monitored series
    assert {"reconstruction", "free_energy", "val_reconstruction", "val_free_energy",
            "val_loss"} <= set(rows[0])
    assert rows[0]["val_loss"] == rows[0]["val_reconstruction"]


TWO_RBMS = """
model m {
  input x: [batch, 16]
  h = x -> r1: rbm(8) -> r2: rbm(4)
  output h
}
train m {
  data = builtin("bars_stripes")
  SETTINGS
}
"""


@pytest.mark.parametrize(("settings", "message"), [
    ("trainer = contrastive_divergence(k=1)", "2 rbm layers are trainable (r1, r2)"),
    ("trainer = contrastive_divergence(k=1); freeze = [r1, r2]", "every rbm layer is frozen"),
    ("trainer = contrastive_divergence(layer=r3)", "layer=r3 names no rbm layer"),
    ("trainer = contrastive_divergence(layer=r1); freeze = [r1]", "'r1' is frozen"),
    ("trainer = contrastive_divergence(layer=r1); loss = mse(h, h)",
     "trainer 'contrastive_divergence' does not use 'loss'"),
    ("trainer = contrastive_divergence(layer=r2)\n early_stop = patience(2, monitor="
     "val_free_energy)", "no validation rows are held out"),
])
def test_check_refuses_what_cd_cannot_train(settings: str, message: str, write_spec: Any,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    spec = write_spec(TWO_RBMS.replace("SETTINGS", settings))
    assert main(["check", str(spec)]) == 1
    err = capsys.readouterr().err
    assert message in err and "spec.nn:" in err


def test_cd_needs_an_rbm_and_data_in_the_unit_interval(write_spec: Any, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    dense = TWO_RBMS.replace("r1: rbm(8) -> r2: rbm(4)", "dense(4)")
    assert main(["check", str(write_spec(dense.replace(
        "SETTINGS", "trainer = contrastive_divergence()")))]) == 1
    assert "model 'm' has none" in capsys.readouterr().err
    spirals = TWO_RBMS.replace("16]", "2]").replace("bars_stripes", "spirals")
    spec = write_spec(spirals.replace("SETTINGS", "trainer = contrastive_divergence(layer=r1)"))
    assert main(["train", str(spec), "--backend", "numpy", "--run-dir", str(tmp_path / "r"),
                 "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "its input must lie in [0, 1]" in err and "spec.nn:4:" in err


# ---- persistent chains resume exactly --------------------------------------------------------


def test_persistent_cd_resumes_exactly(write_spec: Any, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    spec = write_spec(ONE_RBM.replace("TRAINER", "k=1, persistent=true").replace(
        "shuffle = false", "shuffle = true; epochs = 4"))
    args = ["train", str(spec), "--backend", "numpy", "--quiet", "--checkpoint-every", "0"]
    assert main([*args, "--run-dir", str(tmp_path / "whole")]) == 0
    stop_after_step(monkeypatch, 7)  # mid-epoch 3
    assert main([*args, "--run-dir", str(tmp_path / "cut")]) == 130
    saved = checkpoint.load(tmp_path / "cut" / checkpoint.NAME)
    assert saved.meta["step"] == 7 and saved.state["persistent_chain"]["v"].shape == (10, 16)
    monkeypatch.undo()
    assert main(["train", "--resume", str(tmp_path / "cut"), "--quiet"]) == 0
    assert_same_run(tmp_path / "whole", tmp_path / "cut")


# ---- a deep belief network ------------------------------------------------------------------


@pytest.mark.slow
def test_dbn_pretrains_greedily_and_fine_tunes_above_90_percent(tmp_path: Path) -> None:
    """specs/dbn_digits.nn with 8 epochs per phase (`--epochs`): each rbm phase lowers its
    layer's reconstruction error, and the fine-tuned network classifies the held-out digits
    (split 0.2) above 90%."""
    assert main(["train", str(ROOT / "specs" / "dbn_digits.nn"), "--backend", "numpy",
                 "--epochs", "8", "--run-dir", str(tmp_path), "--quiet"]) == 0
    rows = read_metrics(tmp_path)
    phases = [r["phase"] for r in rows]
    assert phases == ["rbm1"] * 8 + ["rbm2"] * 8 + ["finetune"] * 8
    for phase in ("rbm1", "rbm2"):
        recon = [float(r["reconstruction"]) for r in rows if r["phase"] == phase]
        assert recon[-1] < recon[0], (phase, recon)
    accuracy = float(rows[-1]["val_accuracy"])
    assert accuracy > 0.9, accuracy
    assert (tmp_path / "model.onnx").exists()


def test_dbn_spec_checks_and_exports_the_up_pass() -> None:
    from nndsl.export import export_onnx

    program, sources = load(ROOT / "specs" / "dbn_digits.nn")
    graph = program.models[0]
    onnx_model = export_onnx(program, sources, graph, initialize(graph, 0))
    assert [n.op_type for n in onnx_model.graph.node] == [
        "Flatten", "Gemm", "Sigmoid", "Gemm", "Sigmoid", "Gemm", "Softmax"]
    names = {t.name for t in onnx_model.graph.initializer}
    assert "r1.weight" in names and "r1.visible_bias" not in names

