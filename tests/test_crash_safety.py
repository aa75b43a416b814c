"""Training survives being killed: SIGKILL at random moments (also inside checkpoint writes) and
resumed, again and again, ends with exactly the weights and metrics of a run never interrupted;
the checkpoint on disk always loads; Ctrl-C checkpoints mid-epoch and stops with exit 130."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from nndsl.cli import main
from nndsl.errors import NndslError
from nndsl.training import checkpoint
from nndsl.training.run import Checkpointer
from nndsl.training.session import Position
from nndsl.training.trainers.backprop import BackpropLoop

from .conftest import ROOT

SPEC = ROOT / "specs" / "digits_mlp.nn"
EPOCHS = 8
# Runs the CLI in a child whose checkpoint writes pause between writing the temporary file and
# renaming it, so a kill can be aimed into the middle of a write.
SLOW_WRITES = """
import os, sys, time
import nndsl.files
real_fsync = os.fsync
def slow_fsync(fd):
    time.sleep(float(os.environ["PAUSE"]))
    real_fsync(fd)
nndsl.files.os.fsync = slow_fsync
from nndsl.cli import main
from nndsl.errors import NndslError
sys.exit(main(sys.argv[1:]))
"""


def _args(run_dir: Path, backend: str = "numpy") -> list[str]:
    return ["train", str(SPEC), "--backend", backend, "--device", "cpu", "--epochs",
            str(EPOCHS), "--run-dir", str(run_dir), "--quiet", "--checkpoint-every", "0"]


def _child(args: list[str], pause: float = 0.0) -> subprocess.Popen[bytes]:
    code = ["-c", SLOW_WRITES] if pause else ["-m", "nndsl.cli"]
    env = {**os.environ, "PAUSE": str(pause)}
    return subprocess.Popen([sys.executable, *code, *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, env=env, cwd=ROOT)


def _assert_same_run(whole: Path, other: Path) -> None:
    want, got = np.load(whole / "weights.npz"), np.load(other / "weights.npz")
    assert sorted(want.files) == sorted(got.files)
    for name in want.files:
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)
    assert (whole / "metrics.csv").read_text() == (other / "metrics.csv").read_text()


KILLS = 10


def _stamp(path: Path) -> int | None:
    try:
        return path.stat().st_mtime_ns
    except FileNotFoundError:
        return None


def _kill_and_resume_until_done(run_dir: Path, rng: random.Random, span: float,
                                pause: float) -> tuple[int, int]:
    """Start (or resume) training and SIGKILL it after a random delay, until a run finishes.
    With `pause`, each kill waits for the next checkpoint write to begin and lands inside it.

    Returns (kills, kills that left a checkpoint write half done)."""
    kills = mid_write = 0
    tmp = run_dir / (checkpoint.NAME + ".tmp")
    while True:
        resumable = (run_dir / checkpoint.NAME).exists()
        args = ["train", "--resume", str(run_dir), "--quiet"] if resumable else \
            [*_args(run_dir), "--overwrite"]
        stale = _stamp(tmp)  # a write an earlier kill cut short
        child = _child(args, pause)
        try:
            child.wait(timeout=rng.uniform(0.1, 1.0) * span)
        except subprocess.TimeoutExpired:
            while pause and _stamp(tmp) in (None, stale) and child.poll() is None:
                time.sleep(0.002)
        if child.poll() is None:
            child.send_signal(signal.SIGKILL)
            child.wait()
            kills += 1
            mid_write += _stamp(tmp) not in (None, stale)
            if (run_dir / checkpoint.NAME).exists():
                checkpoint.load(run_dir / checkpoint.NAME)  # never a damaged checkpoint
            continue
        stderr = child.stderr.read().decode() if child.stderr else ""
        assert child.returncode == 0, stderr
        return kills, mid_write


@pytest.mark.parametrize("pause", [0.0, 0.05], ids=["random-moments", "inside-writes"])
def test_random_sigkills_and_resumes_end_like_an_uninterrupted_run(tmp_path: Path,
                                                                   pause: float) -> None:
    whole = tmp_path / "whole"
    began = time.monotonic()
    child = _child(_args(whole), pause)
    assert child.wait(timeout=300) == 0
    span = time.monotonic() - began
    rng, kills, mid_write, trial = random.Random(7), 0, 0, 0
    while kills < KILLS:  # trials until enough kills; each must end like the whole run
        trial += 1
        broken = tmp_path / f"broken{trial}"
        more, inside = _kill_and_resume_until_done(broken, rng, span, pause)
        kills, mid_write = kills + more, mid_write + inside
        _assert_same_run(whole, broken)
    if pause:
        assert mid_write >= KILLS // 2, "kills did not land inside checkpoint writes"


def test_sigint_checkpoints_and_resumes_exactly(tmp_path: Path) -> None:
    whole, stopped = tmp_path / "whole", tmp_path / "stopped"
    assert main(_args(whole)) == 0
    child = _child(_args(stopped))
    deadline = time.monotonic() + 120
    while not _epochs_done(stopped) and time.monotonic() < deadline:
        time.sleep(0.01)
    child.send_signal(signal.SIGINT)
    assert child.wait(timeout=120) == 130
    stderr = child.stderr.read().decode() if child.stderr else ""
    assert "checkpoint written; continue with `nndsl train --resume" in stderr
    assert "Traceback" not in stderr
    assert main(["train", "--resume", str(stopped), "--quiet"]) == 0
    _assert_same_run(whole, stopped)


def _epochs_done(run_dir: Path) -> bool:
    try:
        return checkpoint.load(run_dir / checkpoint.NAME).meta["epoch"] >= 1
    except NndslError:  # not written yet
        return False


def test_ctrl_c_mid_epoch_checkpoints_that_step(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    """The stop lands after step 17, inside epoch 1: the checkpoint holds that exact position."""
    whole, stopped = tmp_path / "whole", tmp_path / "stopped"
    assert main(_args(whole)) == 0
    update = BackpropLoop.update

    def update_then_interrupt(self: BackpropLoop, *args: object) -> float:
        loss = update(self, *args)  # type: ignore[arg-type]
        if self.s.step == 17:
            signal.raise_signal(signal.SIGINT)
        return loss

    monkeypatch.setattr(BackpropLoop, "update", update_then_interrupt)
    assert main(_args(stopped)) == 130
    assert "stopped at epoch 1, step 17: checkpoint written" in capsys.readouterr().err
    meta = checkpoint.load(stopped / checkpoint.NAME).meta
    record = meta["record"]
    assert (meta["epoch"], record["batch"], meta["step"], len(record["losses"])) == \
        (0, 17, 17, 17)
    assert not (stopped / "weights.npz").exists()
    assert (stopped / "metrics.csv").exists()
    monkeypatch.setattr(BackpropLoop, "update", update)
    assert main(["train", "--resume", str(stopped), "--quiet"]) == 0
    _assert_same_run(whole, stopped)


def test_epoch_checkpoints_are_rate_limited_but_phase_ends_and_stops_are_not(
        tmp_path: Path) -> None:
    session = SimpleNamespace(weights={"m": {"w": np.ones(2)}}, step=0,
                              history=SimpleNamespace(rows=[]),
                              diagnostics=SimpleNamespace(rows=[]))
    hook = Checkpointer(tmp_path, session, {"backend": "numpy"}, every=3600.0)  # type: ignore[arg-type]
    epochs = []
    for epoch in range(1, 4):
        session.step = 10 * epoch
        hook(Position(0, epoch, {"rng": None}), must=False)
        epochs.append(checkpoint_meta(tmp_path)["epoch"])
    assert epochs == [1, 1, 1]  # the first epoch's, until an hour has passed
    hook(Position(0, 3, {"rng": None, "batch": 4}), must=True)
    meta = checkpoint_meta(tmp_path)
    assert (meta["epoch"], meta["record"]["batch"]) == (3, 4)


def checkpoint_meta(folder: Path) -> dict:
    with np.load(folder / checkpoint.NAME, allow_pickle=False) as archive:
        return json.loads(archive["meta"].tobytes())
