"""A training run killed with SIGKILL and resumed ends with exactly the weights of a run that was
never interrupted; checkpoints on disk are always complete; bad checkpoints are refused."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from nndsl.cli import main

from .conftest import ROOT, kill_once_checkpointed

SPEC = ROOT / "specs" / "digits_mlp.nn"


def _train_args(run_dir: Path, backend: str) -> list[str]:
    return ["train", str(SPEC), "--backend", backend, "--device", "cpu", "--epochs", "12",
            "--run-dir", str(run_dir), "--quiet", "--checkpoint-every", "0"]


def _kill_midway(run_dir: Path, backend: str) -> int:
    """Start training in a child process and SIGKILL it once a mid-run checkpoint exists."""
    return kill_once_checkpointed(_train_args(run_dir, backend), run_dir, 3)


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_killed_run_resumes_exactly(tmp_path: Path, backend: str) -> None:
    if backend == "torch":
        pytest.importorskip("torch")
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    assert main(_train_args(whole, backend)) == 0
    stopped_at = _kill_midway(broken, backend)
    assert 3 <= stopped_at < 12
    assert main(["train", "--resume", str(broken), "--quiet"]) == 0
    want, got = np.load(whole / "weights.npz"), np.load(broken / "weights.npz")
    assert sorted(want.files) == sorted(got.files)
    for name in want.files:
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)
    assert (whole / "metrics.csv").read_text() == (broken / "metrics.csv").read_text()


def test_a_pickle_renamed_as_checkpoint_is_refused(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "spec.nn").write_text(SPEC.read_text())
    (tmp_path / "checkpoint.npz").write_bytes(pickle.dumps({"weights": np.zeros(3)}))
    assert main(["train", "--resume", str(tmp_path), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "is not a valid nndsl checkpoint" in err and "never unpickled" in err


def test_a_truncated_checkpoint_is_refused(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = tmp_path / "run"
    assert main(["train", str(SPEC), "--backend", "numpy", "--epochs", "1", "--run-dir",
                 str(run_dir), "--quiet"]) == 0
    data = (run_dir / "checkpoint.npz").read_bytes()
    (run_dir / "checkpoint.npz").write_bytes(data[: len(data) // 2])
    assert main(["train", "--resume", str(run_dir), "--quiet"]) == 1
    assert "is not a valid nndsl checkpoint" in capsys.readouterr().err


def test_resume_needs_a_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--resume", str(tmp_path), "--quiet"]) == 1
    assert "no checkpoint at" in capsys.readouterr().err
