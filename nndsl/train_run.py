"""`nndsl train`: validate data first, then train, then write the run directory."""

from __future__ import annotations

import math
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nndsl import checkpoint, ops
from nndsl.data.dataset import load_dataset
from nndsl.errors import NndslError
from nndsl.files import atomic_write, prepare_run_dir
from nndsl.initialize import initialize
from nndsl.ir import NUMPY_DTYPE, Graph, Program, TrainSpec
from nndsl.progress import Reporter
from nndsl.run_files import export_run, save_history, save_run
from nndsl.trainer import Interrupted, NumpyEngine, Position, Trainer


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


def _hebbian(graph: Graph, spec: TrainSpec, data: Any, weights: dict[str, np.ndarray]) -> None:
    """One-shot storage: the Hopfield layer's weight and bias from the training patterns."""
    config = ops.get(spec.get("trainer").name, "trainer").compute(
        **dict(spec.get("trainer").kwargs))
    layers = [n for n in graph.nodes if n.op == "hopfield"]
    if len(layers) != 1:
        raise NndslError("trainer hebbian needs exactly one hopfield layer", spec.span)
    wmap = dict(layers[0].weights)
    patterns = data.train[layers[0].inputs[0]]
    w, b = config.store(patterns)
    weights[wmap["weight"]], weights[wmap["bias"]] = np.asarray(w, np.float32), \
        np.asarray(b, np.float32)


def resume_run(run_dir: str, quiet: bool = False) -> Path:
    """Continue a run from its checkpoint, with the spec and options it was started with."""
    from nndsl.program import load

    saved = checkpoint.load(Path(run_dir) / checkpoint.NAME)
    spec_file = Path(run_dir) / "spec.nn"
    if not spec_file.is_file():
        raise NndslError(f"{spec_file} is missing", hint="a run directory written by "
                         "`nndsl train` keeps the spec it was started with as spec.nn")
    program, _ = load(spec_file)
    meta = saved.meta
    every = meta.get("checkpoint_every")
    return train_spec(program, str(spec_file), backend=meta["backend"], epochs=meta["epochs"],
                      steps=meta["steps"], run_dir=run_dir, model=meta["model"], quiet=quiet,
                      device=meta["device"], resume=saved,
                      checkpoint_every=float(every) if isinstance(every, int | float) else None)


def make_engine(backend: str, graph: Graph, device: str) -> Any:
    """The engine for `--backend`: torch is imported only when asked for."""
    if backend == "torch":
        from nndsl.backends.torch.engine import TorchEngine

        return TorchEngine(graph, device)
    return NumpyEngine(graph)


def _bytes_needed(graph: Graph) -> int:
    """A generous estimate of the run's files: the checkpoint (weights and up to two optimizer
    slots each) twice while it is replaced, weights.npz and model.onnx."""
    return 8 * sum(int(np.prod(w.shape)) * np.dtype(NUMPY_DTYPE[w.dtype]).itemsize
                   for w in graph.weights)


