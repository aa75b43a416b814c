"""A train block as the stages it runs, the metrics it records, and the batch order.

Phases run in order; each takes the block's settings overlaid by its own. Without phases the
block is one stage called `main`. Each stage names its trainer (`trainer = ...`, backprop by
default), so a deep belief network can pre-train by contrastive divergence and fine-tune by
backpropagation in one block.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nndsl.ir import Call, Graph, Phase, Span, TrainSpec

DEFAULTS: dict[str, Any] = {"batch": 32, "epochs": 10, "shuffle": True, "seed": 0}
BACKPROP = Call("backprop")


@dataclass
class Stage:
    """One phase's resolved settings (the train block's, overlaid by the phase's)."""

    name: str
    loss: Graph | None
    settings: dict[str, Any]
    frozen: tuple[str, ...]
    span: Span | None = None

    def get(self, key: str, default: Any = None) -> Any:
        if key in self.settings:
            return self.settings[key]
        return DEFAULTS.get(key, default)

    @property
    def trainer_call(self) -> Call:
        return self.settings.get("trainer") or BACKPROP


def stages(spec: TrainSpec) -> list[Stage]:
    base = dict(spec.settings)
    base_freeze = tuple(base.pop("freeze", ()))
    if not spec.phases:
        return [Stage("main", spec.loss, base, base_freeze, spec.span)]
    return [Stage(phase.name, phase.loss or spec.loss, {**base, **dict(phase.settings)},
                  tuple(phase.freeze) or base_freeze, phase.span) for phase in spec.phases]


def main_phase(spec: TrainSpec) -> Phase:
    """The block itself as a phase (what a block without phases runs)."""
    return Phase("main", spec.settings, spec.loss, tuple(spec.get("freeze", ())), spec.span)


@dataclass
class History:
    """Rows of metrics.csv: one per epoch (and per step when asked)."""

    rows: list[dict[str, Any]] = field(default_factory=list)

    def series(self, key: str) -> list[float]:
        return [r[key] for r in self.rows if r.get("kind") == "epoch" and key in r]

    def keys(self) -> list[str]:
        """Every column, in the order they first appear."""
        return list(dict.fromkeys(k for row in self.rows for k in row))

    def csv(self) -> str:
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=self.keys(), lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows)
        return out.getvalue()


def batches(rows: int, size: int, shuffle: bool, rng: np.random.Generator) -> Iterator[np.ndarray]:
    """Row indices of each batch: a fresh permutation per epoch, or data order; the last batch
    may be smaller."""
    order = rng.permutation(rows) if shuffle else np.arange(rows)
    for start in range(0, rows, size):
        yield order[start:start + size]


def stream_seed(seed: int, step: int, stream: int = 0) -> int:
    """The seed of one use of randomness: the block's seed, the update counter and which
    stream (0: the forward pass, 1: gradient noise, 2...: a trainer's own draws). Every draw is
    a function of these, so a resumed run draws what the uninterrupted one drew."""
    return seed * 1_000_003 + step + (stream << 40)
