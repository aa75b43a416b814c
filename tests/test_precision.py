"""Step options: `precision = bf16 | fp16 | f32` (torch autocast; fp16 with a loss scale that
a checkpoint keeps) and `compile = true` / `--compile` (torch.compile). The weights and the
export stay float32 and the export is verified; the NumPy backend refuses both at the line."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from nndsl.cli import main

from .conftest import ROOT, assert_same_run, stop_after_step

pytest.importorskip("torch")

DIGITS = (ROOT / "specs" / "digits_mlp.nn").read_text(encoding="utf-8")


def _spec(tmp_path: Path, *settings: str) -> Path:
    extra = "".join(f"  {s}\n" for s in settings)
    path = tmp_path / "spec.nn"
    path.write_text(DIGITS.replace("  seed       = 0\n", "  seed       = 0\n" + extra),
                    encoding="utf-8")
    return path


def _train(spec: Path, run_dir: Path, *extra: str, backend: str = "torch") -> int:
    return main(["train", str(spec), "--backend", backend, "--device", "cpu", "--run-dir",
                 str(run_dir), "--quiet", "--checkpoint-every", "0", *extra])


def _losses(run_dir: Path) -> list[float]:
    with open(run_dir / "metrics.csv", encoding="utf-8") as f:
        return [float(r["loss"]) for r in csv.DictReader(f) if r["kind"] == "epoch"]


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_trains_and_exports_float32(tmp_path: Path, precision: str) -> None:
    run = tmp_path / "run"
    assert _train(_spec(tmp_path, f"precision = {precision}"), run, "--epochs", "4") == 0
    losses = _losses(run)
    assert losses[-1] < 0.35 * losses[0], losses  # measured: 1.89 -> 0.33 (f32 1.88 -> 0.33)
    with np.load(run / "weights.npz") as weights:
        assert {weights[k].dtype for k in weights.files} == {np.dtype("float32")}
    assert (run / "model.onnx").exists()  # written only once checked against NumPy
    assert main(["verify", str(tmp_path / "spec.nn"), "--weights", str(run)]) == 0


def test_fp16_keeps_its_loss_scale_in_the_checkpoint(tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert _train(_spec(tmp_path, "precision = fp16"), run, "--epochs", "1") == 0
    from nndsl.training import checkpoint

    record = checkpoint.load(run / checkpoint.NAME).meta["ended"]["record"]  # the stage's end
    assert record["loss_scale"] == {"scale": 65536.0, "good": 45}  # 45 steps, none overflowed


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_a_stopped_mixed_precision_run_resumes_exactly(tmp_path: Path, precision: str) -> None:
    spec = _spec(tmp_path, f"precision = {precision}")
    with pytest.MonkeyPatch.context() as patch:
        stop_after_step(patch, 50)
        assert _train(spec, tmp_path / "stopped", "--epochs", "3") == 130
    assert main(["train", "--resume", str(tmp_path / "stopped"), "--quiet"]) == 0
    assert _train(spec, tmp_path / "whole", "--epochs", "3") == 0
    assert_same_run(tmp_path / "whole", tmp_path / "stopped")


def test_a_damaged_loss_scale_is_refused_on_resume(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    from nndsl.training import checkpoint

    spec = _spec(tmp_path, "precision = fp16")
    with pytest.MonkeyPatch.context() as patch:
        stop_after_step(patch, 5)
        assert _train(spec, tmp_path / "run", "--epochs", "2") == 130
    path = tmp_path / "run" / checkpoint.NAME
    with np.load(path) as archive:
        arrays = {k: archive[k] for k in archive.files}
    meta = json.loads(arrays["meta"].tobytes())
    meta["record"]["loss_scale"]["scale"] = 3.0
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    np.savez(path, **arrays)
    assert main(["train", "--resume", str(tmp_path / "run"), "--quiet"]) == 1
    assert "loss_scale" in capsys.readouterr().err


@pytest.mark.parametrize("setting", ["precision = bf16", "compile = true"])
def test_numpy_refuses_torch_step_options_at_the_line(tmp_path: Path, setting: str,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    spec = _spec(tmp_path, setting)
    assert _train(spec, tmp_path / "run", "--epochs", "1", backend="numpy") == 1
    err = capsys.readouterr().err
    line = 1 + spec.read_text(encoding="utf-8").splitlines().index(f"  {setting}")
    assert f"spec.nn:{line}:" in err and "needs the torch backend" in err
    assert "--backend torch" in err
    assert not (tmp_path / "run").exists()


def test_precision_f32_is_accepted_on_numpy(tmp_path: Path) -> None:
    assert _train(_spec(tmp_path, "precision = f32"), tmp_path / "run", "--epochs", "1",
                  backend="numpy") == 0


def test_compile_flag_is_refused_with_resume(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--resume", "somewhere", "--compile"]) == 2
    assert "--compile" in capsys.readouterr().err


@pytest.mark.slow
def test_compiled_training_trains_like_the_plain_step(tmp_path: Path) -> None:
    """torch.compile's kernels round differently: the run is close, not equal."""
    spec = _spec(tmp_path)
    assert _train(spec, tmp_path / "plain", "--epochs", "2") == 0
    assert _train(spec, tmp_path / "compiled", "--epochs", "2", "--compile") == 0
    np.testing.assert_allclose(_losses(tmp_path / "compiled"), _losses(tmp_path / "plain"),
                               rtol=1e-4)
    config = json.loads((tmp_path / "compiled" / "config.json").read_text(encoding="utf-8"))
    assert "compile" in json.dumps(config)


def test_fp16_skips_a_step_whose_gradient_overflows_and_halves_the_scale(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from nndsl.backends.torch import precision

    from nndsl.training import checkpoint

    monkeypatch.setattr(precision.LossScale.__init__, "__defaults__", (2.0**140, 0))
    run = tmp_path / "run"
    assert _train(_spec(tmp_path, "precision = fp16"), run, "--epochs", "2") == 0
    scale = checkpoint.load(run / checkpoint.NAME).meta["ended"]["record"]["loss_scale"]
    assert scale["scale"] < 2.0**128 and scale["good"] < 90  # some of the 90 steps skipped
    losses = _losses(run)
    assert losses[-1] < losses[0]
