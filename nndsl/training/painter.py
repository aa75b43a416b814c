"""A run's pictures, drawn beside the training by a worker process.

matplotlib and networkx take about 0.8 s to import, and a run's network picture and plots
0.1–0.2 s to draw: a quarter of a small `nndsl train`, all of it after the training has ended.
A worker — a fresh Python started the first time a process trains, sharing no memory with it —
imports them while the trainer imports torch and trains, on a core a small model's training loop
leaves idle; it draws network.svg as soon as the run directory exists, and the plots from the
history the trainer sends when the training ends, while the trainer writes the weights and
checks the export, on figures it prepared while it had nothing to do (nndsl/plot.py's spare
figures) — or, when it drew them ahead from the epoch rows sent as they were recorded
(`Following`), by adding the last points to the pictures it kept (nndsl/plot_ahead.py). With
a second core, every other plot not drawn ahead is drawn at the same time by the worker's helper,
a copy of it forked once its imports are done, which prepares its own spare figures. The trainer
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
import gc
import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
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
HELPER_SPARE_FIGURES = 1  # and its helper, which draws every other plot
AHEAD_FROM = 0.5  # of a run's epochs: the plots are drawn ahead from then on
PR_SET_PDEATHSIG = 1  # linux/prctl.h
ROOT = Path(__file__).resolve().parents[2]  # where the worker imports nndsl from
# the worker draws on one thread (no BLAS pool), so it can fork copies of itself safely
ONE_THREAD = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _plots_at_once(path: Path, history: History, diagnostics: History | None) -> list[str]:
    """The worker's `save_plots`: the plots drawn ahead (`Following`) finished here first; of
    the others, every other one drawn by its helper (`Helper`) at the same time, on the core
    the waiting trainer leaves idle; a plot the helper did not write is drawn again here,
    raising its error. Returns the files that were drawn ahead."""
    from nndsl import plot, plot_ahead

    rows = history.rows
    ahead = {file: partial(drawn.finish, rows, keys)  # its frame compared once
             for file, (name, keys) in plot.history_files(rows).items()
             if (drawn := plot_ahead.drawn_ahead(rows, name, keys)) is not None}
    jobs = [job for job in plot_jobs(history, diagnostics) if job[0] not in ahead]
    helper = _helper if _helper is not None and _helper.alive() else None
    given = helper.give(path, jobs[1::2]) if helper is not None else []
    try:
        for file, draw in [*ahead.items(), *jobs]:
            if all(file != f for f, _ in given):
                save_plot(path, file, draw)
    finally:
        failed = helper.collect(given) if helper is not None else []
    for file, draw in failed:
        save_plot(path, file, draw)
    return list(ahead)


@dataclass
class Following:
    """The worker's copy of the epoch rows of the run being trained, sent as they are recorded,
    from which it draws the run's plots ahead of the last epoch while it has nothing else to do
    (nndsl/plot_ahead.py): at the end only the last points are drawn, when the frame has not
    changed. Looking for a changed frame reads the whole history, so it is done again no sooner
    than ten times its cost later (a tenth of the worker's core at most)."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    count: int | None = None  # the epoch rows the history will hold
    checked: int = -1  # how many rows the last look found nothing to draw for
    due: float = 0.0  # when the next look may be taken

    def follow(self, count: int, rows: list[dict[str, Any]]) -> None:
        self.rows, self.count, self.checked, self.due = list(rows), count, -1, 0.0

    def row(self, row: dict[str, Any]) -> None:
        self.rows.append(row)

    def stop(self) -> None:
        self.rows, self.count = [], None

    def wait(self) -> float | None:
        """Seconds until a look is due, or None when there is nothing new to look at (or the
        run is in its first half, whose frames the second half mostly changes)."""
        if self.count is None or len(self.rows) == self.checked or \
                len(self.rows) < self.count * AHEAD_FROM:
            return None
        return max(self.due - time.monotonic(), 0.0)

    def draw(self) -> bool:
        """Draw one plot ahead whose frame changed; False when none did (or it is too soon to
        look again)."""
        count = self.count
        if count is None or self.wait() != 0.0:
            return False
        from nndsl import plot, plot_ahead

        start = time.monotonic()
        try:
            for name, keys in plot.history_files(self.rows).values():
                if plot_ahead.prepare(self.rows, name, keys, count):
                    return True  # one at a time: the pipe is read between drawings
        except Exception:  # drawn in full at the end instead, where errors are reported
            pass
        self.checked = len(self.rows)
        self.due = time.monotonic() + 10 * (time.monotonic() - start)
        return False


_following = Following()  # in the worker process
NOTES = {"follow": _following.follow, "row": _following.row}  # requests left unanswered


@dataclass
class Helper:
    """A copy of the worker, forked once the worker has imported its libraries and has nothing
    to do, that draws some of a run's plots beside the worker's. It prepares its own spare
    figures when the idle worker asks (one process at a time, so the trainer keeps a core): a
    plot drawn by a copy forked on demand instead spends ~15 ms copying the pages it touches
    (copy-on-write). It dies with the worker."""

    pid: int
    conn: Connection

    def alive(self) -> bool:
        try:
            return os.waitpid(self.pid, os.WNOHANG) == (0, 0)
        except ChildProcessError:
            return False

    def give(self, path: Path, jobs: list[tuple[str, Callable[[], bytes]]]
             ) -> list[tuple[str, Callable[[], bytes]]]:
        """Send it `jobs`; returns those it took."""
        given = []
        for file, draw in jobs:
            try:
                self.conn.send((path, file, draw))
            except (OSError, ValueError):  # gone: the rest are drawn here
                break
            given.append((file, draw))
        return given

    def collect(self, given: list[tuple[str, Callable[[], bytes]]]
                ) -> list[tuple[str, Callable[[], bytes]]]:
        """Wait for its answer on each job given; returns those it did not write. A helper
        that dies meanwhile is let go of (the next idle moment forks another)."""
        failed = []
        for index, job in enumerate(given):
            answer = self._answer()
            if answer is GONE:
                self.stop()
                return failed + given[index:]
            if answer is not None:
                failed.append(job)
        return failed

    def prepare(self) -> bool:
        """Have it prepare one more spare figure; False when it has enough (or is gone)."""
        try:
            self.conn.send(PREPARE)
        except (OSError, ValueError):
            self.stop()
            return False
        answer = self._answer()
        if answer is GONE:
            self.stop()
        return answer is True

    def _answer(self) -> Any:
        """What it answered (a plot: None when written, else why not; a spare figure: whether
        it prepared one), or GONE."""
        answered, answer = _receive(self.conn, self.alive)
        return answer if answered else GONE

    def stop(self) -> None:
        global _helper
        if _helper is self:
            _helper = None
        self.conn.close()
        with contextlib.suppress(OSError):
            os.kill(self.pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self.pid, 0)


_helper: Helper | None = None  # the worker's helper (in the worker process only)
PREPARE = "prepare"  # what the worker sends its helper, while idle, for one more spare figure
GONE = object()  # the answer of a helper that died


def _helper_prepares() -> bool:
    return _helper is not None and _helper.prepare()


def _start_helper(worker_conn: Connection) -> bool:
    """Fork the worker's helper when there is none and a second core to draw on; True when
    one was started (work done while idle)."""
    global _helper
    if (_helper is not None and _helper.alive()) or _cores() < 2:
        return False
    ours, theirs = socket.socketpair()
    parent = os.getpid()
    gc.freeze()  # the collector leaves the objects both have alone: their pages stay shared
    try:
        pid = os.fork()
    except OSError:
        ours.close()
        theirs.close()
        return False
    if pid == 0:
        ours.close()
        worker_conn.close()  # the trainer's pipe is the worker's alone
        _serve_helper(Connection(theirs.detach()), parent)
    theirs.close()
    _helper = Helper(pid, Connection(ours.detach()))
    return True


def _serve_helper(conn: Connection, parent: int) -> None:
    """The helper: draw each plot sent, answer None or the error, until the pipe closes."""
    status = 0
    try:
        _die_with(parent)
        from nndsl import plot, plot_ahead

        plot.drop_spare_figures()  # the worker's: drawing on them would copy their pages
        plot_ahead.forget()
        while True:
            try:
                job = conn.recv()
            except EOFError:
                break
            if job == PREPARE:
                conn.send(_prepare_spare(HELPER_SPARE_FIGURES))
                continue
            try:
                save_plot(*job)
                answer = None
            except BaseException as e:  # the worker draws it again, raising the error
                answer = f"{type(e).__name__}: {e}"
            conn.send(answer)
    except BaseException:
        status = 1
    os._exit(status)


def _receive(conn: Connection, alive: Callable[[], bool],
             patience: float = math.inf) -> tuple[bool, Any]:
    """(True, the next message on `conn`), or (False, None) once the process at its other end
    has died, or has not answered for `patience` seconds."""
    deadline = time.monotonic() + patience
    while time.monotonic() < deadline:
        try:
            if conn.poll(POLL_SECONDS):
                return True, conn.recv()
        except (EOFError, OSError):
            return False, None
        if not alive():
            return False, None
    return False, None


def _cores() -> int:
    affinity = getattr(os, "sched_getaffinity", None)
    return len(affinity(0)) if affinity is not None else os.cpu_count() or 1


def _epoch_row(row: dict[str, Any]) -> bool:
    return row.get("kind", "epoch") == "epoch"


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
        self._plotted: tuple[Path, int, int] | None = None  # the history last asked for
        self._following = False  # the worker is sent each epoch row (`follow`)
        self.drawn_ahead: list[str] = []  # the plots the worker had drawn ahead (`follow`)

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
        """metrics.csv (and diagnostics.csv) at once, here; the plots by the worker. The same
        rows asked for again (the training ended, then its last checkpoint failed) are not
        drawn twice."""
        asked = (path, len(history.rows), len(diagnostics.rows) if diagnostics else 0)
        if asked == self._plotted:
            return
        self._plotted = asked
        save_tables(path, history, diagnostics)
        self._ask("plots", (path, history, diagnostics))

    def follow(self, epochs: float, rows: list[dict[str, Any]]) -> None:
        """Send the worker the history so far (a resumed run's) and, from now on, each epoch
        row `row` is given, so that it draws the plots ahead of the last epoch; `epochs`: the
        epoch rows the history will hold once every phase has run (inf: unknown)."""
        if self.worker is None or not math.isfinite(epochs):
            return
        self._following = True
        self._note("follow", (int(epochs), [r for r in rows if _epoch_row(r)]))

    def row(self, row: dict[str, Any]) -> None:
        if self._following and _epoch_row(row):
            self._note("row", (row,))

    def _note(self, kind: str, args: tuple[Any, ...]) -> None:
        """A request the worker does not answer."""
        if self.worker is None:
            return
        try:
            self.worker.conn.send((kind, args))
        except OSError:  # the worker is gone: the requests waiting are done here at the end
            self._drop_worker()

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
        if kind == "plots" and isinstance(result, list):
            self.drawn_ahead = result

    def _answer(self) -> tuple[str, Any] | None:
        """The worker's next answer; None once it has died or stopped answering."""
        if self.worker is None:
            return None
        answered, answer = _receive(self.worker.conn, self.worker.alive, PATIENCE_SECONDS)
        return answer if answered else None

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
            if not conn.poll(0):  # idle: plots drawn ahead, then figures ready for the next
                if _following.draw():  # plots, one at a time (the trainer's core is the
                    continue  # other one)
                if spares:
                    spares = _prepare_spare() or _start_helper(conn) or _helper_prepares()
                    continue
                wait = _following.wait()
                if wait is not None and not conn.poll(wait):
                    continue
            try:
                kind, args = conn.recv()
            except EOFError:
                break
            if kind in NOTES:
                NOTES[kind](*args)
                continue
            try:
                answer: tuple[str, Any] = ("ok", WORKER_JOBS[kind](*args))
            except BaseException as e:  # the trainer redoes it, and reports it
                answer = ("failed", f"{type(e).__name__}: {e}")
            conn.send(answer)
            if kind == "plots":  # the history is final: nothing more to draw ahead
                _following.stop()
            spares = spares or kind == "plots"  # they used some; while a run trains, the
            # plots drawn ahead take them and leave the refill to its end, when the worker waits
    except BaseException:  # an import that fails, a pipe that breaks: the trainer draws
        os._exit(1)
    os._exit(0)  # nothing to tear down: leave at once


def _prepare_spare(enough: int = SPARE_FIGURES) -> bool:
    """One more figure drawn ahead for a plot (nndsl/plot.py); False when there are `enough`,
    or when preparing one fails (the plots are then drawn on new figures, as in the trainer)."""
    from nndsl import plot

    if plot.spare_figures() >= enough:
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
