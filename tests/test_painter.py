"""The painter's worker draws a run's pictures: the same bytes as drawing them here, one worker
kept for a process's later runs, and nothing lost when it dies, fails a request, or is sent the
signals that stop a run (the trainer handles those, then asks for the plots)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nndsl.errors import NndslError
from nndsl.program import load
from nndsl.training.painter import Painter
from nndsl.training.stages import History

pytestmark = pytest.mark.skipif(os.name != "posix", reason="the worker needs POSIX pipes")

SPEC = """model clf {
  input x: [batch, 4]
  h = x -> dense(8) -> relu
  probs = h -> dense(3) -> softmax
  output probs
}
"""
ROWS = [{"kind": "epoch", "phase": "train", "epoch": e, "step": 4 * e, "loss": 1.0 / e,
         "accuracy": 0.5 + e / 20, "val_loss": 1.2 / e, "val_accuracy": 0.45 + e / 20}
        for e in range(1, 7)]
FILES = ("network.svg", "metrics.csv", "loss.png", "plots/accuracy.png")


@pytest.fixture(scope="module")
def spec(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("spec") / "clf.nn"
    path.write_text(SPEC, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def program(spec: Path) -> object:
    return load(spec)[0]


def _paint(painter: Painter, program: object, path: Path) -> None:
    path.mkdir(exist_ok=True)
    painter.network(program, "clf", path)
    painter.history(path, History(list(ROWS)), None)
    painter.finish()


def _files(path: Path) -> dict[str, bytes]:
    return {name: (path / name).read_bytes() for name in FILES}


def _drawn_here(program: object, path: Path) -> dict[str, bytes]:
    with Painter.start(quiet=True, spawn=False) as here:
        assert here.worker is None
        _paint(here, program, path)
    return _files(path)


def _worker_pid() -> int:
    with Painter.start(quiet=True) as painter:
        assert painter.worker is not None
        return painter.worker.process.pid


def test_the_worker_draws_the_same_files_as_the_trainer(program: object,
                                                        tmp_path: Path) -> None:
    with Painter.start(quiet=True) as painter:
        assert painter.worker is not None
        _paint(painter, program, tmp_path / "worker")
        assert painter.worker is not None  # every request was the worker's: none redone here
    assert _files(tmp_path / "worker") == _drawn_here(program, tmp_path / "here")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc")
def test_an_idle_worker_prepares_a_few_figures_and_a_failure_stops_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from nndsl import plot
    from nndsl.training import painter

    monkeypatch.setattr(plot, "_SPARE", [])
    ready = [painter._prepare_spare() for _ in range(painter.SPARE_FIGURES + 1)]
    assert ready == [True] * painter.SPARE_FIGURES + [False]
    assert plot.spare_figures() == painter.SPARE_FIGURES

    def broken() -> None:
        raise RuntimeError("no canvas")

    monkeypatch.setattr(plot, "_SPARE", [])
    monkeypatch.setattr(plot, "prepare_figure", broken)
    assert painter._prepare_spare() is False  # the worker goes on, drawing on new figures


def test_the_worker_runs_on_one_thread_so_its_copies_fork_safely(program: object,
                                                                 tmp_path: Path) -> None:
    with Painter.start(quiet=True) as painter:
        painter.network(program, "clf", tmp_path)  # numpy, matplotlib and networkx at work
        painter.finish()
        status = Path(f"/proc/{painter.worker.process.pid}/status").read_text()
    assert status.split("Threads:")[1].split()[0] == "1"  # no BLAS thread pool


def _children(pid: int) -> set[int]:
    return {int(c) for t in Path(f"/proc/{pid}/task").iterdir()
            for c in (t / "children").read_text().split()}


def _helper_of(pid: int, not_this: int | None = None) -> int:
    """The worker's helper, once the idle worker has forked it."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        found = _children(pid) - {not_this}
        if found:
            (helper,) = found
            return helper
        time.sleep(0.05)
    raise AssertionError("the worker forked no helper")


@pytest.mark.skipif(not sys.platform.startswith("linux") or len(os.sched_getaffinity(0)) < 2,
                    reason="/proc, and a second core for the helper")
def test_the_worker_forks_a_helper_and_draws_without_one_that_died(program: object,
                                                                   tmp_path: Path) -> None:
    with Painter.start(quiet=True) as painter:
        worker = painter.worker.process.pid
        _paint(painter, program, tmp_path / "first")  # every other plot drawn by the helper
        helper = _helper_of(worker)
        os.kill(helper, signal.SIGKILL)
        _paint(painter, program, tmp_path / "second")
        assert painter.worker is not None  # the worker drew them all: nothing redone here
        assert _helper_of(worker, not_this=helper) != helper  # another, once idle again
    here = _drawn_here(program, tmp_path / "here")
    assert _files(tmp_path / "first") == here and _files(tmp_path / "second") == here


def test_later_runs_keep_the_worker_and_one_run_holds_it_at_a_time(program: object,
                                                                   tmp_path: Path) -> None:
    with Painter.start(quiet=True) as first:
        with Painter.start(quiet=True) as second:
            assert second.worker is None  # held by the first: the second draws here
            _paint(second, program, tmp_path / "second")
        pid = first.worker.process.pid
    assert _worker_pid() == pid
    assert _files(tmp_path / "second") == _drawn_here(program, tmp_path / "here")


def test_a_dead_worker_is_replaced_by_the_trainer_then_by_a_new_one(program: object,
                                                                    tmp_path: Path) -> None:
    pid = _worker_pid()
    with Painter.start(quiet=True) as painter:
        os.kill(pid, signal.SIGKILL)
        painter.worker.process.wait()
        _paint(painter, program, tmp_path / "run")
        assert painter.worker is None
    assert _files(tmp_path / "run") == _drawn_here(program, tmp_path / "here")
    assert _worker_pid() != pid