@contextmanager
def stop_on_interrupt(trainer: Trainer) -> Iterator[None]:
    """The first Ctrl-C asks the trainer to checkpoint after its current step and stop; a second
    one interrupts at once (the last checkpoint on disk stays whole either way)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def ask(signum: int, frame: Any) -> None:
        trainer.stop_requested = True
        signal.signal(signal.SIGINT, signal.default_int_handler)

    previous = signal.signal(signal.SIGINT, ask)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


CHECKPOINT_SECONDS = 10.0  # a killed run repeats at most this much work (or one epoch)


@dataclass
class Checkpointer:
    """The trainer's checkpoint hook: writes when it must (a phase ends, a stop was asked for),
    else after an epoch once `every` seconds have passed since the last write — a checkpoint
    costs a millisecond or more (it is flushed to disk), which short epochs would feel."""

    path: Path
    trainer: Trainer
    meta: dict[str, Any]
    every: float
    last: float = -math.inf
    written: tuple[int, int] | None = None  # the (epoch, step) last written by this run

    def __call__(self, position: Position, must: bool) -> None:
        if not must and time.monotonic() - self.last < self.every:
            return
        checkpoint.save(self.path / checkpoint.NAME, self.trainer.weights, position.state, {
            **self.meta, "stage": position.stage, "epoch": position.epoch,
            "step": self.trainer.step, "rng": position.rng, "batch": position.batch,
            "losses": position.losses, "history": self.trainer.history.rows})
        self.last, self.written = time.monotonic(), (position.epoch, self.trainer.step)

    def kept(self) -> str:
        """Where the last good checkpoint is, and how to go on from it."""
        place = self.path / checkpoint.NAME
        when = f"epoch {self.written[0]}, step {self.written[1]}" if self.written else \
            "the one this run resumed from"
        return (f"the last good checkpoint ({when}) is kept in {place}; after fixing "
                f"{self.path / 'spec.nn'}, `nndsl train --resume {self.path}` continues from it")


def train_spec(program: Program, spec_file: str, *, backend: str = "numpy",
               epochs: int | None = None, steps: int | None = None, run_dir: str | None = None,
               model: str | None = None, quiet: bool = False, device: str = "auto",
               resume: checkpoint.Checkpoint | None = None, overwrite: bool = False,
               checkpoint_every: float | None = None) -> Path:
    """Validate the data, prepare the run directory, train with checkpoints (one before the
    first epoch, then after an epoch at most every `checkpoint_every` seconds, and at the end of
    each phase), then write the run's files. A failure keeps the last good checkpoint."""
    spec = pick_train(program, model)
    graph = program.model(spec.model)
    base_dir = Path(resume.meta["base_dir"]) if resume else Path(spec_file).resolve().parent
    data = load_dataset(graph, spec, base_dir)  # before anything is written
    if resume:
        checkpoint.check_weights(resume, graph.weights)
        path, weights = Path(run_dir or "."), resume.weights
    else:
        path = prepare_run_dir(graph.name, run_dir, _bytes_needed(graph), overwrite)
        atomic_write(path / "spec.nn", Path(spec_file).read_bytes())
        weights = initialize(graph, spec.get("seed", 0))
    engine = make_engine(backend, graph, device)
    if checkpoint_every is None:
        checkpoint_every = CHECKPOINT_SECONDS
    meta = {"model": graph.name, "backend": backend, "device": device, "epochs": epochs,
            "steps": steps, "base_dir": str(base_dir), "checkpoint_every": checkpoint_every}
    reporter = Reporter(graph.name, epochs or spec.get("epochs"), quiet)
    trainer = Trainer(graph, spec, engine, dict(weights), on_row=reporter,
                      step_rows=steps is not None)
    trainer.on_epoch = on_epoch = Checkpointer(path, trainer, meta, checkpoint_every)
    start = checkpoint.position(resume) if resume else None
    if resume:
        trainer.step = int(resume.meta["step"])
        trainer.history.rows = list(resume.meta["history"])
    else:
        on_epoch(Position(0, 0, {}, None), True)  # a run killed before its first epoch resumes
    try:
        with stop_on_interrupt(trainer):
            _train(trainer, graph, spec, data, backend, epochs, steps, start)
    except NndslError as e:
        save_history(path, trainer.history)
        raise e.with_note(on_epoch.kept(), None) from None
    except Interrupted as stop:
        save_history(path, trainer.history)
        stop.run_dir = path
        raise
    finally:
        reporter.stop()
    reporter.summary()
    save_run(path, trainer)
    export_run(program, spec_file, graph, trainer.weights, data, path, quiet)
    return path


def _train(trainer: Trainer, graph: Graph, spec: TrainSpec, data: Any, backend: str,
           epochs: int | None, steps: int | None, start: Position | None) -> None:
    trainer_call = spec.get("trainer")
    if trainer_call is None or trainer_call.name == "backprop":
        trainer.run(data, epochs, steps, start)
    elif trainer_call.name == "hebbian":
        _hebbian(graph, spec, data, trainer.weights)
    else:
        raise NndslError(f"trainer '{trainer_call.name}' is not supported by the {backend} "
                         "backend yet", trainer_call.span, hint="backprop and hebbian train today")
