"""The random-search trainers: simulated annealing (`anneal`, Boltzmann and Cauchy training), the
Cauchy/backprop hybrid (`cauchy_backprop`) and neuroevolution (`evolve`). Their rules (cooling,
steps, acceptance, squashing), the population pass against a loop over members, what `check`
refuses, torch drawing NumPy's numbers with `--rng reference`, exact resume, and XOR solved with
the default settings (specs/xor_anneal.nn, specs/xor_cauchy_backprop.nn, specs/xor_evolve.nn)."""

from __future__ import annotations

import csv
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from nndsl.backends.numpy.engine import NumpyEngine
from nndsl.backends.numpy.prims import make_numpy_prims

from nndsl.cli import main
from nndsl.errors import NndslError
from nndsl.initialize import initialize
from nndsl.ops import get
from nndsl.program import load
from nndsl.training.core import run_loss, trainable
from nndsl.training.stages import stages
from nndsl.training.trainers._annealing import (
    accepts,
    cauchy_step,
    gaussian_step,
    saturating_units,
    squash_saturated,
)
from nndsl.training.trainers.evolve import ranking, scores

from .conftest import ROOT, assert_same_run, kill_once_checkpointed, stop_after_step

SPECS = {name: ROOT / "specs" / f"xor_{name}.nn" for name in
         ("anneal", "cauchy_backprop", "evolve")}


def trainer(name: str, **params: Any) -> Any:
    return get(name, "trainer").compute(**params)


def rows(run: Path) -> list[dict[str, str]]:
    with (run / "metrics.csv").open(encoding="utf-8") as f:
        return [r for r in csv.DictReader(f) if r["kind"] == "epoch"]


def with_seed(spec: Path, seed: int, tmp_path: Path, trainer_call: str | None = None) -> Path:
    text = re.sub(r"seed(\s*)= \d+", rf"seed\1= {seed}", spec.read_text(encoding="utf-8"))
    if trainer_call is not None:
        text = re.sub(r"trainer = .*", f"trainer = {trainer_call}", text)
    path = tmp_path / f"{spec.stem}_{seed}.nn"
    path.write_text(text, encoding="utf-8")
    return path


# ---- the rules --------------------------------------------------------------------------------

def test_cooling_laws_are_the_seeds() -> None:
    """T0 = 1: Boltzmann 1.4427, 0.9102, 0.7213 and Cauchy 0.5, 0.3333, 0.25 at t = 1..3."""
    boltzmann, cauchy = trainer("anneal", t0=1.0), trainer("anneal", t0=1.0, cooling="cauchy")
    assert [round(boltzmann.temperature(t), 4) for t in (1, 2, 3)] == [1.4427, 0.9102, 0.7213]
    assert [round(cauchy.temperature(t), 4) for t in (1, 2, 3)] == [0.5, 0.3333, 0.25]
    # defaults: t0 = 1 (boltzmann), 100 (cauchy and the hybrid); k t0 = 0.3 x the first loss
    assert trainer("anneal").temperature(1) == pytest.approx(1 / math.log(2))
    assert trainer("anneal", cooling="cauchy").temperature(4) == pytest.approx(20.0)
    assert trainer("cauchy_backprop").temperature(9) == pytest.approx(10.0)
    assert trainer("anneal", cooling="cauchy").constant(0.25) == pytest.approx(0.3 * 0.25 / 100)
    assert trainer("anneal", k=2.0).constant(0.25) == 2.0


def test_acceptance_keeps_rises_with_the_boltzmann_probability() -> None:
    assert accepts(-0.1, 0.0, 0.99) and accepts(0.0, 1e-9, 0.99)
    assert not accepts(0.1, 0.0, 0.0) and not accepts(math.nan, 1.0, 0.0)
    assert not accepts(math.inf, 1.0, 0.0)
    draws = np.random.default_rng(0).random(40_000)
    kept = np.mean([accepts(0.2, 0.1, d) for d in draws])
    assert kept == pytest.approx(math.exp(-2.0), abs=0.01)


def test_steps_have_the_stated_spread() -> None:
    """Boltzmann: normal of variance (rho T)^2 / 2; Cauchy: median |x| = rho T."""
    P, table = make_numpy_prims(), make_numpy_prims(training=True, seed=3)
    w = np.zeros(50_000, np.float32)
    normal = gaussian_step(table, P, w, 4.0, "f32")
    assert normal.dtype == np.float32 and np.var(normal) == pytest.approx(8.0, rel=0.03)
    heavy = cauchy_step(table, P, w, 4.0, "f32")
    assert heavy.dtype == np.float32 and np.isfinite(heavy).all()
    assert np.median(np.abs(heavy)) == pytest.approx(4.0, rel=0.05)
    assert np.mean(np.abs(heavy) > 400) > 0.005  # heavy tails: P(|x| > 100 rho T) = 0.64%


