"""A run's pictures, drawn beside the training by a worker process.

matplotlib and networkx take about 0.8 s to import, and a run's network picture and plots
0.1–0.2 s to draw: a quarter of a small `nndsl train`, all of it after the training has ended.
A worker — a fresh Python started the first time a process trains, sharing no memory with it —
imports them while the trainer imports torch and trains, on a core a small model's training loop
leaves idle; it draws network.svg as soon as the run directory exists, and the plots from the
history the trainer sends when the training ends, while the trainer writes the weights and
checks the export (several plots at once, on the cores the waiting trainer leaves idle), on
figures it prepared while it had nothing to do (nndsl/plot.py's spare figures). The trainer
waits for every picture before the run returns, so the run directory is whole when `nndsl train`
ends, as before. A process that trains again (a notebook, the benchmark) keeps its
worker, so later runs find the libraries imported.

Nothing depends on the worker: a request it answers with a failure, or never answers because it
died or hung, is done again by the trainer, in-process, with the same functions and the same
errors, and the next run starts another worker. The worker ignores the signals that stop a run
(a terminal's Ctrl-C reaches both; the trainer handles it, then asks for the plots of the epochs
done) and dies with its parent (PR_SET_PDEATHSIG on Linux; elsewhere it exits when the pipe
closes). Without POSIX file descriptors to hand over (Windows), in data-parallel ranks, and while
another thread's run holds the worker, the trainer draws the pictures itself. A history holds
plain numbers, so the worker never imports torch.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from nndsl.ir import Program
from nndsl.training.outputs import (
    network_picture,
    plot_jobs,
    save_plot,
    save_plots,
    save_tables,
)
from nndsl.training.session import STOP_SIGNALS
from nndsl.training.stages import History

PATIENCE_SECONDS = 120.0  # a request unanswered this long means the worker is stuck
POLL_SECONDS = 0.05  # how often a waiting trainer checks that the worker is still alive
PRELOAD = ("matplotlib.figure", "matplotlib.backends.backend_agg", "networkx", "nndsl.plot",
           "nndsl.graph_picture")
SPARE_FIGURES = 3  # figures the idle worker draws ahead: a loss and two metrics' plots
PR_SET_PDEATHSIG = 1  # linux/prctl.h
ROOT = Path(__file__).resolve().parents[2]  # where the worker imports nndsl from
# the worker draws on one thread (no BLAS pool), so it can fork copies of itself safely
ONE_THREAD = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _plots_at_once(path: Path, history: History, diagnostics: History | None) -> None:
    """The worker's `save_plots`: each plot after the first drawn by a forked copy of the
    worker (a small process without threads) on a core the waiting trainer leaves idle; a plot
    a copy did not write is drawn again here, raising its error."""
    jobs = plot_jobs(history, diagnostics)
    beside = jobs[1:] if _cores() > 1 else []
    copies: list[tuple[int, str, Callable[[], bytes]]] = []
    try:
        for file, draw in beside:
            pid = os.fork()
            if pid == 0:
                _draw_and_leave(path, file, draw)
            copies.append((pid, file, draw))
        for file, draw in jobs[:len(jobs) - len(beside)]:
            save_plot(path, file, draw)
    finally:
        failed = [(file, draw) for pid, file, draw in copies
                  if os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) != 0]
    for file, draw in failed:
        save_plot(path, file, draw)


def _draw_and_leave(path: Path, file: str, draw: Callable[[], bytes]) -> None:
    status = 1
    try:
        save_plot(path, file, draw)
        status = 0
    finally:
        os._exit(status)


def _cores() -> int:
    affinity = getattr(os, "sched_getaffinity", None)
    return len(affinity(0)) if affinity is not None else os.cpu_count() or 1


JOBS: dict[str, Callable[..., Any]] = {"network": network_picture, "plots": save_plots}
WORKER_JOBS = {**JOBS, "plots": _plots_at_once}  # what the worker runs for each request


@dataclass
class Worker:
    """The worker process and this process's end of its socket; one run at a time uses it."""

    process: subprocess.Popen[bytes]
    conn: Connection
    busy: bool = False

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        """Kill it (it may be drawing for a run that no longer waits) and forget it."""
        global _worker
        with _lock:
            if _worker is self:
                _worker = None
        self.conn.close()
        with contextlib.suppress(OSError):
            self.process.kill()


_worker: Worker | None = None
_lock = threading.Lock()


def _claim() -> Worker | None:
    """This process's worker, started if there is none (or it died); None while another run
    holds it, or when it cannot be started."""
    global _worker
    with _lock:
        if _worker is not None and not _worker.alive():
            _worker.conn.close()
            _worker = None
        if _worker is None:
            _worker = _spawn()
            if _worker is None:
                return None
        if _worker.busy:
            return None
        _worker.busy = True
        return _worker


def _spawn() -> Worker | None:
    ours, theirs = socket.socketpair()
    # the same nndsl as this process; a folder already on the path (site-packages) keeps its
    # place, so that nothing there shadows the standard library
    code = (f"import sys; root = {str(ROOT)!r}; root in sys.path or sys.path.insert(0, root); "
            f"from nndsl.training.painter import serve; serve({theirs.fileno()}, {os.getpid()})")
    try:
        process = subprocess.Popen([sys.executable, "-c", code], pass_fds=(theirs.fileno(),),
                                   stdin=subprocess.DEVNULL, env={**os.environ, **ONE_THREAD})
    except OSError:
        ours.close()
        return None
    finally:
        theirs.close()
    return Worker(process, Connection(ours.detach()))


