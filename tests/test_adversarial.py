"""The adversarial trainer: how `nndsl check` refuses models that do not fit together, the
losses and gradients of each update against NumPy and finite differences, the order of the
updates, exact resumption mid-round, and the exported models."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from nndsl.backends.numpy.engine import NumpyEngine

from nndsl.cli import main
from nndsl.data.dataset import load_dataset
from nndsl.errors import NndslError
from nndsl.initialize import initialize
from nndsl.ir import Program
from nndsl.program import load
from nndsl.training import checkpoint
from nndsl.training.run import plan, train_in_memory
from nndsl.training.stages import stream_seed
from nndsl.training.trainers.adversarial import Z_STREAM

from .conftest import ROOT, assert_same_run, stop_after_step

TINY = """\
model generator {
  input z: [batch, 3]
  sample = z -> dense(8) -> tanh -> dense(2)
  output sample
}

model discriminator {
  input x: [batch, 2]
  real = x -> dense(8) -> tanh -> dense(1) -> sigmoid
  output real
}

train generator {
  data      = builtin("ring8", n=64)
  trainer   = adversarial(generator=generator, discriminator=discriminator, ARGS)
  optimizer = sgd(lr=0.1)
  batch     = 16
  epochs    = 2
  shuffle   = false
}
"""


def tiny(args: str = "k=1", **replace: str) -> str:
    text = TINY.replace("ARGS", args)
    for old, new in replace.items():
        assert old in text, old
        text = text.replace(old, new)
    return text


def check_error(write_spec: Any, text: str) -> tuple[str, int | None]:
    """The message (with hint, expected, received) and line of the spec's one error."""
    with pytest.raises(NndslError) as info:
        load(write_spec(text))
    e = info.value
    assert not hasattr(e, "errors") or len(e.errors) == 1, e  # one error, not a cascade
    full = " ".join(str(x) for x in (e.message, e.hint, e.expected, e.received) if x)
    return full, e.span.line if e.span else None


@pytest.mark.parametrize(("text", "words", "line"), [
    (tiny("k=1").replace("discriminator=discriminator", "discriminator=discrimnator"),
     ["'discrimnator' names no model", "discriminator"], 15),
    (tiny(**{"dense(1) -> sigmoid": "dense(1)"}), ["must end in a sigmoid", "dense"], 9),
    (tiny(**{"dense(1) -> sigmoid": "dense(2) -> sigmoid"}),
     ["one probability per row", "[batch, 2]"], 9),
    (tiny(**{"tanh -> dense(2)": "tanh -> dense(3)"}),
     ["cannot read as 'x'", "f32[batch, 2]", "f32[batch, 3]"], 15),
    (tiny(**{"input x: [batch, 2]": "input x: [batch, 2]\n  input y: [batch, 1]"}),
     ["exactly one input besides", "x, y"], 7),
    (tiny(**{"input z: [batch, 3]": "input z: [batch, 3]\n  input c: i64[batch]",
             "input x: [batch, 2]": "input x: [batch, 2]\n  input c: [batch, 8]"}),
     ["condition 'c' is declared differently", "i64[batch]", "f32[batch, 8]"], 17),
    (tiny(**{"input z: [batch, 3]": "input x: [batch, 2]", "sample = z": "sample = x"}),
     ["has no latent input"], 1),
    (tiny().replace("train generator", "train discriminator"),
     ["named after the generator", "train generator"], 15),
    (tiny("generator_optimizer=sgd(lr=-1)"), ["lr"], 15),
    (tiny(**{"epochs    = 2": "epochs = 2\n  early_stop = patience(3, monitor=d_loss)"}),
     ["does not use 'early_stop'", "schedule"], 19),
    (tiny(**{"x -> dense(8)": "x -> dense(8) -> batchnorm"}), ["running statistics"], 9),
])
def test_check_refuses_models_that_do_not_fit(write_spec: Any, text: str, words: list[str],
                                              line: int) -> None:
    message, at = check_error(write_spec, text)
    for word in words:
        assert word in message, message
    assert at == line, message


def test_check_accepts_the_shipped_specs_and_reads_their_arrays() -> None:
    for name, arrays in (("gan", {"x"}), ("cgan", {"x", "c"})):
        program, _ = load(ROOT / "specs" / f"{name}.nn")
        run = plan(program, program.trains[0])
        assert set(run.data) == arrays and run.models == ["generator", "discriminator"]
        assert run.trainers[0].exports() == ("discriminator",)


