"""Truncated backpropagation through time: `truncate = K` in a train block.

Each batch of sequences is cut along its time axis into chunks of K steps (the last may be
shorter), and each chunk is one update, in order: the forward pass starts from the state the
recurrent layers ended the previous chunk with, and the backward pass stops there (the state
is carried as a value, detached: no gradient flows into the previous chunk). The first chunk
starts from the layers' initial state (zeros, or learned: `initial_state=learned`), so a
learned initial state gets its gradient from the first chunk only. One update per chunk is the
classic form (Williams and Peng's BPTT(K, K); Keras's stateful RNNs over windows): a batch of
length T makes ceil(T / K) updates, and the memory a step holds grows with K, not with T.

How the state travels: the model graph is rewritten once so that each recurrent node binds its
carry slots (`LABEL.state_h`, and `LABEL.state_c` for an lstm) to names that are not weights;
the trainer feeds the carried arrays there (None for the first chunk) and reads the new ones
from the run's updates, where a layer reports its final state in training mode
(nndsl/ops/recurrent.py). Inputs and targets whose axis 1 is the symbolic `time` are cut; other
arrays go whole to every chunk. A batch's loss in metrics.csv is its chunks' losses weighted by
their lengths. Evaluation and export run the whole sequence from the initial state.

`nndsl check` refuses a model that cannot carry its state: no recurrent layer, a bidirectional
one (its reverse direction reads the sequence from the end), one with `sequences=false` (it
gives one output per chunk, not per step), no `time` axis on the inputs, a target without one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from nndsl.errors import NndslError, Span
from nndsl.ir import Graph, TensorType, TrainSpec
from nndsl.training.stages import Stage

# op -> the state it carries from chunk to chunk (its `state_*` parameters)
CARRIED = {"rnn": ("state_h",), "gru": ("state_h",), "lstm": ("state_h", "state_c")}
TIME = "time"

Step = Callable[[dict[str, Any], Graph, dict[str, Any]], tuple[float, dict[str, Any]]]


def _timed(ty: TensorType) -> bool:
    return ty.rank >= 2 and ty.shape[1] == TIME


def where(spec: TrainSpec, stage: Stage) -> Span | None:
    """Where `truncate` is set for this stage: its phase's line, else the block's."""
    phase = next((p for p in spec.phases if p.name == stage.name), None)
    if phase is not None and "truncate" in dict(phase.settings):
        return phase.where("truncate")
    return spec.where("truncate")


def check(model: Graph, spec: TrainSpec, stage: Stage) -> None:
    """Positioned errors for a model whose recurrent layers cannot carry state across chunks."""
    at = where(spec, stage)
    layers = [n for n in model.nodes if n.op in CARRIED]
    if not layers:
        raise NndslError("truncate cuts the time axis of recurrent layers; this model has none",
                         at, hint="remove `truncate`, or use rnn, lstm or gru")
    for node in layers:
        why = ("is bidirectional: its reverse direction reads each sequence from the end"
               if node.param("bidirectional") else
               "returns one output per sequence (sequences=false), not one per step"
               if not node.param("sequences") else None)
        if why is not None:
            raise NndslError(f"{node.op} '{node.label}' cannot carry its state across the "
                             f"chunks of `truncate`: it {why}", node.span,
                             hint="make it one-directional with sequences=true, or remove "
                             "truncate").with_note("truncate is set here", at)
    if not any(_timed(ty) for _, ty in model.inputs):
        raise NndslError(f"truncate cuts the `{TIME}` axis, and no input has it", at,
                         hint="declare the sequences as `input x: [batch, time, features]`")
    for name, ty in spec.targets:
        if not _timed(ty):
            raise NndslError(f"target '{name}' has no `{TIME}` axis: truncate computes the loss "
                             "on each chunk of steps, so it needs a target per step", at,
                             expected=f"[batch, {TIME}, ...]", received=str(list(ty.shape)))


def carrying(model: Graph) -> tuple[Graph, tuple[str, ...]]:
    """The model with each recurrent node's carry slots bound, and the slots' names."""
    nodes, slots = [], []
    for node in model.nodes:
        if node.op in CARRIED:
            bound = tuple((p, f"{node.label}.{p}") for p in CARRIED[node.op])
            node = replace(node, weights=node.weights + bound)
            slots += [name for _, name in bound]
        nodes.append(node)
    return replace(model, nodes=tuple(nodes)), tuple(slots)


class Truncation:
    """Runs one batch as chunks of `length` steps, carrying the recurrent state between them."""

    def __init__(self, model: Graph, spec: TrainSpec, length: int) -> None:
        self.length = length
        self.graph, self.slots = carrying(model)
        self.timed = {name for name, ty in (*model.inputs, *spec.targets) if _timed(ty)}

    def chunk(self, feeds: Mapping[str, Any], start: int) -> dict[str, Any]:
        stop = start + self.length
        return {k: v[:, start:stop] if k in self.timed else v for k, v in feeds.items()}

    def run(self, feeds: Mapping[str, Any], step: Step, more: Callable[[], bool]) -> float:
        """Each chunk through `step(feeds, graph, carried) -> (loss, final state)`, in order,
        while `more()` (the run's step budget) allows; the batch's length-weighted loss."""
        steps = next(v.shape[1] for k, v in feeds.items() if k in self.timed)
        carried: dict[str, Any] = dict.fromkeys(self.slots)  # None: the initial state
        losses: list[tuple[float, int]] = []
        for start in range(0, steps, self.length):
            if losses and not more():
                break
            loss, carried = step(self.chunk(feeds, start), self.graph, carried)
            losses.append((loss, min(self.length, steps - start)))
        if len(losses) == 1:
            return losses[0][0]
        return sum(loss * n for loss, n in losses) / sum(n for _, n in losses)
