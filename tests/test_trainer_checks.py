"""What `nndsl check` refuses because `nndsl train` could not run it, at the offending line,
and the error-correction rules for threshold units."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from nndsl.cli import main

from .conftest import ROOT

GATE = """model gate {{
  input x: [batch, 2]
  out = x -> dense(1, init=const(0)) -> {unit}
  output out
}}
train gate {{
  data = builtin("{data}"{extra}); target y: [batch, 1]
{settings}
}}
"""


def gate(write_spec, settings: str, unit: str = "step", data: str = "and",  # type: ignore[no-untyped-def]
         extra: str = "") -> Path:
    return write_spec(GATE.format(unit=unit, data=data, extra=extra, settings=settings))


def check_errors(path: Path, capsys: pytest.CaptureFixture[str]) -> str:
    assert main(["check", str(path)]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and "internal error" not in err
    return err


def last_row(run: Path) -> dict[str, str]:
    with (run / "metrics.csv").open(encoding="utf-8") as f:
        return list(csv.DictReader(f))[-1]


@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize("data", ["and", "or"])
def test_the_perceptron_rule_learns_and_and_or(write_spec, tmp_path: Path, data: str,  # type: ignore[no-untyped-def]
                                               backend: str) -> None:
    if backend == "torch":
        pytest.importorskip("torch")
    spec = gate(write_spec, "  trainer = perceptron(lr=0.5); metrics = [accuracy]; epochs = 50",
                data=data)
    run = tmp_path / "run"
    assert main(["train", str(spec), "--backend", backend, "--run-dir", str(run),
                 "--quiet"]) == 0
    row = last_row(run)
    assert float(row["accuracy"]) == 1.0 and float(row["loss"]) == 0.0  # no mistakes left
    assert int(row["epoch"]) < 50  # it stopped at the first epoch without a mistake


def test_the_delta_rule_trains_a_sign_unit_on_bipolar_or(tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert main(["train", str(ROOT / "specs" / "adaline_or.nn"), "--backend", "numpy",
                 "--run-dir", str(run), "--quiet"]) == 0
    row = last_row(run)
    assert float(row["accuracy"]) == 1.0
    # the LMS solution of bipolar OR: w = (0.5, 0.5), b = 0.5 leaves (t - net)^2 / 2 = 1/8
    assert float(row["loss"]) == pytest.approx(0.125, abs=0.03)


def test_backprop_through_a_step_unit_is_an_error_at_the_step(write_spec, capsys) -> None:  # type: ignore[no-untyped-def]
    err = check_errors(gate(write_spec, "  loss = mse(out, y)"), capsys)
    assert ":3:41: error: backprop cannot train this model: no trainable weight receives a " \
           "gradient; step has no gradient" in err
    hint = err.split("hint:")[1]
    assert "perceptron" in hint and "delta" in hint and "hebbian" not in hint


def test_a_partly_blocked_model_names_the_layers_that_would_not_train(write_spec, capsys) -> None:  # type: ignore[no-untyped-def]
    spec = write_spec("""model m {
  input x: [batch, 2]
  h = x -> enc: dense(4) -> sign
  out = h -> dense(1) -> sigmoid
  output out
}
train m { data = builtin("xor"); target y: [batch, 1]; loss = mse(out, y) }
""")
    err = check_errors(spec, capsys)
    assert ":3:29: error: backprop cannot train this model: enc would receive no gradient; " \
           "sign has no gradient" in err and "or freeze enc" in err
    fixed = spec.read_text().replace('loss = mse(out, y)', 'loss = mse(out, y); freeze = [enc]')
    spec.write_text(fixed)
    assert main(["check", str(spec)]) == 0


def test_settings_the_trainer_does_not_read_are_errors_where_written(write_spec, capsys) -> None:  # type: ignore[no-untyped-def]
    spec = write_spec("""model hopfield {
  input x: [batch, 16]
  recalled = x -> memory: hopfield(steps=10)
  output recalled
}
train hopfield {
  data      = builtin("hopfield16")
  trainer   = hebbian()
  loss      = mse(recalled, x)
  optimizer = sgd(lr=0.1)
  epochs    = 5
}
""")
    err = check_errors(spec, capsys)
    lines = [line for line in err.splitlines() if ": error: " in line]
    assert [line.split(": error: ")[1] for line in lines] == [
        "trainer 'hebbian' does not use 'loss'", "trainer 'hebbian' does not use 'optimizer'",
        "trainer 'hebbian' does not use 'epochs'"]
    assert [line.split(":")[1] for line in lines] == ["9", "10", "11"]


def test_early_stop_on_validation_loss_without_a_split_is_an_error(write_spec, capsys) -> None:  # type: ignore[no-untyped-def]
    spec = gate(write_spec, "  loss = mse(out, y)\n  early_stop = patience(3)", unit="sigmoid")
    err = check_errors(spec, capsys)
    assert ":9:16: error: early_stop monitors 'val_loss', but no validation rows are held " \
           "out" in err and "split" in err
    ok = gate(write_spec, "  loss = mse(out, y)\n  early_stop = patience(3, monitor=loss)",
              unit="sigmoid")
    assert main(["check", str(ok)]) == 0


def test_a_monitor_nothing_records_is_an_error(write_spec, capsys) -> None:  # type: ignore[no-untyped-def]
    spec = gate(write_spec, "  loss = mse(out, y)\n  split = 0.25\n"
                "  early_stop = patience(3, monitor=val_accuracy)", unit="sigmoid")
    err = check_errors(spec, capsys)
    assert "early_stop monitors 'val_accuracy', which this run does not record" in err


def test_metrics_without_a_target_are_an_error(write_spec, capsys) -> None:  # type: ignore[no-untyped-def]
    spec = write_spec("""model ae {
  input x: [batch, 2]
  xhat = x -> dense(2) -> sigmoid
  output xhat
}
train ae { data = builtin("xor"); loss = mse(xhat, x); metrics = [accuracy] }
""")
    err = check_errors(spec, capsys)
    assert ":6:56: error: metrics compare the model's output with a target" in err


def test_trainer_model_names_are_checked(write_spec, capsys) -> None:  # type: ignore[no-untyped-def]
    spec = write_spec("""model g {
  input z: [batch, 2]
  s = z -> dense(2)
  output s
}
train g {
  data = builtin("spirals")
  trainer = adversarial(generator=g, discriminator=disc)
}
""")
    err = check_errors(spec, capsys)
    assert ":8:13: error: adversarial's discriminator 'disc' names no model of this spec" in err


def test_phases_may_change_trainer_and_a_setting_no_phase_reads_is_an_error(
        write_spec, capsys) -> None:  # type: ignore[no-untyped-def]
    spec = gate(write_spec, "  optimizer = sgd(lr=0.1)\n"
                "  phase rule { trainer = perceptron(lr=0.5); epochs = 5 }")
    err = check_errors(spec, capsys)
    assert ":8:3: error: no phase's trainer reads 'optimizer'" in err


def test_check_grad_names_the_layers_it_skips(write_spec, capsys) -> None:  # type: ignore[no-untyped-def]
    spec = gate(write_spec, "  trainer = perceptron()")
    assert main(["check", "--grad", str(spec)]) == 0
    out = capsys.readouterr().out
    assert "no gradients to check" in out
    assert "skipped gate.dense_1: the model has no gradient: step (line 3) has none" in out


def test_a_backend_without_the_device_is_an_error(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    code = main(["train", str(ROOT / "specs" / "xor.nn"), "--backend", "numpy", "--device",
                 "cuda", "--run-dir", str(tmp_path / "run"), "--quiet"])
    assert code == 1
    assert "--device cuda: the numpy backend runs on cpu only" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(("spec", "step"), [("perceptron_and", 6), ("adaline_or", 9)])
def test_a_stopped_rule_run_resumes_exactly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            spec: str, step: int) -> None:
    from .conftest import assert_same_run, stop_after_step

    args = ["train", str(ROOT / "specs" / f"{spec}.nn"), "--backend", "numpy", "--quiet",
            "--checkpoint-every", "0", "--run-dir"]
    assert main([*args, str(tmp_path / "whole")]) == 0
    with monkeypatch.context() as patch:
        stop_after_step(patch, step)
        assert main([*args, str(tmp_path / "stopped")]) == 130
    assert main(["train", "--resume", str(tmp_path / "stopped"), "--quiet"]) == 0
    assert_same_run(tmp_path / "whole", tmp_path / "stopped")


def test_a_metric_that_cannot_score_the_output_is_refused_at_its_line(  # type: ignore[no-untyped-def]
        write_spec, capsys: pytest.CaptureFixture[str]) -> None:
    spec = write_spec("""model m {
  input x: [batch, 2]
  probs = x -> dense(3) -> softmax
  output probs
}
train m {
  data = builtin("spirals"); target y: [batch]
  loss = cross_entropy(probs, y)
  metrics = [accuracy, roc_auc]
}
""")
    err = check_errors(spec, capsys)
    assert ":9:24: error: metric 'roc_auc' cannot score output 'probs'" in err
    assert "received: [batch, 3]" in err and "accuracy" not in err.split("error:")[1][:40]