SATURATED = """
model m {
  input x: [batch, 2]
  h = x -> dense(3) -> sigmoid
  out = h -> dense(1) -> relu
  output out
}
"""


def test_only_units_saturated_on_every_row_are_squashed(write_spec: Any) -> None:
    program, _ = load(write_spec(SATURATED))
    model = program.model("m")
    units = saturating_units(model, trainable(model))
    assert [(u.out, u.weight, u.bias, u.low, u.high) for u in units] == \
        [("h", "dense_1.weight", "dense_1.bias", 0.0, 1.0)]  # relu does not saturate
    w = {"dense_1.weight": np.array([[40.0, 30.0], [1.0, -2.0], [25.0, -0.5]], np.float32),
         "dense_1.bias": np.array([20.0, 0.5, -1.0], np.float32),
         "dense_2.weight": np.ones((1, 3), np.float32), "dense_2.bias": np.zeros(1, np.float32)}
    x = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float32)
    engine = NumpyEngine()
    env = engine.run(model, {"x": x}, w).env
    changed = squash_saturated(engine, units, env, w, 10.0, 0.05)
    # unit 0 (sigmoid > 0.95 on every row) is squashed; unit 1 is not; unit 2 is near 1 on
    # the rows with x1 = 1 only, so not saturated on every row
    np.testing.assert_allclose(changed["dense_1.weight"][0], 10 * np.tanh([4.0, 3.0]),
                               rtol=1e-6)
    np.testing.assert_array_equal(changed["dense_1.weight"][1:], w["dense_1.weight"][1:])
    np.testing.assert_allclose(changed["dense_1.bias"], [10 * np.tanh(2.0), 0.5, -1.0],
                               rtol=1e-6)
    calm = {**w, "dense_1.weight": w["dense_1.weight"] / 20, "dense_1.bias": w["dense_1.bias"] / 20}
    assert squash_saturated(engine, units, engine.run(model, {"x": x}, calm).env, calm, 10.0,
                            0.05) == {}


@pytest.mark.parametrize(("name", "params", "word"), [
    ("anneal", {"t0": -1.0}, "t0"), ("anneal", {"rho": 0.0}, "rho"),
    ("anneal", {"k": -1.0}, "k"), ("anneal", {"squash": -1.0}, "squash"),
    ("anneal", {"saturation": 0.5}, "saturation"),
    ("cauchy_backprop", {"eta": 1.5}, "eta"), ("cauchy_backprop", {"alpha": -0.1}, "alpha"),
    ("cauchy_backprop", {"lr": 0.0}, "lr"),
    ("evolve", {"fitness": "accuracy"}, "mode"), ("evolve", {"mode": "max"}, "mode"),
    ("evolve", {"population": 4, "elite": 4}, "elite"),
])
def test_bad_parameters_are_refused(name: str, params: dict[str, Any], word: str) -> None:
    with pytest.raises(NndslError, match=word):
        trainer(name, **params)


def test_ranking_puts_nan_last_and_breaks_metric_ties_by_the_loss() -> None:
    losses = np.array([0.3, np.nan, 0.1, 0.2])
    assert ranking(losses, None, "min").tolist() == [2, 3, 0, 1]
    accuracy = np.array([0.75, 1.0, 0.75, np.nan])
    assert ranking(np.array([0.1, 0.3, 0.05, 0.0]), accuracy, "max").tolist() == [1, 2, 0, 3]


# ---- one pass for the whole population ----------------------------------------------------

CONV = """
model c {
  input x: [batch, 1, 6, 6]
  f = x -> conv2d(2, kernel=3) -> tanh -> maxpool2d(2) -> conv2d(3, kernel=2) -> flatten
  out = f -> dense(1) -> sigmoid
  output out
}
train c {
  data = builtin("xor"); target y: [batch, 1]; loss = mse(out, y)
  trainer = evolve(); FREEZE
}
"""


