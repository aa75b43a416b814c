"""The best epoch of a run, the one users expect to get back.

"Best" is measured by the phase's early-stop monitor (with its mode and min_delta), else by
`val_loss` when the run holds out validation rows, else by `loss`. The best epoch's weights,
metrics row and position are kept as best.npz beside checkpoint.npz (the last epoch), written
by the checkpoint writer just before each checkpoint that follows a new best, so that the two
agree. A phase whose `early_stop` says `restore = best` (the default) ends with its best
epoch's weights: a later phase starts from them, and after the last phase they are the model
exported (checkpoint.npz keeps the last epoch, so `--extend` continues exactly).

On resume the checkpoint's record names its best epoch; best.npz supplies the weights when it
holds that epoch. When it does not (deleted, damaged, or newer: a kill between the two
writes), the best value is kept and the weights come back when the replayed epochs reach a
better one; if none does, the last epoch is exported and the summary says why.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nndsl.errors import NndslError
from nndsl.ir import Graph
from nndsl.ops.stopping import improves
from nndsl.training import checkpoint
from nndsl.training.session import Session
from nndsl.training.stages import Stage

NAME = "best.npz"
DAMAGED = ("checkpoints are written by nndsl only: this one was damaged or changed since; "
           "resume from a copy, or start the run again")


@dataclass(frozen=True)
class Rule:
    """How one phase ranks its epochs, and whether it ends with the best one's weights."""

    monitor: str | None  # None: val_loss when recorded, else loss
    mode: str = "min"
    min_delta: float = 0.0
    restore: bool = False
    early_stop: bool = False

    def series(self, row: Mapping[str, Any]) -> str:
        if self.monitor is not None:
            return self.monitor
        return "val_loss" if "val_loss" in row else "loss"


def rule(stage: Stage) -> Rule:
    stop = stage.get("early_stop")
    if stop is None:
        return Rule(None)
    return Rule(str(stop.get("monitor", "val_loss")), str(stop.get("mode", "min")),
                float(stop.get("min_delta", 0.0)), stop.get("restore", "best") == "best", True)