@atexit.register
def _let_go() -> None:
    """At exit the worker reads the end of its pipe and leaves; one still drawing is killed."""
    worker = _worker
    if worker is not None:
        worker.conn.close()
        try:
            worker.process.wait(0.5)
        except subprocess.TimeoutExpired:
            worker.process.kill()


class Painter:
    """A run's side: requests go to the worker as they come (`network` once the run directory
    exists, `plots` when the history is final); `finish` waits for the answers and does here
    what the worker could not. Without a worker every request runs at once, here."""

    def __init__(self, quiet: bool, worker: Worker | None) -> None:
        self.quiet, self.worker = quiet, worker
        self._pending: list[tuple[str, tuple[Any, ...]]] = []

    @classmethod
    def start(cls, quiet: bool, spawn: bool = True) -> Painter:
        """A painter with the process's worker when `spawn` and the platform allow it (not in
        a frozen application, whose executable is not a Python to start the worker with)."""
        able = os.name == "posix" and not getattr(sys, "frozen", False)
        return cls(quiet, _claim() if spawn and able else None)

    def network(self, program: Program, model: str, path: Path) -> None:
        """network.svg of `model` in `path`."""
        self._ask("network", (program, model, path))

    def history(self, path: Path, history: History, diagnostics: History | None) -> None:
        """metrics.csv (and diagnostics.csv) at once, here; the plots by the worker."""
        save_tables(path, history, diagnostics)
        self._ask("plots", (path, history, diagnostics))

    def _ask(self, kind: str, args: tuple[Any, ...]) -> None:
        if self.worker is not None:
            try:
                self.worker.conn.send((kind, args))
                self._pending.append((kind, args))
                return
            except OSError:  # the worker is gone: from now on everything is drawn here
                self._drop_worker()
        self._done(kind, JOBS[kind](*args))

    def finish(self) -> None:
        """Every picture asked for is on disk when this returns (or its error raised)."""
        pending, self._pending = self._pending, []
        for index, (kind, _) in enumerate(pending):
            answer = self._answer()
            if answer is None or answer[0] != "ok":
                self._drop_worker()  # redo this request and the ones after it here, in order
                for kind_, args in pending[index:]:
                    self._done(kind_, JOBS[kind_](*args))
                return
            self._done(kind, answer[1])

    def _done(self, kind: str, result: Any) -> None:
        if kind == "network" and result is not None and not self.quiet:
            print(f"network.svg not written: {result}", file=sys.stderr)

    def _answer(self) -> tuple[str, Any] | None:
        """The worker's next answer; None once it has died or stopped answering."""
        worker, deadline = self.worker, time.monotonic() + PATIENCE_SECONDS
        while worker is not None and time.monotonic() < deadline:
            try:
                if worker.conn.poll(POLL_SECONDS):
                    return worker.conn.recv()
            except (EOFError, OSError):
                return None
            if not worker.alive():
                return None
        return None

    def _drop_worker(self) -> None:
        if self.worker is not None:
            self.worker.stop()
            self.worker = None

    def close(self) -> None:
        """Hand the worker back for the next run. Unanswered requests are dropped and the
        worker drawing them killed (its late answers would reach the next run): `finish`
        first to keep them."""
        if self._pending:
            self._pending = []
            self._drop_worker()
        if self.worker is not None:
            self.worker.busy = False
            self.worker = None

    def __enter__(self) -> Painter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def serve(fd: int, parent: int) -> None:
    """The worker: answer requests in order until the pipe closes or the parent dies."""
    conn = Connection(fd)
    try:
        for name in STOP_SIGNALS:
            if hasattr(signal, name):
                signal.signal(getattr(signal, name), signal.SIG_IGN)
        _die_with(parent)
        for module in PRELOAD:
            __import__(module)
        spares = True
        while True:
            if spares and not conn.poll(0):  # idle: a figure ready for the next plot
                spares = _prepare_spare()
                continue
            try:
                kind, args = conn.recv()
            except EOFError:
                break
            try:
                answer: tuple[str, Any] = ("ok", WORKER_JOBS[kind](*args))
            except BaseException as e:  # the trainer redoes it, and reports it
                answer = ("failed", f"{type(e).__name__}: {e}")
            conn.send(answer)
            spares = True  # the plots may have used some
    except BaseException:  # an import that fails, a pipe that breaks: the trainer draws
        os._exit(1)
    os._exit(0)  # nothing to tear down: leave at once


def _prepare_spare() -> bool:
    """One more figure drawn ahead for a plot (nndsl/plot.py); False when there are enough, or
    when preparing one fails (the plots are then drawn on new figures, as in the trainer)."""
    from nndsl import plot

    if plot.spare_figures() >= SPARE_FIGURES:
        return False
    try:
        plot.prepare_figure()
    except Exception:
        return False
    return True


def _die_with(parent: int) -> None:
    """Ask the kernel to kill this process when its parent dies (Linux's PR_SET_PDEATHSIG); a
    parent that died before the request took effect is noticed by the changed parent id."""
    if sys.platform.startswith("linux"):
        import ctypes

        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:
        os._exit(0)
