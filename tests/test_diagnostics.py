"""`diagnostics = true`: per layer the squared norm of dE/dz, the update/weight ratio, dead ReLUs
and saturated sigmoid/tanh units, per epoch in diagnostics.csv and plots/diagnostics.png; the
summary flags a deep sigmoid network's vanishing layers and leaves a healthy ReLU one alone;
NumPy and torch measure the same; training itself is unchanged; resume stays exact."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from nndsl.cli import main

from .conftest import ROOT, assert_same_run, stop_after_step

DEEP = """model deep {{
  input x: [batch, 1, 8, 8]
  defaults {{ init = {init}; bias_init = {bias} }}
  h = x -> flatten -> dense(30) -> {act} -> dense(30) -> {act} -> dense(30) -> {act}
        -> dense(30) -> {act} -> dense(30) -> {act} -> dense(30) -> {act}
  probs = h -> dense(10) -> softmax
  output probs
}}
train deep {{
  data = builtin("digits", n=400)
  target y: [batch]
  loss = cross_entropy(probs, y)
  optimizer = sgd(lr={lr})
  split = 0.2
  batch = 32
  epochs = 2
  {extra}
}}
"""
LAYERS = [f"dense_{i}" for i in range(1, 8)]


def _spec(write_spec, act: str = "sigmoid", init: str = "glorot_uniform",  # type: ignore[no-untyped-def]
          bias: str = "const(0)", lr: float = 0.1, extra: str = "diagnostics = true") -> Path:
    return write_spec(DEEP.format(act=act, init=init, bias=bias, lr=lr, extra=extra))


def _train(spec: Path, run: Path, backend: str = "numpy", *extra: str) -> int:
    return main(["train", str(spec), "--backend", backend, "--run-dir", str(run),
                 "--checkpoint-every", "0", *extra])


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _flags(err: str) -> dict[str, set[str]]:
    """Layer -> the problems the summary names."""
    out: dict[str, set[str]] = {}
    for line in err.splitlines():
        if line.startswith("diagnostics: "):
            layer, problem = line.removeprefix("diagnostics: ").split(": ")[:2]
            out.setdefault(layer, set()).add(problem)
    return out


def test_a_deep_sigmoid_network_is_flagged_where_its_gradient_vanishes(
        tmp_path: Path, write_spec, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    assert _train(_spec(write_spec), tmp_path / "run") == 0
    flags = _flags(capsys.readouterr().err)
    rows = _rows(tmp_path / "run" / "diagnostics.csv")
    assert list(rows[0]) == ["epoch", "step", "phase", "layer", "grad_norm2", "update_ratio",
                             "dead_fraction", "saturated_fraction"]
    last = {r["layer"]: r for r in rows if r["epoch"] == "2"}
    assert list(last) == LAYERS
    norms = [float(last[la]["grad_norm2"]) for la in LAYERS]
    # each sigmoid (slope <= 1/4) shrinks ||dE/dz||^2 on the way back to the input
    assert all(a < b for a, b in zip(norms, norms[1:], strict=False))
    vanishing = [la for la in LAYERS if "vanishing" in flags.get(la, set())]
    assert vanishing and vanishing == LAYERS[:len(vanishing)], flags
    assert "dense_1" in vanishing and not {"dense_5", "dense_6", "dense_7"} & set(flags)
    assert all(last[la]["saturated_fraction"] != "" for la in LAYERS[:-1])
    assert last["dense_7"]["saturated_fraction"] == "" and last["dense_7"]["dead_fraction"] == ""
    assert all(0 < float(last[la]["update_ratio"]) < 1 for la in LAYERS)


def test_a_healthy_relu_network_is_not_flagged(tmp_path: Path, write_spec,  # type: ignore[no-untyped-def]
                                               capsys: pytest.CaptureFixture[str]) -> None:
    assert _train(_spec(write_spec, act="relu", init="he_normal"), tmp_path / "run") == 0
    assert _flags(capsys.readouterr().err) == {}
    rows = _rows(tmp_path / "run" / "diagnostics.csv")
    assert {r["dead_fraction"] != "" for r in rows if r["layer"] != "dense_7"} == {True}


def test_dead_saturated_and_exploding_layers_are_flagged(
        tmp_path: Path, write_spec, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    dead = _spec(write_spec, act="relu", init="he_normal", bias="const(-50)")
    assert _train(dead, tmp_path / "dead") == 0
    flags = _flags(capsys.readouterr().err)
    assert {la for la, problems in flags.items() if "dead" in problems} == set(LAYERS[:-1])
    saturated = _spec(write_spec, init="normal(0, 3)")
    assert _train(saturated, tmp_path / "saturated") == 0
    assert "saturated" in _flags(capsys.readouterr().err).get("dense_6", set())
    exploding = _spec(write_spec, act="identity", init="normal(0, 1)", lr=1e-9)
    assert _train(exploding, tmp_path / "exploding") == 0
    assert "exploding" in _flags(capsys.readouterr().err).get("dense_1", set())


def test_numpy_and_torch_measure_the_same(tmp_path: Path, write_spec) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("torch")
    spec = _spec(write_spec)
    for backend in ("numpy", "torch"):
        assert _train(spec, tmp_path / backend, backend, "--quiet") == 0
    want, got = (_rows(tmp_path / b / "diagnostics.csv") for b in ("numpy", "torch"))
    assert [r["layer"] for r in got] == [r["layer"] for r in want]
    for a, b in zip(want, got, strict=True):
        for key in ("grad_norm2", "update_ratio", "saturated_fraction"):
            if a[key] == "" or b[key] == "":
                assert a[key] == b[key], key
                continue
            assert float(b[key]) == pytest.approx(float(a[key]), rel=2e-3, abs=1e-12), key


def test_diagnostics_leave_training_unchanged(tmp_path: Path, write_spec) -> None:  # type: ignore[no-untyped-def]
    assert _train(_spec(write_spec, extra=""), tmp_path / "plain", "numpy", "--quiet") == 0
    assert _train(_spec(write_spec), tmp_path / "watched", "numpy", "--quiet") == 0
    assert_same_run(tmp_path / "plain", tmp_path / "watched")
    assert not (tmp_path / "plain" / "diagnostics.csv").exists()


@pytest.mark.parametrize("step", [10, 11])  # 11 batches an epoch: stopped before and after the
def test_a_stopped_run_resumes_with_the_same_diagnostics(  # batch that is measured
        tmp_path: Path, write_spec, monkeypatch: pytest.MonkeyPatch, step: int) -> None:  # type: ignore[no-untyped-def]
    spec = _spec(write_spec)
    assert _train(spec, tmp_path / "whole", "numpy", "--quiet") == 0
    with monkeypatch.context() as patch:
        stop_after_step(patch, step)
        assert _train(spec, tmp_path / "broken", "numpy", "--quiet") == 130
    assert main(["train", "--resume", str(tmp_path / "broken"), "--quiet"]) == 0
    assert_same_run(tmp_path / "whole", tmp_path / "broken")
    assert (tmp_path / "whole" / "diagnostics.csv").read_text() == \
        (tmp_path / "broken" / "diagnostics.csv").read_text()


def test_the_diagnostics_plot_is_drawn(tmp_path: Path, write_spec) -> None:  # type: ignore[no-untyped-def]
    from matplotlib.image import imread

    assert _train(_spec(write_spec), tmp_path / "run", "numpy", "--quiet") == 0
    image = imread(tmp_path / "run" / "plots" / "diagnostics.png")
    assert image.shape[0] >= 600 and image.shape[1] >= 1000
    assert image[..., :3].std() > 0.05  # not blank


def test_a_trainer_without_diagnostics_refuses_the_setting(
        write_spec, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    text = (ROOT / "specs" / "hopfield.nn").read_text(encoding="utf-8")
    spec = write_spec(text.replace("trainer = hebbian", "diagnostics = true\n  trainer = hebbian"))
    assert main(["check", str(spec)]) == 1
    assert "diagnostics" in capsys.readouterr().err


def test_findings_read_the_last_epoch_only() -> None:
    from nndsl.program import load
    from nndsl.training.diagnostics import findings

    program, _ = load("deep.nn", DEEP.format(act="relu", init="he_normal", bias="const(0)",
                                             lr=0.1, extra=""))
    rows = [{"epoch": e, "step": 10 * e, "phase": "main", "layer": la,
             "grad_norm2": g if la == "dense_1" else 1.0, "dead_fraction": d}
            for e, g, d in ((1, 1e-9, 0.9), (2, 1.0, 0.0)) for la in LAYERS]
    assert findings(rows, program.models[0]) == []
    assert {f.problem for f in findings(rows[:7], program.models[0])} == {"dead", "vanishing"}


def test_the_bench_case_measures_with_and_without() -> None:
    pytest.importorskip("torch")
    from bench.diagnostics import CASE, OFF, ON, rows
    from bench.models import load_workload
    from bench.timing import Settings

    found = rows([load_workload("digits_mlp", rows=64)], Settings(quick=True, repeats=1,
                                                                  warmup=0))
    assert [(r.case, r.a, r.b) for r in found] == [(CASE, ON, OFF)] * 2
    assert all(r.ratio > 0 and r.met in (True, False) for r in found)
