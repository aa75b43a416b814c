"""Controlling a run from outside: one process per run directory (a killed holder's stale lock
does not block its resume), SIGTERM and SIGHUP stop like Ctrl-C and resume bit-identically on
NumPy and torch, and `--resume` refuses options that disagree with the stored run; `--extend`
trains a run longer exactly as if it had been started with more epochs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nndsl.cli import main
from nndsl.errors import NndslError
from nndsl.training import checkpoint

from .conftest import ROOT, assert_same_run, signal_after_step, stop_after_step

DIGITS = ROOT / "specs" / "digits_mlp.nn"
XOR = ROOT / "specs" / "xor.nn"
HOLD_LOCK = """
import sys, time
from pathlib import Path
from nndsl.files import lock_run_dir
with lock_run_dir(Path(sys.argv[1])):
    print("held", flush=True)
    time.sleep(600)
"""


def _args(spec: Path, run_dir: Path, *extra: str, backend: str = "numpy") -> list[str]:
    return ["train", str(spec), "--backend", backend, "--device", "cpu", "--run-dir",
            str(run_dir), "--quiet", "--checkpoint-every", "0", *extra]


def test_a_killed_holders_lock_does_not_block_its_resume(tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) \
        -> None:
    run_dir = tmp_path / "run"
    with pytest.MonkeyPatch.context() as patch:
        stop_after_step(patch, 3)
        assert main(_args(XOR, run_dir, "--epochs", "5")) == 130
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(run_dir)], cwd=ROOT,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        assert main(["train", "--resume", str(run_dir), "--quiet"]) == 1
        err = capsys.readouterr().err
        assert f"is in use by another nndsl process (PID {holder.pid})" in err
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert (run_dir / ".lock").read_text().strip() == str(holder.pid)  # stale, not locked
    assert main(["train", "--resume", str(run_dir), "--quiet"]) == 0
    assert main(_args(XOR, tmp_path / "whole", "--epochs", "5")) == 0
    assert_same_run(tmp_path / "whole", run_dir)


def _epoch_checkpointed(run_dir: Path) -> bool:
    try:
        return checkpoint.load(run_dir / checkpoint.NAME).meta["epoch"] >= 1
    except NndslError:
        return False


@pytest.mark.parametrize("backend, name", [
    ("numpy", "SIGTERM"), pytest.param("torch", "SIGTERM", marks=pytest.mark.slow),
    ("numpy", "SIGHUP")])
def test_a_signal_checkpoints_and_the_resume_is_bit_identical(
        tmp_path: Path, backend: str, name: str) -> None:
    """The signal arrives from outside, at whatever step the child has reached."""
    if backend == "torch":
        pytest.importorskip("torch")
    number = getattr(signal, name)
    whole, stopped = tmp_path / "whole", tmp_path / "stopped"
    assert main(_args(DIGITS, whole, "--epochs", "4", backend=backend)) == 0
    child = subprocess.Popen([sys.executable, "-m", "nndsl.cli",
                              *_args(DIGITS, stopped, "--epochs", "4", backend=backend)],
                             cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             text=True)
    deadline = time.monotonic() + 120
    while not _epoch_checkpointed(stopped) and child.poll() is None and \
            time.monotonic() < deadline:
        time.sleep(0.005)
    child.send_signal(number)
    assert child.wait(timeout=120) == 128 + number
    err = child.stderr.read() if child.stderr else ""
    assert f"checkpoint written; continue with `nndsl train --resume {stopped}` (stopped by " \
           f"{name})" in err
    assert "Traceback" not in err
    assert (stopped / "metrics.csv").exists() and not (stopped / "weights.npz").exists()
    assert main(["train", "--resume", str(stopped), "--quiet"]) == 0
    assert_same_run(whole, stopped)


def test_sigterm_mid_epoch_on_torch_resumes_exactly(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Deterministically inside an epoch: after step 17 of digits_mlp's 57 per epoch."""
    pytest.importorskip("torch")
    whole, stopped = tmp_path / "whole", tmp_path / "stopped"
    assert main(_args(DIGITS, whole, "--epochs", "2", backend="torch")) == 0
    signal_after_step(monkeypatch, 17, signal.SIGTERM)
    assert main(_args(DIGITS, stopped, "--epochs", "2", backend="torch")) == 143
    assert checkpoint.load(stopped / checkpoint.NAME).meta["record"]["batch"] == 17
    monkeypatch.undo()
    assert main(["train", "--resume", str(stopped), "--quiet"]) == 0
    assert_same_run(whole, stopped)


# -- --resume: options that disagree are errors, --extend trains longer ----------------------------

@pytest.fixture
def finished(tmp_path: Path) -> Path:
    run_dir = tmp_path / "run"
    assert main(_args(XOR, run_dir, "--epochs", "30")) == 0
    return run_dir