def test_a_request_the_worker_fails_is_redone_here_and_raises(program: object,
                                                              tmp_path: Path) -> None:
    (tmp_path / "loss.png").mkdir()  # a folder where the plot goes: it cannot be written
    with Painter.start(quiet=True) as painter:
        pid = painter.worker.process.pid
        painter.history(tmp_path, History(list(ROWS)), None)
        with pytest.raises(NndslError, match=r"cannot write .*loss\.png"):
            painter.finish()
        assert painter.worker is None  # let go of: the trainer tried it itself
    assert _worker_pid() != pid


def test_a_plot_drawn_beside_the_others_that_fails_raises_its_own_error(
        program: object, tmp_path: Path) -> None:
    (tmp_path / "plots" / "accuracy.png").mkdir(parents=True)  # the second plot, drawn by the
    with Painter.start(quiet=True) as painter:  # worker's helper, cannot be written
        painter.history(tmp_path, History(list(ROWS)), None)
        with pytest.raises(NndslError, match=r"cannot write .*accuracy\.png"):
            painter.finish()
    assert (tmp_path / "loss.png").is_file()


def test_the_worker_leaves_the_stop_signals_to_the_trainer(program: object,
                                                           tmp_path: Path) -> None:
    with Painter.start(quiet=True) as painter:
        painter.network(program, "clf", tmp_path)
        painter.finish()  # the worker is serving, its handlers set
        for name in ("SIGINT", "SIGTERM", "SIGHUP"):
            os.kill(painter.worker.process.pid, getattr(signal, name))
        painter.history(tmp_path, History(list(ROWS)), None)
        painter.finish()
        assert painter.worker is not None and painter.worker.alive()  # it answered
    assert all((tmp_path / name).is_file() for name in FILES)


def test_a_run_that_ends_with_work_left_kills_the_worker(program: object,
                                                         tmp_path: Path) -> None:
    with Painter.start(quiet=True) as painter:
        process = painter.worker.process
        painter.history(tmp_path, History(list(ROWS) * 50), None)
    assert process.wait(timeout=10) == -signal.SIGKILL  # its late answer reaches no one
    assert _worker_pid() != process.pid


def test_a_picture_that_is_not_drawn_is_said_by_the_trainer(
        program: object, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with Painter.start(quiet=False) as painter:
        painter.network(program, "clf", tmp_path / "missing")
        painter.finish()
        assert painter.worker is not None
    err = capsys.readouterr().err
    assert err.startswith("network.svg not written: cannot write") and "missing" in err


KILLED_PARENT = """
import os, signal, sys
from pathlib import Path
from nndsl.files import lock_run_dir
from nndsl.program import load
from nndsl.training.painter import Painter

run = Path(sys.argv[1])
with lock_run_dir(run):
    painter = Painter.start(quiet=True)
    painter.network(load(sys.argv[2])[0], "clf", run)
    painter.finish()  # the worker is serving: it asked to die with its parent
    worker = painter.worker.process.pid
    print(worker, flush=True)
    os.kill(worker, signal.SIGSTOP)  # a stopped worker cannot leave by itself
    os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG, /proc")
def test_a_killed_trainer_leaves_neither_its_lock_nor_its_worker(spec: Path,
                                                                 tmp_path: Path) -> None:
    from nndsl.files import lock_run_dir

    run = tmp_path / "run"
    done = subprocess.run([sys.executable, "-c", KILLED_PARENT, str(run), str(spec)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == -signal.SIGKILL, done.stderr
    worker = int(done.stdout)
    with lock_run_dir(run):  # free at once
        pass
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _running(worker):
        time.sleep(0.01)
    if _running(worker):
        os.kill(worker, signal.SIGKILL)
        pytest.fail("the worker outlived its parent")


def _running(pid: int) -> bool:
    """Whether `pid` exists and is not a zombie (killed, waiting to be reaped by init)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def test_a_followed_run_has_its_plots_drawn_ahead_with_the_same_bytes(program: object,
                                                                      tmp_path: Path) -> None:
    """Sent the epoch rows as they come, the worker draws the plots ahead while it waits (from
    the second half of the epochs on); the last row only adds its points to the falling loss
    (the rising accuracy passes a tick at the last epoch: drawn in full)."""
    with Painter.start(quiet=True) as painter:
        assert painter.worker is not None
        for attempt in range(6):  # the worker draws ahead when idle: give it longer each time
            path = tmp_path / f"ahead-{attempt}"
            path.mkdir()
            painter.network(program, "clf", path)
            painter.follow(len(ROWS), [])
            for row in ROWS[:-1]:
                painter.row(row)
            time.sleep(0.25 * 2 ** attempt)
            painter.row(ROWS[-1])
            painter.history(path, History(list(ROWS)), None)
            painter.finish()
            if painter.drawn_ahead:
                break
        assert painter.drawn_ahead == ["loss.png"]
        assert painter.worker is not None
    assert _files(path) == _drawn_here(program, tmp_path / "here")


def test_rows_are_not_sent_without_a_known_length_or_a_worker(program: object) -> None:
    with Painter.start(quiet=True, spawn=False) as here:
        here.follow(6, [])
        here.row(ROWS[0])  # nothing to send to: nothing happens
        assert not here.drawn_ahead
    with Painter.start(quiet=True) as painter:
        painter.follow(float("inf"), [])  # --steps without epochs: the length is unknown
        assert not painter._following
