"""A run's pictures, drawn beside the training by a child process forked when the run starts.

matplotlib and networkx take about 0.8 s to import, and a run's network picture and plots
0.1–0.2 s to draw: a quarter of a small `nndsl train`, and all of it after the training has
ended. A child forked before the training (before torch is imported, from the command line)
imports them while the parent imports torch and trains, on a core a small model's training
loop leaves idle; it draws network.svg as soon as the run directory exists, and the plots
from the history the parent sends when the training ends, while the parent writes the weights
and checks the export. The parent waits for every picture before the run returns, so the run
directory is whole when `nndsl train` ends, as before. A process that trains again (a
notebook, the benchmark) imports the drawing libraries itself before its second fork, once, so
that its later children start with them instead of importing them again on every run.

Nothing depends on the child: a request it answers with a failure, or never answers because it
died or hung, is done again by the parent, in-process, with the same functions and the same
errors. Where there is no `fork` with well-defined behaviour (outside Linux), and in a
data-parallel rank, the parent draws everything itself.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
import warnings
from collections.abc import Callable
from multiprocessing.connection import Connection, Pipe
from pathlib import Path
from typing import Any

from nndsl.ir import Program
from nndsl.training.outputs import network_picture, save_plots, save_tables
from nndsl.training.session import STOP_SIGNALS
from nndsl.training.stages import History

PATIENCE_SECONDS = 120.0  # a request unanswered this long means the child is stuck
POLL_SECONDS = 0.05  # how often a waiting parent checks that the child is still alive
PRELOAD = ("matplotlib.figure", "matplotlib.backends.backend_agg", "networkx", "nndsl.plot",
           "nndsl.graph_picture")
PR_SET_PDEATHSIG = 1  # linux/prctl.h
_FORKS = [0]  # children forked by this process so far
_EXITING: list[int] = []  # children let go of and not reaped yet


def _plots(program: Program, path: Path, history: History, diagnostics: History | None) -> None:
    save_plots(path, history, diagnostics)


JOBS: dict[str, Callable[..., Any]] = {"network": network_picture, "plots": _plots}


class Painter:
    """The parent's side: requests go to the child as they come (`network` once the run
    directory exists, `plots` when the history is final); `finish` waits for the answers and
    does in-process what the child could not. Without a child every request runs at once."""

    def __init__(self, program: Program, quiet: bool) -> None:
        self.program, self.quiet = program, quiet
        self.pid: int | None = None
        self._conn: Connection | None = None
        self._pending: list[tuple[str, tuple[Any, ...]]] = []

    @classmethod
    def start(cls, program: Program, quiet: bool, fork: bool = True) -> Painter:
        """A painter with a child when `fork` and the platform allow it."""
        _reap()
        painter = cls(program, quiet)
        if fork and sys.platform.startswith("linux"):
            painter._fork()
        return painter

    def _fork(self) -> None:
        if _FORKS[0]:
            _preload()  # a no-op once done
        _FORKS[0] += 1
        ours, theirs = Pipe()
        for stream in (sys.stdout, sys.stderr):  # else the child would repeat buffered output
            stream.flush()
        parent = os.getpid()
        with warnings.catch_warnings():  # Python 3.12+ warns when the parent has threads; the
            warnings.simplefilter("ignore", DeprecationWarning)  # child never touches theirs
            pid = os.fork()
        if pid == 0:  # the child: never returns
            _serve(theirs, ours, self.program, parent)
        theirs.close()
        self.pid, self._conn = pid, ours

    def network(self, model: str, path: Path) -> None:
        """network.svg of `model` in `path`."""
        self._ask("network", (model, path))

    def history(self, path: Path, history: History, diagnostics: History | None) -> None:
        """metrics.csv (and diagnostics.csv) at once, here; the plots by the child."""
        save_tables(path, history, diagnostics)
        self._ask("plots", (path, history, diagnostics))

    def _ask(self, kind: str, args: tuple[Any, ...]) -> None:
        if self._conn is not None:
            try:
                self._conn.send((kind, args))
                self._pending.append((kind, args))
                return
            except OSError:  # the child is gone: from now on everything is drawn here
                self._stop(kill=True)
        self._done(kind, JOBS[kind](self.program, *args))

    def finish(self) -> None:
        """Every picture asked for is on disk when this returns (or its error raised)."""
        pending, self._pending = self._pending, []
        for index, (kind, _) in enumerate(pending):
            answer = self._answer()
            if answer is None or answer[0] != "ok":
                self._stop(kill=True)  # redo this request and the ones after it here, in order
                for kind_, args in pending[index:]:
                    self._done(kind_, JOBS[kind_](self.program, *args))
                return
            self._done(kind, answer[1])

    def _done(self, kind: str, result: Any) -> None:
        if kind == "network" and result is not None and not self.quiet:
            print(f"network.svg not written: {result}", file=sys.stderr)

    def _answer(self) -> tuple[str, Any] | None:
        """The child's next answer; None once it has died or stopped answering."""
        conn, deadline = self._conn, time.monotonic() + PATIENCE_SECONDS
        while conn is not None and time.monotonic() < deadline:
            try:
                if conn.poll(POLL_SECONDS):
                    return conn.recv()
            except (EOFError, OSError):
                return None
            if not self._alive():
                return None
        return None

    def _alive(self) -> bool:
        if self.pid is None:
            return False
        try:
            pid, _ = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:
            return False
        if pid == 0:
            return True
        self.pid = None  # reaped
        return False

    def close(self) -> None:
        """Let the child go: it exits when its pipe closes, and is reaped by the next painter
        (a run does not wait for its exit). Unanswered requests are dropped, and the child
        that was working on them killed: `finish` first to keep them."""
        self._stop(kill=bool(self._pending))
        self._pending = []

    def _stop(self, kill: bool = True) -> None:
        conn, pid, self._conn, self.pid = self._conn, self.pid, None, None
        if conn is not None:
            conn.close()
        if pid is not None:
            if kill:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            _EXITING.append(pid)

    def __enter__(self) -> Painter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _serve(conn: Connection, parents: Connection, program: Program, parent: int) -> None:
    """The child: answer requests in order until the pipe closes; exits without running the
    parent's exit handlers, and at once when the parent dies (a killed run leaves no child
    drawing into its directory). Signals meant for the run (Ctrl-C reaches the whole process
    group) are the parent's to handle: it stops the run, then asks for the plots."""
    status = 0
    try:
        parents.close()  # so that the parent's exit closes the pipe
        _die_with(parent)
        for name in STOP_SIGNALS:
            if hasattr(signal, name):
                signal.signal(getattr(signal, name), signal.SIG_IGN)
        _preload()
        while True:
            try:
                request = conn.recv()
            except EOFError:
                break
            kind, args = request
            try:
                answer: tuple[str, Any] = ("ok", JOBS[kind](program, *args))
            except BaseException as e:  # the parent redoes it, and reports it
                answer = ("failed", f"{type(e).__name__}: {e}")
            conn.send(answer)
    except BaseException:  # an import that fails: the parent draws instead
        status = 1
    finally:
        os._exit(status)


def _die_with(parent: int) -> None:
    """Ask the kernel to kill this process when its parent dies (prctl PR_SET_PDEATHSIG); a
    parent that died before the request took effect is noticed by the changed parent id."""
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:
        os._exit(0)


def _reap() -> None:
    """Collect the children of earlier runs that have exited (none is waited for)."""
    for pid in list(_EXITING):
        try:
            done = os.waitpid(pid, os.WNOHANG)[0] != 0
        except ChildProcessError:
            done = True
        if done:
            _EXITING.remove(pid)


def _preload() -> None:
    for module in PRELOAD:
        __import__(module)
