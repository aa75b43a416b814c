"""`nndsl train`: the orchestration. Check the spec can run, load and bind the data, prepare the
run directory, run each stage with its trainer (checkpointing on the way), then write the run's
files and the export. A failure keeps the last good checkpoint."""

from __future__ import annotations

import math
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nndsl import ops
from nndsl.backend import default_backend, make_engine
from nndsl.data.binding import save as save_binding
from nndsl.data.dataset import load_dataset
from nndsl.errors import NndslError
from nndsl.files import (
    atomic_write,
    check_writable,
    default_run_dir,
    prepare_run_dir,
)
from nndsl.initialize import initialize
from nndsl.ir import NUMPY_DTYPE, Graph, Program, TensorType, TrainSpec
from nndsl.memory import check_memory
from nndsl.progress import Reporter
from nndsl.training import checkpoint, distributed, records, step_options
from nndsl.training.best import Best
from nndsl.training.diagnostics import check_rows, findings
from nndsl.training.outputs import export_run, save_run
from nndsl.training.painter import Painter
from nndsl.training.registry import CheckContext, Trainer
from nndsl.training.resume import start_position
from nndsl.training.session import STOP_SIGNALS, Interrupted, Position, Session
from nndsl.training.stages import Stage, stages

CHECKPOINT_SECONDS = 10.0  # a killed run repeats at most this much work (or one epoch)


def pick_train(program: Program, model: str | None) -> TrainSpec:
    specs = [t for t in program.trains if model in (None, t.model)]
    if not specs:
        raise NndslError(f"{program.file} has no train block" + (f" for '{model}'" if model
                                                                   else ""),
                         hint="add `train MODEL { data = ...; loss = ...; optimizer = ... }`")
    if len(specs) > 1:
        raise NndslError(f"{program.file} has several train blocks",
                         hint="pick one with --model " + " | ".join(t.model for t in specs))
    return specs[0]


@dataclass
class Plan:
    """A train block as it will run: its stages, each stage's trainer, the models trained and
    the data arrays read."""

    spec: TrainSpec
    stages: list[Stage]
    trainers: list[Trainer]
    models: list[str]
    data: dict[str, TensorType] = field(default_factory=dict)


def make_trainer(stage: Stage) -> Trainer:
    call = stage.trainer_call
    trainer: Trainer = ops.get(call.name, "trainer", call.span).compute(**dict(call.kwargs))
    return trainer


def plan(program: Program, spec: TrainSpec) -> Plan:
    """Stages with their trainers; the models and arrays they need (checked by `nndsl check`
    already: see nndsl/training/validate.py)."""
    models = {m.name: m for m in program.models}
    out = Plan(spec, stages(spec), [], [spec.model])
    for stage in out.stages:
        trainer = make_trainer(stage)
        out.trainers.append(trainer)
        ctx = CheckContext(spec, stage, models, stage.trainer_call.span)
        out.data.update(trainer.data(ctx))
        out.models += [m for m in trainer.models() if m not in out.models]
    return out


def _bytes_needed(graphs: list[Graph]) -> int:
    """A generous estimate of the run's files: the checkpoint (weights and up to two optimizer
    slots each) twice while it is replaced, weights.npz and model.onnx."""
    return 8 * sum(int(np.prod(w.shape)) * np.dtype(NUMPY_DTYPE[w.dtype]).itemsize
                   for g in graphs for w in g.weights)


@contextmanager
def stop_on_interrupt(session: Session) -> Iterator[dict[str, int]]:
    """The first Ctrl-C, SIGTERM (`docker stop`, systemd, `timeout`, plain `kill`) or SIGHUP (a
    closed terminal) asks the trainer to checkpoint after its current step and stop; a second
    one ends the process at once (the last checkpoint on disk stays whole either way). Yields
    {"signal": number} once one has arrived, for the exit status (128 + number)."""
    received: dict[str, int] = {}
    if threading.current_thread() is not threading.main_thread():
        yield received
        return
    numbers = [getattr(signal, name) for name in STOP_SIGNALS if hasattr(signal, name)]

    def ask(signum: int, frame: Any) -> None:
        received.setdefault("signal", signum)
        session.stop_requested = True
        for number in numbers:
            signal.signal(number, signal.default_int_handler if number == signal.SIGINT
                          else signal.SIG_DFL)

    previous = {number: signal.signal(number, ask) for number in numbers}
    try:
        yield received
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler if handler is not None else signal.SIG_DFL)


