"""Writing run files safely: every file appears whole or not at all, and a full or read-only disk
is a clear error that names the file — checked before training starts, not after an hour."""

from __future__ import annotations

import errno
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

from nndsl.errors import NndslError

Writer = Callable[[IO[bytes]], None]
MARGIN = 1 << 20  # bytes kept free beyond the estimate: metrics, plot, config
RUN_FILES = ("checkpoint.npz", "weights.npz", "model.onnx")  # a directory with any holds a run
OLD_FILES = (*RUN_FILES, "metrics.csv", "loss.png", "config.json", "heldout_x.npy", "spec.nn")


def _why(e: OSError) -> str:
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
        if tmp != path:
            tmp.unlink(missing_ok=True)
        full = "; free some space" if e.errno == errno.ENOSPC else ""
        raise NndslError(f"cannot write {path}: {_why(e)}",
                         hint=f"the previous {path.name}, if any, is intact{full}") from None


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, text.encode("utf-8"))


def prepare_run_dir(model: str, run_dir: str | None, needed: int, overwrite: bool) -> Path:
    """Create the run directory and prove it can take the run's files, or say why not.

    A directory that already holds a run is refused unless `overwrite`, so nothing trained is
    lost by a repeated command.
    """
    path = Path(run_dir) if run_dir else Path("runs") / f"{model}-{time.strftime('%Y%m%d-%H%M%S')}"
    if path.is_dir() and not overwrite:
        held = [name for name in RUN_FILES if (path / name).exists()]
        if held:
            raise NndslError(f"the run directory {path} already holds a run ({', '.join(held)})",
                             hint=f"continue it with `nndsl train --resume {path}`, start "
                             "again with --overwrite, or pick another --run-dir")
    try:
        path.mkdir(parents=True, exist_ok=True)
        for name in OLD_FILES if overwrite else ():
            (path / name).unlink(missing_ok=True)
        with (path / ".write-test").open("wb") as probe:
            probe.write(b"ok")
        (path / ".write-test").unlink()
        free = shutil.disk_usage(path).free
    except OSError as e:
        raise NndslError(f"cannot write the run directory {path}: {_why(e)}") from None
    if free < needed + MARGIN:
        raise NndslError(f"the run directory {path} has {free / 2**20:.1f} MiB free",
                         expected=f"at least {(needed + MARGIN) / 2**20:.1f} MiB for checkpoints,"
                         " weights and model.onnx", hint="free space or pick another --run-dir")
    return path
