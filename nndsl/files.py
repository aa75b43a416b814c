"""Writing run files safely: every file appears whole or not at all, a full or read-only disk
is a clear error that names the file — checked before training starts, not after an hour — and
one process at a time writes a run directory (an OS lock held for the run's life)."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, ClassVar

from nndsl.errors import NndslError

Writer = Callable[[IO[bytes]], None]
MARGIN = 1 << 20  # bytes kept free beyond the estimate: metrics, plot, config
LOCK_FILE = ".lock"  # holds the PID of the process writing the run; locked while it runs
RUN_FILES = ("checkpoint.npz", "weights.npz", "model.onnx")  # a directory with any holds a run
OLD_FILES = (*RUN_FILES, "metrics.csv", "loss.png", "config.json", "heldout_x.npy", "spec.nn")


def cache_dir() -> Path:
    """nndsl's cache folder: $NNDSL_CACHE_DIR, else $XDG_CACHE_HOME/nndsl, else ~/.cache/nndsl
    (converted CSV files, the parser's tables)."""
    given = os.environ.get("NNDSL_CACHE_DIR")
    if given:
        return Path(given)
    base = os.environ.get("XDG_CACHE_HOME")
    return (Path(base) if base else Path.home() / ".cache") / "nndsl"


def why(e: OSError) -> str:
    """What an OSError means for a file being written, in words."""
    if e.errno == errno.ENOSPC:
        return "the disk is full"
    if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return "it is not writable"
    return e.strerror or type(e).__name__


def atomic_write(path: Path, content: bytes | Writer, *, sync: bool = False) -> None:
    """Write to `path.tmp` (flushed to disk when `sync`), then rename it over `path`.

    A crash or a full disk leaves the previous `path` untouched; the temporary file is removed
    when writing fails. A device or pipe (`/dev/stdout`) is written directly.
    """
    if path.exists() and not path.is_file():  # /dev/stdout, a pipe: write through, never replace
        tmp = path
    else:
        tmp = path.with_name(path.name + ".tmp")
    try:
        with tmp.open("wb") as f:
            if isinstance(content, bytes):
                f.write(content)
            else:
                content(f)
            f.flush()
            if sync:
                os.fsync(f.fileno())
        if tmp != path:
            os.replace(tmp, path)
    except OSError as e:
        if tmp != path:  # best effort: in a read-only folder the removal fails as the write did
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
        full = "; free some space" if e.errno == errno.ENOSPC else ""
        raise NndslError(f"cannot write {path}: {why(e)}",
                         hint=f"the previous {path.name}, if any, is intact{full}") from None


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, text.encode("utf-8"))


def write_output(path: Path, content: bytes) -> None:
    """A command's output file (`-o FILE`), written whole or not at all."""
    check_output(path)
    atomic_write(path, content)


def check_output(path: Path) -> None:
    """A folder that does not exist or a directory in the file's place is a clear error (checked
    before the work that makes the output, and again when writing it)."""
    if path.is_dir():
        raise NndslError(f"cannot write {path}: it is a directory",
                         hint=f"name a file in it, e.g. -o {path / 'model.onnx'}")
    folder = path.parent
    if not folder.is_dir():
        raise NndslError(f"cannot write {path}: the folder {folder} does not exist",
                         hint=f"create it first (mkdir -p {folder}) or pick another path")


def default_run_dir(model: str, run_dir: str | None) -> Path:
    return Path(run_dir) if run_dir else Path("runs") / f"{model}-{time.strftime('%Y%m%d-%H%M%S')}"


class RunLock:
    """This process's exclusive claim on a run directory: `flock` on DIR/.lock, which holds the
    claiming process's PID. The kernel releases the lock when that process ends, however it
    ends (a SIGKILL leaves a .lock file behind but no lock), so a killed run never blocks its
    own resume. Taking a lock this process already holds nests (resume, then train)."""

    held: ClassVar[dict[Path, list[Any]]] = {}  # resolved directory -> [open lock file, depth]

    def __init__(self, path: Path) -> None:
        self.path = path
        self.key = path.resolve()

    def __enter__(self) -> RunLock:
        entry = RunLock.held.get(self.key)
        if entry is not None:
            entry[1] += 1
            return self
        RunLock.held[self.key] = [self._acquire(), 1]
        return self

    def __exit__(self, *exc: object) -> None:
        entry = RunLock.held.get(self.key)
        if entry is None:  # a forked child leaving its parent's block: it held nothing
            return
        entry[1] -= 1
        if entry[1] == 0:
            del RunLock.held[self.key]
            entry[0].close()  # closing the file releases the lock

    def _acquire(self) -> IO[str]:
        import fcntl

        try:
            self.path.mkdir(parents=True, exist_ok=True)
            file = (self.path / LOCK_FILE).open("a+", encoding="ascii")  # not truncated yet
        except OSError as e:
            raise NndslError(f"cannot write the run directory {self.path}: {why(e)}") from None
        try:
            fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            file.seek(0)
            holder = file.read().strip() or "unknown"
            file.close()
            raise NndslError(f"the run directory {self.path} is in use by another nndsl "
                             f"process (PID {holder})",
                             hint="one process writes a run at a time: wait for it, or stop it "
                             f"(`kill {holder}` checkpoints and stops it) and continue with "
                             f"`nndsl train --resume {self.path}`; or pick another --run-dir")\
                from None
        file.seek(0)
        file.truncate()
        file.write(f"{os.getpid()}\n")
        file.flush()
        return file


def _forget_locks() -> None:
    """In a forked child: close the copies of the lock files. The lock belongs to the open
    file, so a child that kept its copy (a data worker, a user's own fork) would keep a killed
    parent's run directory locked for as long as the child lives; the parent's copy stays."""
    for file, _ in RunLock.held.values():
        file.close()
    RunLock.held.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_locks)


def lock_run_dir(path: Path) -> RunLock:
    """`with lock_run_dir(path):` — hold the run directory for the block (see RunLock)."""
    return RunLock(path)


def check_writable(path: Path) -> None:
    """Prove a file can be created and removed in `path` (a read-only or full disk says so
    before any training, not when the first checkpoint is due)."""
    try:
        with (path / ".write-test").open("wb") as probe:
            probe.write(b"ok")
        (path / ".write-test").unlink()
    except OSError as e:
        raise NndslError(f"cannot write the run directory {path}: {why(e)}",
                         hint="make it writable, or copy the run elsewhere and resume there")\
            from None


def prepare_run_dir(path: Path, needed: int, overwrite: bool) -> None:
    """Prove the run directory (created and locked by the caller: see RunLock) can take the
    run's files, or say why not.

    A directory that already holds a run is refused unless `overwrite`, so nothing trained is
    lost by a repeated command.
    """
    if not overwrite:
        held = [name for name in RUN_FILES if (path / name).exists()]
        if held:
            raise NndslError(f"the run directory {path} already holds a run ({', '.join(held)})",
                             hint=f"continue it with `nndsl train --resume {path}`, start "
                             "again with --overwrite, or pick another --run-dir")
    try:
        for name in OLD_FILES if overwrite else ():
            (path / name).unlink(missing_ok=True)
        free = shutil.disk_usage(path).free
    except OSError as e:
        raise NndslError(f"cannot write the run directory {path}: {why(e)}") from None
    check_writable(path)
    if free < needed + MARGIN:
        raise NndslError(f"the run directory {path} has {free / 2**20:.1f} MiB free",
                         expected=f"at least {(needed + MARGIN) / 2**20:.1f} MiB for checkpoints,"
                         " weights and model.onnx", hint="free space or pick another --run-dir")