@dataclass
class Checkpointer:
    """The session's checkpoint hook: writes when it must (a stage ends, a stop was asked for),
    else after an epoch once `every` seconds have passed since the last write — a checkpoint
    costs a millisecond or more (it is flushed to disk), which short epochs would feel.

    The final checkpoint (every one of the `stages` done) also keeps where the last stage
    ended — its last offered position — so `--extend` can continue that stage exactly."""

    path: Path
    session: Session
    meta: dict[str, Any]
    every: float
    last: float = -math.inf
    written: tuple[int, int] | None = None  # the (epoch, step) last written by this run
    stages: int = 0
    offered: Position | None = None  # the last position a stage's trainer handed over
    best: Best | None = None  # written to best.npz just before the checkpoint that names it
    writes: bool = True  # false on the ranks of a data-parallel run other than rank 0

    def __call__(self, position: Position, must: bool) -> None:
        if position.stage < self.stages:
            self.offered = position
        if not self.writes:
            return
        if not must and time.monotonic() - self.last < self.every:
            return
        s, state, extra = self.session, position.state, {}
        ended = self.offered
        if position.stage >= self.stages > 0 and ended is not None and ended.epoch > 0 and \
                ended.stage == self.stages - 1:
            state, extra = ended.state, {"ended": {"epoch": ended.epoch,
                                                   "record": ended.record}}
        if self.best is not None:
            self.best.save(self.path, self.meta)
            extra["best"] = self.best.record()
        checkpoint.save(self.path / checkpoint.NAME, s.weights, state, {
            **self.meta, "stage": position.stage, "epoch": position.epoch, "step": s.step,
            "record": position.record, "history": s.history.rows,
            "diagnostics": s.diagnostics.rows, **extra})
        self.last, self.written = time.monotonic(), (position.epoch, s.step)

    def kept(self) -> str:
        """Where the last good checkpoint is, and how to go on from it."""
        place = self.path / checkpoint.NAME
        when = f"epoch {self.written[0]}, step {self.written[1]}" if self.written else \
            "the one this run resumed from"
        return (f"the last good checkpoint ({when}) is kept in {place}; after fixing "
                f"{self.path / 'spec.nn'}, `nndsl train --resume {self.path}` continues from it")


def _check_backend(run: Plan, backend: str) -> None:
    for stage, trainer in zip(run.stages, run.trainers, strict=True):
        if backend not in trainer.backends:
            call = stage.trainer_call
            raise NndslError(f"trainer '{call.name}' does not run on the {backend} backend",
                             call.span, hint=f"use --backend {' or '.join(trainer.backends)}")
    step_options.check_backend(run.spec, backend)  # precision, compile: torch's


