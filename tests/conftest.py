"""Shared fixtures: specs on disk, and running the CLI in-process."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
SPECS = sorted((ROOT / "specs").glob("*.nn"))
LANGUAGE_EXAMPLES = sorted((ROOT / "tests" / "language_examples").glob("*.nn"))



@pytest.fixture
def write_spec(tmp_path: Path):  # type: ignore[no-untyped-def]
    """Write a spec into a temp dir and return its path."""

    def write(text: str, name: str = "spec.nn") -> Path:
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        return path

    return write


def assert_arrays_match(got: Any, want: Any, tolerance: dict[str, float], what: str) -> None:
    """A backend's array against NumPy's: same shape and dtype; integers exactly, floats within
    `tolerance` (rtol, atol) — each parity suite states its own."""
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape, f"{what}: shape {got.shape}, NumPy gives {want.shape}"
    assert got.dtype == want.dtype, f"{what}: dtype {got.dtype}, NumPy gives {want.dtype}"
    if want.dtype.kind in "biu":
        np.testing.assert_array_equal(got, want, err_msg=what)
    else:
        np.testing.assert_allclose(got, want, **tolerance, err_msg=what)


def stop_after_step(monkeypatch: pytest.MonkeyPatch, step: int) -> None:
    """Make training stop (as Ctrl-C does) once `step` updates are done: any trainer that
    offers its position after each step then checkpoints exactly there and exits 130."""
    from nndsl.training.session import Session

    original = Session.stop_here

    def stop_here(self: Session, position: Any) -> None:
        if self.step == step:
            self.stop_requested = True
        original(self, position)

    monkeypatch.setattr(Session, "stop_here", stop_here)


def signal_after_step(monkeypatch: pytest.MonkeyPatch, step: int, number: int) -> None:
    """Send this process signal `number` (SIGINT, SIGTERM, ...) once `step` updates are done,
    as a user or a supervisor would mid-epoch: the run's own handler then stops it there."""
    import signal

    from nndsl.training.session import Session

    original = Session.stop_here

    def stop_here(self: Session, position: Any) -> None:
        if self.step == step and not self.stop_requested:
            signal.raise_signal(number)
        original(self, position)

    monkeypatch.setattr(Session, "stop_here", stop_here)


def assert_same_run(want: Any, got: Any) -> None:
    """Two run directories hold the same weights (bit for bit) and the same metrics.csv."""
    for file in sorted(p.name for p in want.glob("*weights.npz")):
        a, b = np.load(want / file), np.load(got / file)
        assert sorted(a.files) == sorted(b.files), file
        for name in a.files:
            np.testing.assert_array_equal(b[name], a[name], err_msg=f"{file}: {name}")
    assert (want / "metrics.csv").read_text() == (got / "metrics.csv").read_text()


def checkpoint_epoch(run: Path) -> int:
    """How far a run's checkpoint.npz has got, as epoch + 100 * phase; -1 while there is none
    (or it is being written): for tests that kill a run once it has got far enough."""
    import json

    try:
        with np.load(run / "checkpoint.npz", allow_pickle=False) as archive:
            meta = json.loads(archive["meta"].tobytes())
        return int(meta["epoch"]) + 100 * int(meta.get("stage", 0))
    except (OSError, KeyError, ValueError):
        return -1


def kill_once_checkpointed(args: list[str], run: Path, epoch: int) -> int:
    """Run `nndsl ARGS` in a child process and SIGKILL it once `run` holds a checkpoint at
    `epoch` or later; the checkpoint's position (as `checkpoint_epoch` counts it)."""
    import signal
    import subprocess
    import sys
    import time

    child = subprocess.Popen([sys.executable, "-m", "nndsl.cli", *args],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while checkpoint_epoch(run) < epoch and time.monotonic() < deadline:
        if child.poll() is not None:
            break
        time.sleep(0.005)
    still_running = child.poll() is None
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert still_running, "training finished before it could be interrupted"
    return checkpoint_epoch(run)
