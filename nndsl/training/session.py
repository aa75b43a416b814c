"""What every trainer shares during one run: the engine, the weights of each model, the data on
the device, the metrics so far, the update counter, and the checkpoint and stop hooks that the
orchestration (run.py) installs. A trainer writes nothing itself."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nndsl.backend import Engine
from nndsl.data.dataset import Dataset
from nndsl.data.stream import streamed
from nndsl.errors import NndslError
from nndsl.ir import Graph, Program, TrainSpec
from nndsl.training.stages import History, Stage


@dataclass
class Position:
    """Where training stands: with the weights, enough to continue exactly — after an epoch
    or, for a stop asked for mid-epoch (Ctrl-C), after any step of it.

    `record` is the trainer's JSON-able part (generator states, the batch reached, its losses),
    `state` its arrays by slot (optimizer moments per weight, a persistent Gibbs chain)."""

    stage: int
    epoch: int = 0  # epochs completed in this stage
    record: dict[str, Any] = field(default_factory=dict)
    state: dict[str, dict[str, Any]] = field(default_factory=dict)


STOP_SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP")  # Ctrl-C; docker stop, systemd, kill; hang-up


class Interrupted(Exception):
    """Training stopped on request (a signal) after its position was checkpointed."""

    def __init__(self, position: Position, step: int) -> None:
        super().__init__(f"stopped at epoch {position.epoch + 1}, step {step}")
        self.position, self.step = position, step
        self.run_dir: Path | None = None  # filled in by whoever wrote the checkpoint


@dataclass
class Session:
    """One run's shared state. `weights[model]` holds backend arrays while training."""

    program: Program
    spec: TrainSpec
    engine: Engine
    data: Dataset
    weights: dict[str, dict[str, Any]]
    epochs: int | None = None  # --epochs: overrides every stage's
    steps: int | None = None  # --steps: a budget of updates for the whole run
    step_rows: bool = False
    history: History = field(default_factory=History)
    step: int = 0  # updates applied so far, across stages and resumes
    on_row: Callable[[dict[str, Any]], None] = lambda row: None
    on_step: Callable[[int, int], None] = lambda done, total: None  # batches of the epoch
    diagnostics: History = field(default_factory=History)  # diagnostics.csv, one row per layer
    # (position, must): an epoch's end may be skipped (the hook decides how often to write);
    # a stage's end and a requested stop must be written.
    on_checkpoint: Callable[[Position, bool], None] = lambda position, must: None
    stop_requested: bool = False  # set by a signal handler; honoured after the current step
    # In a data-parallel run a signal is only this rank's vote; the ranks agree on stopping in
    # the step's all-reduce, so all of them stop after the same step.
    stop_agreed: Callable[[], bool] | None = None
    _rows: dict[str, Any] | None = None
    _val: dict[str, Any] | None = None

    @property
    def model(self) -> Graph:
        """The model the train block is named after (the one exported as model.onnx)."""
        return self.graph(self.spec.model)

    def graph(self, name: str) -> Graph:
        return self.program.model(name)

    @property
    def rows(self) -> dict[str, Any]:
        """The training rows on the backend (moved there once, batched by index)."""
        if self._rows is None:
            self._rows = self.engine.to_backend(self.data.train)
        return self._rows

    def batch(self, picked: np.ndarray) -> dict[str, Any]:
        """One batch's training rows on the device: taken by index from the rows there, or —
        streamed data (nndsl/data/stream.py) — read from disk, converted and moved."""
        if not streamed(self.data.train):
            return {k: self.engine.take(v, picked) for k, v in self.rows.items()}
        moved = self.engine.to_backend({k: v[picked] for k, v in self.data.train.items()})
        if getattr(self.engine, "parallel", None) is None:
            return moved
        here = np.arange(len(picked))  # a data-parallel rank keeps its shard of the batch
        return {k: self.engine.take(v, here) for k, v in moved.items()}

    @property
    def train_rows(self) -> dict[str, Any]:
        """The training rows the evaluation reads: on the device (`rows`) unless streamed."""
        return self.data.train if streamed(self.data.train) else self.rows

    @property
    def val_rows(self) -> dict[str, Any]:
        """The validation rows, moved to the device once unless streamed."""
        if streamed(self.data.val) or not self.data.val:
            return self.data.val
        if self._val is None:
            self._val = self.engine.to_backend(self.data.val)
        return self._val

    def epochs_for(self, stage: Stage) -> float:
        if self.epochs is not None:
            return self.epochs
        given = stage.settings.get("epochs")
        return int(given) if given is not None else (math.inf if self.steps else
                                                     int(stage.get("epochs")))

    def budget_left(self) -> bool:
        return self.steps is None or self.step < self.steps

    def record(self, row: dict[str, Any]) -> None:
        self.history.rows.append(row)
        self.on_row(row)

    def checkpoint(self, position: Position, must: bool) -> None:
        """Hand the position to the hook, never with a non-finite weight: the last good
        checkpoint must stay good."""
        for model, weights in self.weights.items():
            bad = self.engine.nonfinite(weights)
            if bad is not None:
                where = bad if model == self.spec.model else f"{model}'s {bad}"
                raise NndslError(f"weight '{where}' became non-finite by step {self.step}",
                                 self.spec.span, hint="lower the learning rate or add "
                                 "`clip = norm(1.0)`")
        self.on_checkpoint(position, must)

    def stop_here(self, position: Position) -> None:
        """If a stop was asked for: checkpoint this position and end the run."""
        if self.stop_agreed() if self.stop_agreed is not None else self.stop_requested:
            self.checkpoint(position, must=True)
            raise Interrupted(position, self.step)