def train_spec(program: Program, spec_file: str, *, backend: str | None = None,
               epochs: int | None = None, steps: int | None = None, run_dir: str | None = None,
               model: str | None = None, quiet: bool = False, device: str = "auto",
               rng: str = "device", resume: checkpoint.Checkpoint | None = None,
               overwrite: bool = False, checkpoint_every: float | None = None,
               max_memory: int | None = None, extend: bool = False) -> Path:
    """Validate the memory estimate, the data and (resuming) the checkpoint, take the run
    directory (one process at a time), train with checkpoints (one before the first epoch, then
    after an epoch at most every `checkpoint_every` seconds, and at the end of each stage), then
    write the run's files. A failure keeps the last good checkpoint."""
    spec = pick_train(program, model)
    backend = backend or default_backend()
    run = plan(program, spec)
    _check_backend(run, backend)
    check_memory(program, max_memory)
    graphs = [program.model(name) for name in run.models]
    ranks = distributed.from_env()
    # the painter's worker starts before torch is imported, and imports its own libraries meanwhile
    with Painter.start(quiet, spawn=ranks is None) as painter:
        base_dir = Path(resume.meta["base_dir"]) if resume else Path(spec_file).resolve().parent
        data = load_dataset(run.data, graphs, spec, base_dir,  # before anything is written
                            Path(run_dir or ".") if resume else None)  # keep its labels
        if ranks is not None:
            distributed.check_parallel(run, backend)
            distributed.join(ranks, distributed.device_for(ranks, device))
        engine = make_engine(backend, distributed.device_for(ranks, device) if ranks else
                             device, rng)
        path = Path(run_dir or ".") if resume else default_run_dir(spec.model, run_dir)
        if ranks is not None and not resume and run_dir is None:
            path = Path(distributed.broadcast(str(path)))  # rank 0's clock names the run
        session = Session(program, spec, engine, data, {}, epochs, steps,
                          step_rows=steps is not None)
        writer = ranks is None or ranks.writer
        if ranks is not None:
            parallel = engine.data_parallel(  # type: ignore[attr-defined]
                ranks.rank, ranks.world, vote=lambda: session.stop_requested)
            session.stop_agreed = lambda: parallel.stop_agreed
            quiet = quiet or not writer
        try:
            with distributed.writer_lock(path, ranks):  # one process writes a run directory
                return _run(program, spec_file, run, graphs, data, session, path, resume,
                            extend, overwrite, writer, quiet, painter, {
                                "model": spec.model, "backend": backend, "device": device,
                                "rng_mode": rng, "epochs": epochs, "steps": steps,
                                "base_dir": str(base_dir), "world": ranks.world if ranks else 1,
                                "checkpoint_every": CHECKPOINT_SECONDS
                                if checkpoint_every is None else checkpoint_every})
        finally:
            if ranks is not None:
                distributed.leave()


def _run(program: Program, spec_file: str, run: Plan, graphs: list[Graph], data: Any,
         session: Session, path: Path, resume: checkpoint.Checkpoint | None, extend: bool,
         overwrite: bool, writer: bool, quiet: bool, painter: Painter,
         meta: dict[str, Any]) -> Path:
    """The run proper, once the run directory is held: start or resume, train, write."""
    engine, spec = session.engine, run.spec
    if resume:
        start = start_position(resume, str(path / checkpoint.NAME), run, graphs, session,
                               extend)
        if writer:
            check_writable(path)
        weights = resume.weights
    else:
        if writer:
            prepare_run_dir(path, _bytes_needed(graphs), overwrite)
            records.clear(path)
            atomic_write(path / "spec.nn", Path(spec_file).read_bytes())
            save_binding(path, data.binding)  # data.json: columns, labels, statistics
        seed = int(spec.get("seed", 0))
        start, weights = None, {g.name: initialize(g, seed + i) for i, g in enumerate(graphs)}
    if writer:
        painter.network(program, run.spec.model, path)  # drawn while the model trains
    session.weights = {m: engine.to_backend(w) for m, w in weights.items()}
    best = Best(run.stages)
    hook = Checkpointer(path, session, meta, meta["checkpoint_every"], stages=len(run.stages),
                        best=best, writes=writer)
    session.on_checkpoint = hook
    if resume:
        session.step = int(resume.meta["step"])
        session.history.rows = list(resume.meta["history"])
        session.diagnostics.rows = check_rows(resume.meta.get("diagnostics", []))
        best.resume(resume.meta.get("best"), path, {g.name: g for g in graphs})
    else:
        hook(Position(0), True)  # a run killed before its first epoch resumes
    trained, exported = _train(session, run, start, hook, quiet, best, painter)
    if writer:
        painter.history(path, session.history, session.diagnostics)  # unless already asked
        try:
            save_run(path, session, trained, records.config(
                session, path / "spec.nn", meta["backend"], meta["device"], meta["rng_mode"],
                exported))
            export_run(program, spec_file, run, trained, data, path, quiet)
        finally:  # a failed export still leaves the plots
            painter.finish()
    return path


