"""The painter draws a run's pictures in a forked child: the same bytes as drawing them here,
and nothing lost when the child dies, fails a request, or is sent the signals that stop a run
(the parent handles those, then asks for the plots)."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import pytest

from nndsl.errors import NndslError
from nndsl.program import load
from nndsl.training import painter as painting
from nndsl.training.painter import Painter
from nndsl.training.stages import History

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="the child is forked on Linux only")

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
def program(tmp_path_factory: pytest.TempPathFactory) -> object:
    spec = tmp_path_factory.mktemp("spec") / "clf.nn"
    spec.write_text(SPEC, encoding="utf-8")
    return load(spec)[0]


def _paint(painter: Painter, path: Path) -> None:
    path.mkdir(exist_ok=True)
    painter.network("clf", path)
    painter.history(path, History(list(ROWS)), None)
    painter.finish()


def _drawn_here(program: object, path: Path) -> dict[str, bytes]:
    with Painter.start(program, quiet=True, fork=False) as here:
        assert here.pid is None
        _paint(here, path)
    return {name: (path / name).read_bytes() for name in FILES}


def test_the_child_draws_the_same_files_as_the_parent(program: object, tmp_path: Path) -> None:
    with Painter.start(program, quiet=True) as painter:
        assert painter.pid is not None
        _paint(painter, tmp_path / "child")
        assert painter.pid is not None  # every request was the child's: none redone here
    want = _drawn_here(program, tmp_path / "here")
    assert {n: (tmp_path / "child" / n).read_bytes() for n in FILES} == want


def test_a_dead_child_is_replaced_by_the_parent(program: object, tmp_path: Path) -> None:
    with Painter.start(program, quiet=True) as painter:
        os.kill(painter.pid, signal.SIGKILL)
        _paint(painter, tmp_path / "run")
        assert painter.pid is None
    want = _drawn_here(program, tmp_path / "here")
    assert {n: (tmp_path / "run" / n).read_bytes() for n in FILES} == want


def test_a_request_the_child_fails_is_redone_here_and_raises(program: object,
                                                             tmp_path: Path) -> None:
    (tmp_path / "loss.png").mkdir()  # a folder where the plot goes: it cannot be written
    with Painter.start(program, quiet=True) as painter:
        painter.history(tmp_path, History(list(ROWS)), None)
        with pytest.raises(NndslError, match=r"cannot write .*loss\.png"):
            painter.finish()
        assert painter.pid is None  # the child was let go, the parent tried it itself


def test_the_child_leaves_the_stop_signals_to_the_parent(program: object,
                                                         tmp_path: Path) -> None:
    with Painter.start(program, quiet=True) as painter:
        painter.network("clf", tmp_path)
        painter.finish()  # the child is serving, its handlers set
        for name in ("SIGINT", "SIGTERM", "SIGHUP"):
            os.kill(painter.pid, getattr(signal, name))
        painter.history(tmp_path, History(list(ROWS)), None)
        painter.finish()
        assert painter.pid is not None  # it answered: it is still there
    assert all((tmp_path / name).is_file() for name in FILES)


def test_a_child_let_go_with_work_left_is_killed_and_reaped(program: object,
                                                            tmp_path: Path) -> None:
    painter = Painter.start(program, quiet=True)
    pid = painter.pid
    painter.history(tmp_path, History(list(ROWS) * 50), None)
    painter.close()
    deadline = time.monotonic() + 10
    while pid in painting._EXITING and time.monotonic() < deadline:
        painting._reap()
        time.sleep(0.01)
    assert pid not in painting._EXITING
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def test_a_model_too_big_to_draw_is_said_once_by_the_parent(
        program: object, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    def too_big(*args: object) -> str:
        return "the picture would be 90,000 pixels wide"

    monkeypatch.setitem(painting.JOBS, "network", too_big)  # inherited by the child
    with Painter.start(program, quiet=False) as painter:
        painter.network("clf", tmp_path)
        painter.finish()
    assert capsys.readouterr().err == (
        "network.svg not written: the picture would be 90,000 pixels wide\n")


KILLED_PARENT = """
import os, signal, sys, time
from pathlib import Path
from nndsl.files import lock_run_dir
from nndsl.program import load
from nndsl.training import painter as painting

painting.JOBS["network"] = lambda *args: time.sleep(600)  # a child busy when its parent dies
run = Path(sys.argv[1])
with lock_run_dir(run):
    painter = painting.Painter.start(load(sys.argv[2])[0], quiet=True)
    print(painter.pid, flush=True)
    painter.network("clf", run)
    time.sleep(0.5)
    os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_killed_parent_leaves_neither_its_lock_nor_its_child(tmp_path: Path) -> None:
    import subprocess

    from nndsl.files import lock_run_dir

    spec = tmp_path / "clf.nn"
    spec.write_text(SPEC, encoding="utf-8")
    run = tmp_path / "run"
    done = subprocess.run([sys.executable, "-c", KILLED_PARENT, str(run), str(spec)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == -signal.SIGKILL, done.stderr
    child = int(done.stdout)
    with lock_run_dir(run):  # free at once: the child closed its copy of the lock file
        pass
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and Path(f"/proc/{child}").exists():
        time.sleep(0.01)
    assert not Path(f"/proc/{child}").exists()  # killed with its parent, reaped by init
