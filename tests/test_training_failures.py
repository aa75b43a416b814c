"""Training that cannot go on says why and loses nothing: non-finite losses and gradients stop
with the epoch, step and likely cause and keep the last good checkpoint; unwritable, full or
occupied run directories are refused before training starts; damaged checkpoints are refused."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from nndsl.backends.numpy.engine import NumpyEngine

from nndsl import files
from nndsl.cli import main
from nndsl.training import checkpoint

from .conftest import ROOT

SPEC = ROOT / "specs" / "digits_mlp.nn"
EXPLODING = """
model m { input x: [batch, 2]
  out = x -> dense(1, init=normal(0, 10))
  output out }
train m { data = builtin("xor"); target y: [batch, 1]; loss = mse(out, y)
  optimizer = sgd(lr=1e6); batch = 4; epochs = 50 }
"""


def _train(run_dir: Path, *extra: str, spec: Path = SPEC) -> int:
    return main(["train", str(spec), "--backend", "numpy", "--epochs", "2", "--run-dir",
                 str(run_dir), "--quiet", *extra])


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_an_exploding_loss_keeps_the_last_good_checkpoint(tmp_path: Path, write_spec, capsys,
                                                          backend: str) -> None:  # type: ignore[no-untyped-def]
    if backend == "torch":
        pytest.importorskip("torch")
    run_dir = tmp_path / "run"
    code = main(["train", str(write_spec(EXPLODING)), "--backend", backend, "--device", "cpu",
                 "--run-dir", str(run_dir), "--quiet"])
    err = capsys.readouterr().err
    assert code == 1
    assert "error: the loss became non-finite at epoch" in err
    assert "the learning rate (sgd at 1e+06) is likely too high" in err
    assert "or add `clip = norm(1.0)`" in err and "RuntimeWarning" not in err
    saved = checkpoint.load(run_dir / checkpoint.NAME)
    assert f"the last good checkpoint (epoch {saved.meta['epoch']}" in err
    assert all(np.isfinite(w).all() for ws in saved.weights.values() for w in ws.values())
    assert not (run_dir / "weights.npz").exists()
    assert (run_dir / "metrics.csv").exists()


class PoisonedEngine(NumpyEngine):
    """A finite loss whose gradient turns NaN at step 6, as a log(0) in a model would."""

    calls = 0

    def loss_and_grad(self, *args: Any, **kwargs: Any) -> tuple[float, dict, dict]:
        loss, grads, updates = super().loss_and_grad(*args, **kwargs)
        PoisonedEngine.calls += 1
        if PoisonedEngine.calls == 6:
            name = sorted(grads)[0]
            grads[name] = grads[name] * math.nan
        return loss, grads, updates


def test_a_non_finite_gradient_with_a_finite_loss_names_the_weight(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr("nndsl.backends.numpy.engine.NumpyEngine", PoisonedEngine)
    code = main(["train", str(ROOT / "specs" / "xor.nn"), "--backend", "numpy", "--run-dir",
                 str(tmp_path / "run"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 1
    assert "error: the gradient of " in err and "became non-finite at epoch 6, step 6" in err
    assert "a log or division of zero in the model or loss is likely" in err


def test_a_run_directory_that_holds_a_run_is_not_overwritten(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    run_dir = tmp_path / "run"
    assert _train(run_dir) == 0
    before = (run_dir / "weights.npz").read_bytes()
    assert _train(run_dir) == 1
    err = capsys.readouterr().err
    assert "already holds a run" in err and f"nndsl train --resume {run_dir}" in err
    assert (run_dir / "weights.npz").read_bytes() == before
    assert _train(run_dir, "--overwrite") == 0


@pytest.mark.parametrize("where", ["under-a-file", "proc"])
def test_an_unwritable_run_directory_fails_before_training(tmp_path: Path, capsys,
                                                           where: str) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "file").write_text("x")
    run_dir = tmp_path / "file" / "run" if where == "under-a-file" else Path("/proc/nndsl-run")
    assert _train(run_dir) == 1
    err = capsys.readouterr().err
    assert f"error: cannot write the run directory {run_dir}" in err
    assert "epoch" not in err


def test_a_nearly_full_disk_fails_before_training(tmp_path: Path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(files.shutil, "disk_usage", lambda path: SimpleNamespace(free=4096))
    assert _train(tmp_path / "run") == 1
    err = capsys.readouterr().err
    assert "has 0.0 MiB free" in err and "expected: at least" in err
    assert not (tmp_path / "run" / checkpoint.NAME).exists()


def test_a_disk_that_is_full_fails_at_the_first_checkpoint(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    """/dev/full fails every write with ENOSPC, as a full disk does; the checkpoint written
    before the first epoch finds it before any training is done."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / (checkpoint.NAME + ".tmp")).symlink_to("/dev/full")
    assert _train(run_dir) == 1
    err = capsys.readouterr().err
    assert f"cannot write {run_dir / checkpoint.NAME}: the disk is full" in err
    assert "epoch" not in err and not (run_dir / checkpoint.NAME).exists()


def _rewrite_meta(path: Path, **changes: Any) -> None:
    with np.load(path, allow_pickle=False) as archive:
        arrays = {k: archive[k] for k in archive.files}
    meta = {**json.loads(arrays["meta"].tobytes()), **changes}
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    np.savez(path, **arrays)


@pytest.mark.parametrize("changes, message", [
    ({"epoch": "three"}, "its record's 'epoch' is 'three'"),
    ({"step": -4}, "its record's 'step' is -4"),
    ({"history": None}, "its record's 'history' is None"),
    ({"backend": "cuda-magic"}, "its record's 'backend' is 'cuda-magic'"),
])
def test_a_damaged_checkpoint_record_is_refused(tmp_path: Path, capsys, changes: dict,
                                                message: str) -> None:  # type: ignore[no-untyped-def]
    run_dir = tmp_path / "run"
    assert _train(run_dir) == 0
    _rewrite_meta(run_dir / checkpoint.NAME, **changes)
    assert main(["train", "--resume", str(run_dir), "--quiet"]) == 1
    assert message in capsys.readouterr().err


def test_a_checkpoint_of_another_model_is_refused(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    run_dir = tmp_path / "run"
    assert _train(run_dir) == 0
    spec = (run_dir / "spec.nn").read_text().replace("dense(64)", "dense(32)")
    (run_dir / "spec.nn").write_text(spec)
    assert main(["train", "--resume", str(run_dir), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "weight 'dense_2.weight' does not match the spec" in err
    assert "expected: float32[32, 128]" in err and "received: float32[64, 128]" in err