# -- the updates, against NumPy formulas and finite differences --------------------------------


def _trained(write_spec: Any, text: str, steps: int) -> tuple[Program, Any, Any, dict]:
    program, _ = load(write_spec(text))
    spec = program.trains[0]
    graphs = [program.model("generator"), program.model("discriminator")]
    data = load_dataset(plan(program, spec).data, graphs, spec, Path("."))
    start = {g.name: initialize(g, i) for i, g in enumerate(graphs)}
    session = train_in_memory(program, spec, NumpyEngine(), data, start, steps=steps)
    return program, data, session, start


def _prob(program: Program, name: str, feeds: dict, weights: dict) -> np.ndarray:
    graph = program.model(name)
    wide = {k: v.astype(np.float64) for k, v in weights.items()}
    out = NumpyEngine().predict(graph, {k: v.astype(np.float64) for k, v in feeds.items()}, wide)
    return out[graph.outputs[0]].reshape(-1)


def _numeric_grad(loss: Any, weights: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    out = {}
    for name, w in weights.items():
        g = np.zeros(w.shape)
        for i in np.ndindex(w.shape):
            values = []
            for delta in (1e-6, -1e-6):
                moved = {k: v.astype(np.float64) for k, v in weights.items()}
                moved[name][i] += delta
                values.append(loss(moved))
            g[i] = (values[0] - values[1]) / 2e-6
        out[name] = g
    return out


@pytest.mark.parametrize(("args", "draw"), [
    ("k=1", lambda rng, shape: rng.standard_normal(shape)),
    ("generator_loss=saturating, prior=uniform", lambda rng, shape: 2 * rng.random(shape) - 1),
])
def test_each_update_is_the_textbook_one(write_spec: Any, args: str, draw: Any) -> None:
    """Step 1 moves the discriminator down the gradient of -mean log D(x) - mean log(1 -
    D(G(z))); step 2 moves the generator down that of -mean log D(G(z)) (or mean log(1 -
    D(G(z))) saturating); z is the prior's draw from the trainer's stream, x the first batch."""
    program, data, session, start = _trained(write_spec, tiny(args), steps=2)
    d_row, g_row = session.history.rows[:2]
    x = data.train["x"][:16]
    z = [draw(np.random.default_rng(stream_seed(0, step, Z_STREAM)), (16, 3)).astype(np.float32)
         for step in (0, 1)]
    g0, d0 = start["generator"], start["discriminator"]
    fake = NumpyEngine().predict(program.model("generator"), {"z": z[0]}, g0)["sample"]

    def d_loss(dw: dict) -> float:
        return float(-np.mean(np.log(_prob(program, "discriminator", {"x": x}, dw)))
                     - np.mean(np.log(1 - _prob(program, "discriminator", {"x": fake}, dw))))

    assert d_row["d_loss"] == pytest.approx(d_loss(d0), rel=1e-5)
    assert d_row["d_real"] == pytest.approx(_prob(program, "discriminator", {"x": x}, d0).mean())
    d1 = session.weights["discriminator"]
    for name, g in _numeric_grad(d_loss, d0).items():
        np.testing.assert_allclose((d0[name] - d1[name]) / 0.1, g, atol=2e-5, err_msg=name)

    def g_loss(gw: dict) -> float:
        made = _prob(program, "generator", {"z": z[1]}, gw).reshape(16, 2)
        p = _prob(program, "discriminator", {"x": made}, d1)
        return float(np.mean(np.log(1 - p)) if "saturating" in args else -np.mean(np.log(p)))

    assert g_row["g_loss"] == pytest.approx(g_loss(g0), rel=1e-5)
    g1 = session.weights["generator"]
    for name, g in _numeric_grad(g_loss, g0).items():
        np.testing.assert_allclose((g0[name] - g1[name]) / 0.1, g, atol=2e-5, err_msg=name)


def test_k_discriminator_steps_per_generator_step_across_epochs(write_spec: Any) -> None:
    """4 batches an epoch, k = 3: the count since the last generator step carries over."""
    _, _, session, _ = _trained(write_spec, tiny("k=3"), steps=100)
    kinds = "".join("g" if "g_loss" in r else "d" for r in session.history.rows
                    if r["kind"] == "step")
    assert kinds == "dddg" "d" "dd" "g" "dd"
    epochs = [r for r in session.history.rows if r["kind"] == "epoch"]
    assert [r["step"] for r in epochs] == [5, 10]
    assert {"d_loss", "g_loss", "d_real", "d_fake", "d_lr", "g_lr"} <= set(epochs[0])
    assert "loss" not in epochs[0]


def test_own_optimizers_train_each_model(write_spec: Any) -> None:
    """discriminator_optimizer replaces the block's sgd for the discriminator only: Adam's
    first step moves every weight by about lr (g / (|g| + eps)), sgd's by 0.1 g."""
    text = tiny("discriminator_optimizer=adam(lr=0.05)")
    _, _, session, start = _trained(write_spec, text, steps=2)
    moved = {k: np.abs(session.weights["discriminator"][k] - w)
             for k, w in start["discriminator"].items()}
    assert all(np.allclose(m[m > 1e-4], 0.05, rtol=1e-3) for m in moved.values()), moved
    step = np.concatenate([np.abs(session.weights["generator"][k] - w).ravel()
                           for k, w in start["generator"].items()])
    assert 0 < step.max() < 0.05 and np.std(step[step > 0]) > 1e-3  # sgd: not all alike


# -- runs: resuming mid-round, the exported models -------------------------------------------


def _args(spec: Path, run_dir: Path, backend: str = "numpy") -> list[str]:
    return ["train", str(spec), "--backend", backend, "--device", "cpu", "--run-dir",
            str(run_dir), "--quiet", "--checkpoint-every", "0"]


def test_a_stop_mid_round_resumes_exactly(write_spec: Any, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Stopped after step 4 of k = 2 (a discriminator step of a round, mid-epoch) with Adam and
    dropout: the resumed run ends with the uninterrupted run's weights and metrics."""
    spec = write_spec(tiny("k=2", **{"sgd(lr=0.1)": "adam(lr=0.01)",
                                     "tanh -> dense(1)": "tanh -> dropout(rate=0.2) -> dense(1)"}))
    whole, stopped = tmp_path / "whole", tmp_path / "stopped"
    assert main(_args(spec, whole)) == 0
    with monkeypatch.context() as patch:
        stop_after_step(patch, 4)
        assert main(_args(spec, stopped)) == 130
    record = checkpoint.load(stopped / checkpoint.NAME).meta["record"]
    assert (record["batch"], record["pending"], record["updates"]) == \
        (3, 1, {"discriminator": 3, "generator": 1})
    assert main(["train", "--resume", str(stopped), "--quiet"]) == 0
    assert_same_run(whole, stopped)


def test_exported_generator_and_discriminator_match_numpy(write_spec: Any,
                                                          tmp_path: Path) -> None:
    pytest.importorskip("torch")
    import onnx
    from nndsl.backends.onnx.runtime import run_onnx

    spec = write_spec(tiny())
    assert main(_args(spec, tmp_path, "torch")) == 0
    program, _ = load(spec)
    z = np.random.default_rng(5).standard_normal((2000, 3)).astype(np.float32)
    for name, feeds in (("generator", {"z": z}), ("discriminator", {"x": z[:, :2]})):
        file = "model.onnx" if name == "generator" else f"{name}.onnx"
        weights = "weights.npz" if name == "generator" else f"{name}.weights.npz"
        got = run_onnx(onnx.load(tmp_path / file), feeds)[0]
        graph = program.model(name)
        want = NumpyEngine().predict(graph, feeds, dict(np.load(tmp_path / weights)))
        np.testing.assert_allclose(got, want[graph.outputs[0]], rtol=1e-5, atol=1e-6)


# -- the shipped specs on ring8 (torch, CPU) -----------------------------------------------------

CENTRES = 2.0 * np.stack([np.cos(np.arange(8) * np.pi / 4), np.sin(np.arange(8) * np.pi / 4)], 1)
NEAR = 0.15  # 3 standard deviations of a ring8 mode
SAMPLES = 2000


def mmd(a: np.ndarray, b: np.ndarray, sigma: float = 0.5) -> float:
    """The maximum mean discrepancy between two samples with the Gaussian kernel
    exp(-|u - v|^2 / (2 sigma^2)) (the biased estimate, square-rooted); sigma = 0.5 is a third
    of the distance between neighbouring modes, so a missing or smeared mode shows."""
    def k(u: np.ndarray, v: np.ndarray) -> float:
        return float(np.exp(-((u[:, None] - v[None]) ** 2).sum(-1) / (2 * sigma ** 2)).mean())

    return float(np.sqrt(max(k(a, a) + k(b, b) - 2 * k(a, b), 0.0)))


def nearest_mode(x: np.ndarray) -> np.ndarray:
    """Each point's mode, or -1 for a point farther than NEAR from every centre."""
    d = np.linalg.norm(x[:, None] - CENTRES[None], axis=-1)
    return np.where(d.min(1) < NEAR, d.argmin(1), -1)


def _train_spec(name: str, run: Path, *extra: str) -> Any:
    pytest.importorskip("torch")
    assert main(["train", str(ROOT / "specs" / f"{name}.nn"), "--backend", "torch", "--device",
                 "cpu", "--run-dir", str(run), "--quiet", *extra]) == 0
    program, _ = load(ROOT / "specs" / f"{name}.nn")
    return program


def _samples(run: Path, feeds: dict[str, np.ndarray]) -> np.ndarray:
    import onnx
    from nndsl.backends.onnx.runtime import run_onnx

    return run_onnx(onnx.load(run / "model.onnx"), feeds)[0]


@pytest.mark.slow
def test_gan_learns_the_ring(tmp_path: Path) -> None:
    """specs/gan.nn: the MMD between 2,000 samples of the exported generator and 2,000 fresh
    ring8 points falls at least 5-fold from the untrained generator's, and at least 6 of the 8
    modes get at least 1% of the samples within 3 std of their centre."""
    program = _train_spec("gan", tmp_path)
    z = np.random.default_rng(2024).standard_normal((SAMPLES, 8)).astype(np.float32)
    real = builtin_ring(seed=1)["x"]
    g = program.model("generator")
    before = NumpyEngine().predict(g, {"z": z}, initialize(g, 0))["sample"]
    after = _samples(tmp_path, {"z": z})
    ratio = mmd(before, real) / mmd(after, real)
    covered = np.bincount(nearest_mode(after)[nearest_mode(after) >= 0], minlength=8)
    assert ratio >= 5, (mmd(before, real), mmd(after, real))
    assert (covered >= SAMPLES // 100).sum() >= 6, covered


@pytest.mark.slow
def test_cgan_puts_each_condition_in_its_mode(tmp_path: Path) -> None:
    """specs/cgan.nn: for each of the 8 conditions, at least 80% of 250 samples lie within 3
    std of that condition's mode."""
    _train_spec("cgan", tmp_path)
    c = np.repeat(np.arange(8), SAMPLES // 8)
    z = np.random.default_rng(2024).standard_normal((len(c), 8)).astype(np.float32)
    mode = nearest_mode(_samples(tmp_path, {"z": z, "c": c}))
    hits = [float(np.mean(mode[c == k] == k)) for k in range(8)]
    assert min(hits) >= 0.8, hits


def builtin_ring(seed: int) -> dict[str, np.ndarray]:
    from nndsl.data.builtin import builtin

    return builtin(Path("."), name="ring8", n=SAMPLES, seed=seed)


def _checkpoint_epoch(run: Path) -> int:
    try:
        return int(checkpoint.load(run / checkpoint.NAME).meta["epoch"])
    except NndslError:
        return -1


@pytest.mark.slow
@pytest.mark.parametrize("name", ["gan", "cgan"])
def test_a_killed_run_resumes_exactly(name: str, tmp_path: Path) -> None:
    """SIGKILL after the third epoch's checkpoint, then --resume: the weights of both models
    and metrics.csv are those of the run never interrupted (torch backend)."""
    import signal
    import subprocess
    import sys
    import time

    pytest.importorskip("torch")
    spec = ROOT / "specs" / f"{name}.nn"
    args = [*_args(spec, tmp_path / "whole", "torch"), "--epochs", "12"]
    assert main(args) == 0
    broken = tmp_path / "broken"
    child = subprocess.Popen([sys.executable, "-m", "nndsl.cli", *_args(spec, broken, "torch"),
                              "--epochs", "12"], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, cwd=ROOT)
    deadline = time.monotonic() + 120
    while _checkpoint_epoch(broken) < 3 and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    assert child.poll() is None, "training finished before it could be killed"
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert 3 <= _checkpoint_epoch(broken) < 12
    assert main(["train", "--resume", str(broken), "--quiet"]) == 0
    assert_same_run(tmp_path / "whole", broken)
