"""What a run records about itself besides its metrics: config.json (the settings as resolved,
with command-line overrides, the backend, the device actually used, versions and the spec's
hash), TensorBoard event files when the `tensorboard` package is installed, and the files of
these kinds that a run directory started again (`--overwrite`) must not keep from before."""

from __future__ import annotations

import functools
import hashlib
import itertools
import os
import shutil
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nndsl.errors import NndslError
from nndsl.files import why
from nndsl.ir import Call
from nndsl.training.session import Session
from nndsl.training.stages import DEFAULTS

TENSORBOARD = "tensorboard"  # the event files' folder in a run directory
PLOTS = "plots"  # one PNG per metric, and the diagnostics
EXTRAS = ("best.npz", "diagnostics.csv")  # files a run writes beside the lead's
VERSIONS = {"nndsl": ("nndsl",), "numpy": ("numpy",), "torch": ("torch",),
            "onnx": ("onnx",), "onnxruntime": ("onnxruntime", "onnxruntime-gpu"),
            "matplotlib": ("matplotlib",)}


def clear(path: Path) -> None:
    """Remove what an earlier run in this directory left of these records."""
    for name in EXTRAS:
        (path / name).unlink(missing_ok=True)
    for folder in (PLOTS, TENSORBOARD):
        if (path / folder).is_dir():
            shutil.rmtree(path / folder, ignore_errors=True)


def _plain(value: Any) -> Any:
    if isinstance(value, Call):
        return str(value)
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


def versions() -> dict[str, str | None]:
    """Installed versions, read from the package metadata (nothing is imported)."""
    return dict(_versions())


@functools.cache  # reading the metadata costs ~10 ms; what is installed stays put in a process
def _versions() -> dict[str, str | None]:
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str | None] = {}
    for name, dists in VERSIONS.items():
        out[name] = None
        for dist in dists:
            try:
                out[name] = version(dist)
                break
            except PackageNotFoundError:
                continue
    return out


def used_device(engine: Any) -> str:
    """The device the engine computes on: `cpu`, or `cuda:N (the GPU's name)`."""
    device = getattr(engine, "device", "cpu")
    if getattr(device, "type", None) != "cuda":
        return str(device)
    import torch

    index = device.index if device.index is not None else torch.cuda.current_device()
    return f"cuda:{index} ({torch.cuda.get_device_name(index)})"


def config(session: Session, spec_file: Path, backend: str, device: str, rng: str,
           exported: str) -> dict[str, Any]:
    """config.json: the train block's settings with the defaults it ran with and the
    command-line overrides applied (`command_line` says which were given), each phase's own
    settings, how and where it ran, and which epoch was exported."""
    spec = session.spec
    settings = {k: _plain(v) for k, v in {**DEFAULTS, **dict(spec.settings)}.items()}
    given = {"epochs": session.epochs, "steps": session.steps}
    settings.update({k: v for k, v in given.items() if v is not None})
    out: dict[str, Any] = {"model": spec.model, **settings}
    if spec.phases:
        out["phases"] = {p.name: {k: _plain(v) for k, v in p.settings} for p in spec.phases}
    out.update({
        "command_line": {**{k: v for k, v in given.items() if v is not None},
                         "backend": backend, "device": device, "rng": rng},
        "backend": backend,
        "device": used_device(session.engine),
        "rng": rng,
        "versions": versions(),
        "spec_sha256": hashlib.sha256(spec_file.read_bytes()).hexdigest(),
        "exported": exported,
    })
    return out


class Events:
    """TensorBoard scalars, one per recorded value per epoch at its update count (and the
    diagnostics per layer): `tensorboard --logdir runs/`. Made only when the `tensorboard`
    package is installed (`pip install 'nndsl[tensorboard]'`); its record writer needs neither
    torch nor TensorFlow.

    The events are kept as they come and written to the event file every `FLUSH_SECONDS` (as
    often as tensorboard's own writer flushes) and when the run ends, by this thread: its
    EventFileWriter starts a thread for each file, which took 1.5–3.5 ms before the first epoch
    and ~65 µs an epoch of the training loop's time; written here in a batch it is ~25 µs an
    event, off the epochs."""

    FLUSH_SECONDS = 5.0

    def __init__(self, folder: Path, session: Session) -> None:
        self.folder, self.session = folder, session
        self.shown = len(session.diagnostics.rows)
        self.pending: list[tuple[float, int, Any]] = []  # (wall time, step, what)
        self.record: Any = None  # the file's RecordWriter, once the first batch is written
        self.written = time.monotonic()

    @classmethod
    def open(cls, path: Path, session: Session, resumed: bool) -> Events | None:
        """The events of `path`/tensorboard, or None without the package. A resumed run
        first marks where it restarts, so TensorBoard drops the steps it will repeat."""
        try:
            import tensorboard.summary.writer.record_writer  # noqa: F401
        except ImportError:
            return None
        events = cls(path / TENSORBOARD, session)
        if resumed:
            events.pending.append((time.time(), session.step, "start"))
        return events

    def __call__(self, row: dict[str, Any]) -> None:
        if row.get("kind") != "epoch":
            return
        values = [(k, v) for k, v in row.items()
                  if k not in ("kind", "step", "epoch") and isinstance(v, int | float)]
        diagnostics = self.session.diagnostics.rows[self.shown:]
        self.shown = len(self.session.diagnostics.rows)
        for d in diagnostics:
            values += [(f"diagnostics/{d['layer']}/{k}", v) for k, v in d.items()
                       if k not in ("epoch", "step", "phase", "layer") and v is not None]
        self.pending.append((time.time(), int(row["step"]), values))
        if time.monotonic() - self.written >= self.FLUSH_SECONDS:
            self.flush()

    def flush(self) -> None:
        """Write the events kept so far (the file, with its version event, on the first)."""
        from tensorboard.compat.proto.event_pb2 import Event, SessionLog
        from tensorboard.compat.proto.summary_pb2 import Summary

        try:
            if self.record is None:
                self.record = _event_file(self.folder)
            for wall, step, what in self.pending:
                if what == "start":
                    event = Event(step=step, session_log=SessionLog(status=SessionLog.START))
                else:
                    event = Event(wall_time=wall, step=step, summary=Summary(value=[
                        Summary.Value(tag=k, simple_value=float(v)) for k, v in what]))
                self.record.write(event.SerializeToString())
            self.record.flush()
        except OSError as e:
            raise NndslError(f"cannot write the TensorBoard events in {self.folder}: {why(e)}",
                             hint="free some space, or uninstall tensorboard to train "
                             "without them") from None
        self.pending, self.written = [], time.monotonic()

    def close(self) -> None:
        self.flush()
        self.record.close()


_files = itertools.count()


def _event_file(folder: Path) -> Any:
    """A new event file in `folder`, named as tensorboard's EventFileWriter names them, that
    starts with the version event TensorBoard reads first."""
    from tensorboard.compat.proto.event_pb2 import Event
    from tensorboard.summary.writer.record_writer import RecordWriter

    folder.mkdir(parents=True, exist_ok=True)
    name = (f"events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}."
            f"{os.getpid()}.{next(_files)}")
    record = RecordWriter(open(folder / name, "wb"))  # noqa: SIM115 (closed by Events)
    record.write(Event(wall_time=time.time(), file_version="brain.Event:2").SerializeToString())
    return record


def chain(*calls: Callable[[dict[str, Any]], None] | None) -> Callable[[dict[str, Any]], None]:
    """One row hook that calls each of `calls` in turn."""
    live = [c for c in calls if c is not None]

    def call(row: dict[str, Any]) -> None:
        for c in live:
            c(row)

    return call