def _members_against_a_loop(path: Path) -> None:
    program, _ = load(path)
    spec = program.trains[0]
    stage, model = stages(spec)[0], program.model(spec.model)
    rng = np.random.default_rng(0)
    feeds = {n: rng.random([d if isinstance(d, int) else 5 for d in t.shape]).astype(np.float32)
             for n, t in (*model.inputs, *spec.targets)}
    weights, names = initialize(model, 0), trainable(model, stage.frozen)
    members = {n: np.stack([weights[n] + 0.3 * k * rng.standard_normal(weights[n].shape)
                            .astype(np.float32) for k in range(4)]) for n in names}
    P = make_numpy_prims()
    got, _ = scores(P, model, stage.loss, feeds, weights, members, None, None, np.asarray)
    want = [float(run_loss(P, model, stage.loss, feeds,
                           {**weights, **{n: members[n][k] for n in names}})[0])
            for k in range(4)]
    assert len(set(want)) == 4  # the members differ
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_the_population_table_has_a_form_for_every_primitive() -> None:
    """A primitive added to nndsl/prims.py needs its population form in _population.py."""
    from nndsl.prims import PRIMS
    from nndsl.training.trainers._population import Batched, Unbatchable, population_table

    table = population_table(make_numpy_prims(), 2)
    assert set(PRIMS) <= set(vars(table))
    for name in PRIMS:
        try:
            with np.errstate(all="ignore"):
                getattr(table, name)(Batched(np.zeros((2, 3))))
        except Unbatchable as e:
            assert "no population form" not in str(e), name
        except (TypeError, ValueError):
            pass  # the primitive needs more arguments than one array


@pytest.mark.parametrize("spec", ["xor_evolve", "sine_lstm", "transformer_classifier"])
def test_population_pass_equals_a_loop_over_members(spec: str) -> None:
    _members_against_a_loop(ROOT / "specs" / f"{spec}.nn")


@pytest.mark.parametrize("freeze", ["freeze = [conv2d_2]", "freeze = [conv2d_1]"])
def test_a_convolution_with_one_evolved_side_runs_in_the_pass(freeze: str,
                                                              write_spec: Any) -> None:
    _members_against_a_loop(write_spec(CONV.replace("FREEZE", freeze)))


def test_check_names_the_op_the_population_pass_cannot_take(
        write_spec: Any, capsys: pytest.CaptureFixture[str]) -> None:
    """Both convolutions evolved: the second's input and kernel both vary by member."""
    assert main(["check", str(write_spec(CONV.replace("FREEZE", "epochs = 3")))]) == 1
    err = capsys.readouterr().err
    assert ":4:" in err and "conv2d" in err and "input and kernel both vary" in err
    assert "freeze" in err and "Traceback" not in err


@pytest.mark.parametrize(("settings", "message"), [
    ("trainer = anneal(); optimizer = sgd(lr=1.0)", "trainer 'anneal' does not use 'optimizer'"),
    ("trainer = evolve(); batch = 2", "trainer 'evolve' does not use 'batch'"),
    ("trainer = cauchy_backprop(); clip = norm(1.0)",
     "trainer 'cauchy_backprop' does not use 'clip'"),
])
def test_check_refuses_settings_the_trainers_do_not_read(
        settings: str, message: str, write_spec: Any,
        capsys: pytest.CaptureFixture[str]) -> None:
    text = re.sub(r"  trainer = .*", f"  {settings}", SPECS["anneal"].read_text(encoding="utf-8"))
    assert main(["check", str(write_spec(text))]) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


AUTOENCODER = """
model m {
  input x: [batch, 2]
  out = x -> dense(2) -> sigmoid
  output out
}
train m { data = builtin("xor"); loss = mse(out, x); trainer = evolve(fitness=accuracy, mode=max) }
"""


def test_a_metric_as_fitness_needs_a_target(write_spec: Any,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(write_spec(AUTOENCODER))]) == 1
    err = capsys.readouterr().err
    assert "fitness = accuracy" in err and "declares none" in err


def test_accuracy_as_fitness_trains(tmp_path: Path) -> None:
    spec = with_seed(SPECS["evolve"], 2, tmp_path, "evolve(fitness=accuracy, mode=max)")
    _train(spec, tmp_path / "run", "--epochs", "40")
    got = rows(tmp_path / "run")
    assert [float(r["best_fitness"]) for r in got] == [float(r["accuracy"]) for r in got]
    assert float(got[-1]["accuracy"]) == 1.0


# ---- runs -------------------------------------------------------------------------------------

def _train(spec: Path, run: Path, *extra: str, backend: str = "numpy") -> None:
    assert main(["train", str(spec), "--backend", backend, "--device", "cpu", "--run-dir",
                 str(run), "--quiet", *extra]) == 0


@pytest.mark.parametrize(("name", "columns"), [
    ("anneal", {"temperature", "acceptance"}), ("cauchy_backprop", {"temperature", "acceptance"}),
    ("evolve", {"best_fitness", "mean_fitness"})])