@dataclass
class Best:
    """The best epoch so far of the phase running (a phase's epochs are ranked among
    themselves: another phase may train another loss)."""

    stages: list[Stage]
    index: int | None = None  # the stage of `row`
    row: dict[str, Any] | None = None
    weights: dict[str, dict[str, np.ndarray]] | None = None  # host copies; None: lost
    written: dict[str, Any] | None = None  # the record of what best.npz holds
    rules: list[Rule] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.rules = [rule(s) for s in self.stages]

    def _stage(self, phase: Any) -> int | None:
        return next((i for i, s in enumerate(self.stages) if s.name == phase), None)

    def observe(self, row: dict[str, Any], session: Session) -> None:
        """An epoch's metrics row, recorded with the weights the epoch ended with."""
        index = self._stage(row.get("phase"))
        if row.get("kind") != "epoch" or index is None:
            return
        if index != self.index:
            self.index, self.row, self.weights = index, None, None
        r = self.rules[index]
        key = r.series(row)
        value = row.get(key)
        if not isinstance(value, int | float):
            return
        best = self.row.get(key) if self.row is not None else None
        if improves(float(value), best, mode=r.mode, min_delta=r.min_delta):
            self.row = dict(row)
            self.weights = {m: {k: np.array(v, copy=True) for k, v in
                                session.engine.to_numpy(ws).items()}
                            for m, ws in session.weights.items()}

    def restores(self, index: int) -> bool:
        """Whether stage `index` ends with its best epoch's weights (and they are here)."""
        return self.rules[index].restore and self.index == index and self.weights is not None

    def restore(self, session: Session) -> None:
        assert self.weights is not None
        session.weights = {m: session.engine.to_backend({k: np.array(v, copy=True)
                                                         for k, v in ws.items()})
                           for m, ws in self.weights.items()}

    def record(self) -> dict[str, Any] | None:
        """What a checkpoint's record says of the best epoch (best.npz holds its weights)."""
        if self.row is None:
            return None
        return {"stage": self.index, "epoch": self.row["epoch"], "step": self.row["step"],
                "row": self.row}

    def save(self, path: Path, meta: dict[str, Any]) -> None:
        """best.npz, when the best epoch changed since it was last written."""
        record = self.record()
        if record is None or self.weights is None or _same(record, self.written):
            return
        checkpoint.save(path / NAME, self.weights, {}, {
            **meta, "stage": record["stage"], "epoch": record["epoch"],
            "step": record["step"], "record": {}, "history": [], "best": record})
        self.written = record

    def resume(self, record: Any, path: Path, graphs: Mapping[str, Graph]) -> None:
        """The best epoch a checkpoint names, with its weights from best.npz when it holds
        that epoch."""
        if record is None:
            return
        self.index, self.row = _checked(record, len(self.stages))
        self.weights = None
        try:
            saved = checkpoint.load(path / NAME)
            for name, graph in graphs.items():
                checkpoint.check_weights(saved, name, graph.weights)
        except NndslError:
            return
        if _same(saved.meta.get("best"), record) and set(saved.weights) == set(graphs):
            self.weights, self.written = saved.weights, record

    def exported(self, session: Session) -> tuple[dict[str, dict[str, np.ndarray]], str]:
        """The weights to export after the last stage, and the summary's line on them."""
        last = {m: session.engine.to_numpy(ws) for m, ws in session.weights.items()}
        final = len(self.stages) - 1
        epochs = [r for r in session.history.rows if r.get("kind") == "epoch"]
        at = self._where(epochs[-1]) if epochs and epochs[-1]["step"] == session.step else \
            f"step {session.step}"
        if self.row is None or self.index != final:
            return last, f"exported the last epoch ({at})"
        r = self.rules[final]
        key = r.series(self.row)
        best = f"{key} {self.row[key]:.5g} at {self._where(self.row)}"
        if self.restores(final):
            assert self.weights is not None
            return ({m: {k: np.array(v, copy=True) for k, v in ws.items()}
                     for m, ws in self.weights.items()},
                    f"exported {self._where(self.row)}, the best: {best} (early_stop "
                    "restores the best epoch; checkpoint.npz keeps the last)")
        why = ("early_stop(restore=last)" if r.early_stop and not r.restore else
               "best.npz was missing or older than the checkpoint, and no later epoch was "
               "better" if r.restore else "no early_stop restores the best")
        return last, f"exported the last epoch ({at}); the best, {best}, is in best.npz ({why})"


    def _where(self, row: Mapping[str, Any]) -> str:
        """`epoch 7`, or `epoch 7 of phase finetune` when the block has phases."""
        phase = f" of phase {row.get('phase')}" if len(self.stages) > 1 else ""
        return f"epoch {row['epoch']}{phase}"


def _same(a: Any, b: Any) -> bool:
    keys = ("stage", "epoch", "step")
    return isinstance(a, dict) and isinstance(b, dict) and all(
        a.get(k) == b.get(k) for k in keys)


def _checked(record: Any, stages: int) -> tuple[int, dict[str, Any]]:
    """The checkpoint's record of its best epoch, checked like the rest of it: a damaged one
    is an error naming the field, never a best epoch made up."""
    def count(value: Any) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and value >= 0

    problem = None
    if not isinstance(record, dict) or not isinstance(record.get("row"), dict):
        problem = "best", 'an object {"stage", "epoch", "step", "row"}'
    elif not count(record.get("stage")) or record["stage"] >= stages:
        problem = "best.stage", f"a phase number below {stages}"
    elif not (count(record.get("epoch")) and count(record.get("step"))):
        problem = "best.epoch and best.step", "whole numbers >= 0"
    elif not all(isinstance(v, str) if k in ("kind", "phase") else
                 isinstance(v, int | float) and not isinstance(v, bool)
                 for k, v in record["row"].items()):
        problem = "best.row", "a metrics row: a kind, a phase and numbers"
    if problem is not None:
        raise NndslError(f"the checkpoint's record of the best epoch is damaged: {problem[0]} "
                         "is not what nndsl writes", expected=problem[1],
                         received=repr(record)[:80], hint=DAMAGED)
    return record["stage"], dict(record["row"])