@pytest.mark.parametrize("extra, message", [
    (["--epochs", "50"], "--epochs 50 conflicts with the resumed run, started with 30"),
    (["--backend", "torch"], "--backend torch conflicts with the resumed run, started with numpy"),
    (["--device", "cuda"], "--device cuda conflicts with the resumed run, started with cpu"),
    (["--rng", "reference"], "--rng reference conflicts with the resumed run, started with "
                             "device"),
    (["--steps", "5"], "--steps 5 conflicts with the resumed run, started with no --steps"),
    (["--model", "other"], "--model other conflicts with the resumed run, started with xor"),
    (["--run-dir", "elsewhere"], "--run-dir elsewhere conflicts with the resumed run"),
    (["--overwrite"], "--overwrite starts a run again; it cannot go with --resume"),
    (["--extend"], "--extend needs --epochs N"),
    (["--extend", "--epochs", "20"], "--extend --epochs 20 does not extend the run: it was "
                                     "started for 30 epochs"),
])
def test_resume_refuses_options_that_disagree_with_the_run(
        finished: Path, capsys: pytest.CaptureFixture[str], extra: list[str],
        message: str) -> None:
    before = (finished / "weights.npz").read_bytes()
    assert main(["train", "--resume", str(finished), "--quiet", *extra]) == 1
    err = capsys.readouterr().err
    assert message in err
    assert (finished / "weights.npz").read_bytes() == before


def test_resume_accepts_options_that_agree(finished: Path) -> None:
    assert main(["train", str(XOR), "--resume", str(finished), "--epochs", "30", "--backend",
                 "numpy", "--device", "cpu", "--rng", "device", "--run-dir", str(finished),
                 "--quiet"]) == 0


def test_extend_needs_resume(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", str(XOR), "--extend", "--epochs", "5"]) == 2
    assert "--extend goes with --resume RUN_DIR" in capsys.readouterr().err


def test_extending_a_finished_run_equals_a_longer_run(finished: Path, tmp_path: Path) -> None:
    assert main(["train", "--resume", str(finished), "--epochs", "60", "--extend",
                 "--quiet"]) == 0
    assert main(_args(XOR, tmp_path / "long", "--epochs", "60")) == 0
    assert_same_run(tmp_path / "long", finished)
    assert checkpoint.load(finished / checkpoint.NAME).meta["epochs"] == 60


def test_extending_a_stopped_run_equals_a_longer_run(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    with pytest.MonkeyPatch.context() as patch:
        stop_after_step(patch, 10)
        assert main(_args(XOR, run_dir, "--epochs", "30")) == 130
    assert main(["train", "--resume", str(run_dir), "--epochs", "60", "--extend",
                 "--quiet"]) == 0
    assert main(_args(XOR, tmp_path / "long", "--epochs", "60")) == 0
    assert_same_run(tmp_path / "long", run_dir)


def test_a_run_limited_by_steps_is_not_extended(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = tmp_path / "run"
    assert main(_args(XOR, run_dir, "--steps", "7")) == 0
    assert main(["train", "--resume", str(run_dir), "--epochs", "60", "--extend",
                 "--quiet"]) == 1
    assert "this one was limited by --steps 7" in capsys.readouterr().err


def test_the_lock_names_this_process_while_it_runs(tmp_path: Path) -> None:
    from nndsl.files import lock_run_dir

    with lock_run_dir(tmp_path / "run"), lock_run_dir(tmp_path / "run"):  # nests
        assert (tmp_path / "run" / ".lock").read_text().strip() == str(os.getpid())


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_does_not_keep_its_parents_lock(tmp_path: Path) -> None:
    """A child forked while the run is held (a data worker, a user's own fork) closes its copy
    of the lock file as it starts: once the parent lets go (or is killed), the run is free
    though the child lives on."""
    from nndsl.files import RunLock, lock_run_dir

    wake, sleeper = os.pipe()
    started, ready = os.pipe()
    with lock_run_dir(tmp_path / "run"):
        pid = os.fork()
        if pid == 0:  # the child waits for the test, holding whatever it kept
            os.close(sleeper)
            os.write(ready, b"1" if RunLock.held else b"0")
            os.read(wake, 1)
            os._exit(0)
        assert os.read(started, 1) == b"0"  # it does not think it holds the run
    try:
        with lock_run_dir(tmp_path / "run"):  # free while the child lives
            assert (tmp_path / "run" / ".lock").read_text().strip() == str(os.getpid())
    finally:
        os.close(sleeper)  # the child reads end-of-file and exits
        os.waitpid(pid, 0)
        for fd in (wake, started, ready):
            os.close(fd)