def _train(session: Session, run: Plan, start: Position | None, hook: Checkpointer,
           quiet: bool, best: Best, painter: Painter
           ) -> tuple[dict[str, dict[str, np.ndarray]], str]:
    """Every stage from `start`, with progress (and TensorBoard events when installed),
    stopping on a signal; a failure or a stop writes metrics.csv and says where the last good
    checkpoint is. Returns the weights to export and the summary's line on them."""
    reporter = Reporter(run.spec.model, {s.name: session.epochs_for(s) for s in run.stages},
                        quiet)
    events = records.Events.open(hook.path, session, resumed=start is not None) \
        if hook.writes else None
    session.on_row, session.on_step = records.chain(
        events, reporter, painter.row if hook.writes else None), reporter.step
    if hook.writes:
        painter.follow(sum(session.epochs_for(s) for s in run.stages), session.history.rows)
    try:
        plots = (lambda: painter.history(hook.path, session.history, session.diagnostics)) \
            if hook.writes else None
        with stop_on_interrupt(session) as received:
            _run_stages(session, run, start, best, plots)
    except NndslError as e:
        if hook.writes:
            _pictures_so_far(painter, hook.path, session)
        raise e.with_note(hook.kept(), None) from None
    except Interrupted as stop:
        if hook.writes:
            _pictures_so_far(painter, hook.path, session)
        stop.run_dir = hook.path
        stop.signal = received.get("signal", signal.SIGINT)  # type: ignore[attr-defined]
        raise
    finally:
        reporter.stop()
        if events is not None:
            events.close()
    trained, exported = best.exported(session)
    found = findings(session.diagnostics.rows, session.model)
    reporter.summary([exported, *(f"diagnostics: {f}" for f in found)])
    return trained, exported


def _pictures_so_far(painter: Painter, path: Path, session: Session) -> None:
    """A run that stops early still gets its metrics, plots and network picture."""
    painter.history(path, session.history, session.diagnostics)
    painter.finish()


def train_in_memory(program: Program, spec: TrainSpec, engine: Any, data: Any,
                    weights: dict[str, dict[str, np.ndarray]], epochs: int | None = None,
                    steps: int | None = None) -> Session:
    """The training loop alone: every stage on `engine`, no files, no checkpoints (the
    benchmark's `Trainer.run` case, and tests)."""
    run = plan(program, spec)
    session = Session(program, spec, engine, data,
                      {m: engine.to_backend(w) for m, w in weights.items()}, epochs, steps,
                      step_rows=steps is not None)
    best = _run_stages(session, run, None)
    session.weights = best.exported(session)[0]
    return session


def _run_stages(session: Session, run: Plan, start: Position | None,
                best: Best | None = None, trained: Callable[[], None] | None = None) -> Best:
    """Each stage from `start`; the best epoch is watched as rows are recorded, and a stage
    whose early_stop restores it hands its best weights to the next (nndsl/training/best.py).
    `trained` is called once the last stage's epochs are done, before its checkpoint (the
    history is final then: its plots are drawn meanwhile)."""
    best = best if best is not None else Best(run.stages)
    shown = session.on_row

    def record(row: dict[str, Any]) -> None:
        best.observe(row, session)
        shown(row)

    session.on_row = record
    try:
        for index, (stage, trainer) in enumerate(zip(run.stages, run.trainers, strict=True)):
            if start is not None and index < start.stage:
                continue
            here = start if start is not None and index == start.stage else None
            trainer.run(session, stage, index, here)
            if index == len(run.stages) - 1 and trained is not None:
                trained()
            if index < len(run.stages) - 1 and best.restores(index):
                best.restore(session)
            session.checkpoint(Position(index + 1), must=True)  # the stage is done
    finally:
        session.on_row = shown
    return best