def test_each_epoch_records_the_loss_and_the_trainers_own_values(
        name: str, columns: set[str], tmp_path: Path) -> None:
    _train(SPECS[name], tmp_path / "run", "--epochs", "150")
    got = rows(tmp_path / "run")
    assert len(got) == 150 and columns | {"loss", "accuracy"} <= set(got[0])
    assert float(got[-1]["loss"]) < float(got[0]["loss"])
    if name == "evolve":  # the best member is the model; its loss never rises (elitism)
        losses = [float(r["loss"]) for r in got]
        assert all(b <= a for a, b in zip(losses, losses[1:], strict=False))
        assert all(float(r["best_fitness"]) == float(r["loss"]) for r in got)
    else:
        assert 0 < float(got[-1]["acceptance"]) <= 1


@pytest.mark.parametrize("name", sorted(SPECS))
def test_torch_with_the_reference_stream_takes_numpys_decisions(name: str,
                                                                tmp_path: Path) -> None:
    pytest.importorskip("torch")
    _train(SPECS[name], tmp_path / "numpy", "--steps", "60")
    _train(SPECS[name], tmp_path / "torch", "--steps", "60", "--rng", "reference",
           backend="torch")
    want, got = np.load(tmp_path / "numpy" / "weights.npz"), np.load(tmp_path / "torch" /
                                                                      "weights.npz")
    for key in want.files:
        np.testing.assert_allclose(got[key], want[key], rtol=1e-5, atol=1e-5, err_msg=key)
    mine = [{k: v for k, v in r.items() if k in ("acceptance", "epoch")}
            for r in rows(tmp_path / "numpy")]
    assert mine == [{k: v for k, v in r.items() if k in ("acceptance", "epoch")}
                    for r in rows(tmp_path / "torch")]


@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize("name", sorted(SPECS))
def test_a_stopped_run_resumes_exactly(name: str, backend: str, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Stopped after the sweep (generation) of step 17, mid-epoch; the resumed run ends with
    the uninterrupted run's weights and metrics, bit for bit."""
    if backend == "torch":
        pytest.importorskip("torch")
    args = ["--epochs", "40", "--checkpoint-every", "0"]
    _train(SPECS[name], tmp_path / "whole", *args, backend=backend)
    stop_after_step(monkeypatch, 17)
    assert main(["train", str(SPECS[name]), "--backend", backend, "--device", "cpu",
                 "--run-dir", str(tmp_path / "cut"), "--quiet", *args]) == 130
    monkeypatch.undo()
    assert main(["train", "--resume", str(tmp_path / "cut"), "--quiet"]) == 0
    assert_same_run(tmp_path / "whole", tmp_path / "cut")


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SPECS))
def test_a_killed_run_resumes_exactly(name: str, tmp_path: Path) -> None:
    """SIGKILL once a checkpoint past epoch 50 exists (one is written every epoch)."""
    args = ["train", str(SPECS[name]), "--backend", "numpy", "--epochs", "400", "--quiet"]
    assert main([*args, "--run-dir", str(tmp_path / "whole")]) == 0
    reached = kill_once_checkpointed([*args, "--checkpoint-every", "0", "--run-dir",
                                      str(tmp_path / "cut")], tmp_path / "cut", 50)
    assert 50 <= reached < 400
    assert main(["train", "--resume", str(tmp_path / "cut"), "--quiet"]) == 0
    assert_same_run(tmp_path / "whole", tmp_path / "cut")


# ---- XOR with the default settings -----------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize(("spec", "call", "needed"), [
    ("anneal", "anneal(cooling=boltzmann)", 4), ("anneal", "anneal(cooling=cauchy)", 3),
    ("cauchy_backprop", "cauchy_backprop()", 4), ("evolve", "evolve()", 5)])
def test_defaults_solve_xor_in_3000_sweeps(spec: str, call: str, needed: int,
                                           tmp_path: Path) -> None:
    """The 2-2-1 sigmoid XOR net (mse), 3000 sweeps or generations, seeds 0-4: 100% accuracy
    for at least `needed` of the 5 seeds (the issue's bar for each trainer)."""
    solved = []
    for seed in range(5):
        run = tmp_path / f"run{seed}"
        _train(with_seed(SPECS[spec], seed, tmp_path, call), run)
        last = rows(run)[-1]
        assert int(last["epoch"]) == 3000
        solved.append(float(last["accuracy"]) == 1.0)
    assert sum(solved) >= needed, solved
