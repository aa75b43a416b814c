"""How much memory a spec needs, estimated from the shapes in its IR before any work starts, so
a model too large for the machine is refused at the layer that makes it so — by `check`,
`compile`, `verify` and `train` alike, before a file is written — instead of dying with a
MemoryError after an hour (or after `train` made its run directory).

The estimate, in bytes, at the train block's batch size (its largest phase's; 32 when a train
block leaves it unset; 1 for a model no block trains), other symbolic sizes as `check` runs them
(time 5, others 3):

- parameters: every weight and buffer;
- activations: every value the model computes, inputs included, at that batch;
- a forward pass needs parameters + activations; training keeps the weights, their gradients
  and up to two optimizer moments (4 x parameters) and every value with its gradient
  (2 x activations).

It is a lower bound of what a backend allocates, good for refusing what cannot fit.
"""

from __future__ import annotations

import argparse
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nndsl.errors import NndslError

TRAIN_WEIGHT_COPIES = 4  # weights, gradients, two optimizer moments (Adam's m and v)
TRAIN_VALUE_COPIES = 2  # every value kept for the backward pass, and its gradient
UNITS = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}
UNLIMITED = 1 << 62


def available_memory() -> int:
    """Bytes this process may still allocate: MemAvailable from /proc/meminfo, lowered by a
    cgroup limit (a container's) when one is set; without either, no limit."""
    found = [UNLIMITED]
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                found.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        used = Path("/sys/fs/cgroup/memory.current").read_text().strip()
        if limit.isdigit() and used.isdigit():
            found.append(max(int(limit) - int(used), 0))
    except OSError:
        pass
    return min(found)


def parse_size(text: str) -> int:
    """`8G`, `512M`, `1.5GiB`, `4096` (bytes): an argparse type for --max-memory."""
    found = re.fullmatch(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([kmgt]?)(?:i?b)?\s*", text.lower())
    value = float(found[1]) * UNITS[found[2]] if found else 0.0
    if not 0 < value < UNLIMITED:
        raise argparse.ArgumentTypeError(f"{text!r} is not a memory size (e.g. 8G, 512M, "
                                         "1.5GiB or a number of bytes)")
    return int(value)


def add_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--max-memory", type=parse_size, metavar="SIZE",
                        help="refuse a model whose estimated memory exceeds SIZE (e.g. 8G; "
                        "default: the memory this machine has available)")


def size_text(n: int) -> str:
    for unit, scale in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


@dataclass
class Estimate:
    """One model's memory estimate, in bytes."""

    model: str
    batch: int
    params: int
    activations: int
    trained: bool

    @property
    def total(self) -> int:
        if self.trained:
            return TRAIN_WEIGHT_COPIES * self.params + TRAIN_VALUE_COPIES * self.activations
        return self.params + self.activations

    def as_json(self) -> dict[str, Any]:
        return {"batch": self.batch, "param_bytes": self.params,
                "activation_bytes": self.activations, "trained": self.trained,
                "estimate_bytes": self.total}

    def text(self) -> str:
        need = "training needs" if self.trained else "a forward pass needs"
        return (f"memory: parameters {size_text(self.params)}, activations at batch "
                f"{self.batch} {size_text(self.activations)}; {need} about "
                f"{size_text(self.total)}")


def batch_size(program: Any, model: str) -> int:
    """The batch a model runs at: its train block's (the largest of its phases'), else 1."""
    from nndsl.training.stages import stages

    return max((int(stage.get("batch")) for t in program.trains if t.model == model
                for stage in stages(t)), default=1)


def _bytes(ty: Any, batch: int) -> int:
    import numpy as np

    from nndsl.check import SYMBOL_SIZES, concrete
    from nndsl.ir import NUMPY_DTYPE

    shape = concrete(ty.shape, {**SYMBOL_SIZES, "batch": batch})
    return math.prod(shape) * np.dtype(NUMPY_DTYPE[ty.dtype]).itemsize


def _layers(graph: Any, batch: int) -> list[tuple[Any, int, int]]:
    """(node, weight bytes it brings, its value's bytes) in order; inputs as the first rows."""
    weights = {w.name: _bytes(w, 1) for w in graph.weights}
    rows: list[tuple[Any, int, int]] = [(None, 0, _bytes(ty, batch)) for _, ty in graph.inputs]
    for node in graph.nodes:
        own = sum(weights.pop(w, 0) for _, w in node.weights)
        rows.append((node, own, _bytes(node.type, batch) if node.type is not None else 0))
    rows.append((None, sum(weights.values()), 0))  # weights no node names (none, normally)
    return rows


def row_bytes(graph: Any) -> tuple[int, int]:
    """(bytes of every value the model computes for one row, inputs included; of its inputs
    alone), at the sizes `check` gives symbols other than the batch."""
    rows = _layers(graph, 1)  # the inputs first
    return sum(r[2] for r in rows), sum(r[2] for r in rows[:len(graph.inputs)])


def estimate(program: Any, graph: Any, batch: int | None = None) -> Estimate:
    trained = any(t.model == graph.name for t in program.trains) and batch is None
    batch = batch or batch_size(program, graph.name)
    rows = _layers(graph, batch)
    return Estimate(graph.name, batch, sum(r[1] for r in rows), sum(r[2] for r in rows),
                    trained)


def check_memory(program: Any, limit: int | None = None,
                 batch: int | None = None) -> list[Estimate]:
    """Each model's estimate; a positioned error at the first layer that takes one past
    `limit` (default: the memory available now). `batch`: a forward pass at that batch
    instead (`verify` runs batches of up to 7), else the spec's (training when trained)."""
    limit = available_memory() if limit is None else limit
    out = []
    for graph in program.models:
        found = estimate(program, graph, batch)
        if found.total > limit:
            raise _too_large(graph, found, limit)
        out.append(found)
    return out


def _too_large(graph: Any, found: Estimate, limit: int) -> NndslError:
    weights = TRAIN_WEIGHT_COPIES if found.trained else 1
    values = TRAIN_VALUE_COPIES if found.trained else 1
    running, culprit = 0, None
    for node, own, value in _layers(graph, found.batch):
        running += weights * own + values * value
        if running > limit and node is not None:
            culprit = node
            break
    where = f"layer '{culprit.label or culprit.name}' ({culprit.op}) takes model " \
        f"'{graph.name}'" if culprit is not None else f"model '{graph.name}' goes"
    return NndslError(f"{where} past the memory available: about {size_text(found.total)} "
                      f"(parameters {size_text(found.params)}, activations at batch "
                      f"{found.batch} {size_text(found.activations)})",
                      culprit.span if culprit is not None else graph.span,
                      expected=f"at most {size_text(limit)}",
                      received=f"about {size_text(found.total)}",
                      hint="make the layer or the batch smaller; --max-memory SIZE sets "
                      "another limit (it is checked before any work starts)")

