"""The per-epoch evaluation: the metrics on the training rows, and the loss and metrics on the
validation rows, in inference mode, on whatever engine trained the model.

It runs in batches of rows through the engine's inference table: as many rows as the model's
values fit in `EVAL_BYTES` (estimated per row from its shapes), at least the train block's
batch and `EVAL_BATCH`. An epoch's evaluation holds one batch's values at a time, never the
data set's; a small data set is evaluated in one batch, not in kernels of a few hundred rows.
The loss and every metric are accumulated on the device as sums that batches add up
(nndsl/training/statistics.py), so they equal the value on all the rows in one batch up to
rounding; only the final numbers reach the host.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nndsl.backend import Engine
from nndsl.errors import NndslError
from nndsl.interpreter import call_node, run
from nndsl.ir import Call, Graph, Node
from nndsl.memory import row_bytes
from nndsl.ops.metrics import metric_call, metric_column
from nndsl.training import statistics
from nndsl.training.stages import Stage
from nndsl.training.statistics import Statistic

EVAL_BATCH = 512  # rows per evaluation batch at the least: fewer, larger steps than training's
EVAL_BYTES = 4 << 20  # and as many more rows as the model's values fit in (estimated)


def evaluate(engine: Engine, model: Graph, weights: Mapping[str, Any], stage: Stage,
             train: Mapping[str, Any], val: Mapping[str, Any], target: str | None,
             batch: int | None = None) -> dict[str, float]:
    """After an epoch: the metrics on the training rows, and the loss and metrics on the
    validation rows, in inference mode. `train` and `val` are arrays by name: on the device,
    on the host, or memory-mapped (nndsl/data/stream.py); each batch is moved as it is used."""
    metrics = [metric_call(m) for m in stage.get("metrics") or ()]
    size = max(int(batch or 0), EVAL_BATCH, EVAL_BYTES // _row_bytes(model, train or val))
    out: dict[str, float] = {}
    with _inference(engine), np.errstate(all="ignore"):
        for prefix, part in (("", train), ("val_", val)):
            if not part or (not prefix and not metrics):
                continue
            if metrics and target is None:
                raise NndslError(f"metric '{metrics[0].name}' needs a target", None,
                                 hint="declare one: `target y: [batch]`")
            loss = stage.loss if prefix else None
            out.update(_evaluate_part(engine, model, weights, loss, metrics, part, target, size,
                                      prefix))
    return out


_ROW_BYTES: dict[int, tuple[Graph, tuple[int, int]]] = {}


def _row_bytes(model: Graph, part: Mapping[str, Any]) -> int:
    """Bytes of every value the model computes for one row, from the shapes `check` gives it
    (nndsl/memory.py), scaled up where the data's rows are larger than those shapes say (a
    sequence longer than the symbolic time of 5)."""
    found = _ROW_BYTES.get(id(model))
    if found is None or found[0] is not model:
        if len(_ROW_BYTES) >= 64:  # graphs made and dropped (tests): start again
            _ROW_BYTES.clear()
        found = _ROW_BYTES[id(model)] = (model, row_bytes(model))
    values, shaped = found[1]
    inputs = {name for name, _ in model.inputs}
    given = sum(_bytes_per_row(v) for k, v in (part or {}).items() if k in inputs)
    return max(int(values * max(given / shaped, 1.0)) if shaped else values, 1)


def _bytes_per_row(array: Any) -> int:
    """One row's bytes of an array: NumPy, memory-mapped (nndsl/data/stream.py) or torch."""
    shape = tuple(array.shape)
    if not shape or not shape[0]:
        return 0
    dtype = array.dtype
    size = dtype.itemsize if isinstance(dtype, np.dtype) else array.element_size()
    return int(np.prod(shape[1:], dtype=np.int64)) * int(size)


def _evaluate_part(engine: Engine, model: Graph, weights: Mapping[str, Any], loss: Graph | None,
                   metrics: list[Call], part: Mapping[str, Any], target: str | None, size: int,
                   prefix: str) -> dict[str, float]:
    P = engine.P
    parallel = getattr(engine, "parallel", None)  # a rank of a data-parallel run
    if parallel is not None:  # a batch for every rank where the rows allow it
        rows = len(next(iter(part.values())))
        size = min(size, max(EVAL_BATCH, -(-rows // parallel.world)))
    plan = LossPlan.of(model, loss, weights) if loss is not None else None
    stats = {prefix + metric_column(m): statistics.for_metric(m.name, **dict(m.kwargs))
             for m in metrics}
    for feeds, rows in batches_of(engine, part, size, parallel):
        env = engine.run(model, {n: feeds[n] for n, _ in model.inputs}, weights).env
        if plan is not None:
            plan.add(P, env, feeds, rows)
        if stats:
            y, t = env[model.outputs[0]], feeds[target]  # type: ignore[index]
            for stat in stats.values():
                stat.add(P, [y, t], rows)
    if parallel is not None:
        return _shared(parallel, engine, plan, stats)
    return _values(engine, plan, stats)


def _values(engine: Engine, plan: LossPlan | None, stats: dict[str, Statistic]) -> \
        dict[str, float]:
    P = engine.P
    out = {"val_loss": engine.scalar(plan.value(P))} if plan is not None else {}
    out.update({name: engine.scalar(stat.value(P)) for name, stat in stats.items()})
    return out


def _shared(parallel: Any, engine: Engine, plan: LossPlan | None,
            stats: dict[str, Statistic]) -> dict[str, float]:
    """A data-parallel rank evaluated every world-th batch: rank 0, which holds the first
    batch, merges every rank's totals in rank order and shares the values, so every rank takes
    the same decisions (early stopping, the best epoch) from the same numbers."""
    from nndsl.training.distributed import broadcast, gather_all

    held = [*(plan.statistics() if plan is not None else []), *stats.values()]
    totals = gather_all([(_to_host(s.state), s.rows) for s in held])
    if parallel.rank != 0:
        return broadcast(None)
    for index, stat in enumerate(held):
        for rank_totals in totals[1:]:
            state, rows = rank_totals[index]
            if state is not None:
                stat.state = stat.merge(engine.P, stat.state, _to_device(state, engine))
                stat.rows += rows
    return broadcast(_values(engine, plan, stats))


def _to_host(state: Any) -> Any:
    """A statistic's totals, with tensors on the CPU (to travel between ranks)."""
    if isinstance(state, (tuple, list)):
        return type(state)(_to_host(x) for x in state)
    return state.detach().cpu() if hasattr(state, "detach") else state


def _to_device(state: Any, engine: Engine) -> Any:
    if isinstance(state, (tuple, list)):
        return type(state)(_to_device(x, engine) for x in state)
    return state.to(engine.device) if hasattr(state, "detach") else state


def batches_of(engine: Engine, part: Mapping[str, Any], size: int, parallel: Any = None) -> \
        Iterator[tuple[dict[str, Any], int]]:
    """Consecutive batches of `size` rows on the device, with their number of rows; a rank of
    a data-parallel run takes every world-th batch from its own (batches keep the boundaries
    one process would use, so each batch's value is the same)."""
    rows = len(next(iter(part.values())))
    for number, start in enumerate(range(0, rows, size)):
        if parallel is not None and number % parallel.world != parallel.rank:
            continue
        stop = min(start + size, rows)
        yield engine.to_backend({k: v[start:stop] for k, v in part.items()}), stop - start


def _inference(engine: Engine) -> AbstractContextManager[Any]:
    """No autograd graph is recorded while evaluating (torch); NumPy records none anyway."""
    if getattr(engine, "name", "") != "torch":
        return nullcontext()
    import torch

    return torch.no_grad()


@dataclass
class LossPlan:
    """How a loss graph is accumulated over batches.

    Every node that turns rows into one number (a loss call, a metric) is accumulated by its
    statistic; the scalar arithmetic after those nodes (`bce(...) + 0.01 * kl_normal(...)`,
    even `sqrt(mse(...))`) is replayed once on their totals, so the result is the loss of all
    the rows. A graph that mixes a total back into rows (`mse(y * mse(y, t), t)`) has no such
    decomposition: its value is the row-weighted mean of the batches' values."""

    loss: Graph
    weights: Mapping[str, Any]
    reductions: dict[str, Statistic] = field(default_factory=dict)
    tail: list[Node] = field(default_factory=list)
    whole: Statistic | None = None
    env: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, model: Graph, loss: Graph, weights: Mapping[str, Any]) -> LossPlan:
        plan = cls(loss, weights)
        rowwise = _rowwise(model, loss, weights)
        reduced: set[str] = set()
        for node in loss.nodes:
            if any(i in reduced for i in node.inputs):
                if any(i in rowwise for i in node.inputs):
                    plan.whole = Statistic(lambda P, value: value)
                    return plan
                plan.tail.append(node)
                reduced.add(node.name)
            elif any(i in rowwise for i in node.inputs):
                if node.type is not None and node.type.rank == 0:
                    plan.reductions[node.name] = plan._statistic(node)
                    reduced.add(node.name)
                else:
                    rowwise.add(node.name)
        if loss.outputs[0] in rowwise:
            plan.whole = Statistic(lambda P, value: value)
        return plan

    def _statistic(self, node: Node) -> Statistic:
        def fn(P: Any, *args: Any) -> Any:
            return call_node(P, node, list(args), self.weights)

        return statistics.for_reduction(node.op, dict(node.params), fn)

    def add(self, P: Any, env: Mapping[str, Any], feeds: Mapping[str, Any], rows: int) -> None:
        """One batch: the model's values `env` and the batch's arrays `feeds`."""
        sources = (env, feeds, self.weights)
        values = {n: next(s[n] for s in sources if n in s) for n, _ in self.loss.inputs}
        if self.whole is not None:
            value = run(self.loss, P, values, self.weights).env[self.loss.outputs[0]]
            self.whole.add(P, [value], rows)
            return
        skip = {n.name for n in self.tail}
        for node in self.loss.nodes:
            if node.name in skip:
                continue
            args = [values[i] for i in node.inputs]
            if node.name in self.reductions:
                self.reductions[node.name].add(P, args, rows)
            else:
                values[node.name] = call_node(P, node, args, self.weights)
        self.env = values

    def statistics(self) -> list[Statistic]:
        """What the batches accumulate (merged across the ranks of a data-parallel run)."""
        return [self.whole] if self.whole is not None else list(self.reductions.values())

    def value(self, P: Any) -> Any:
        """The loss of every row added so far."""
        if self.whole is not None:
            return self.whole.value(P)
        env = dict(self.env)
        env.update({name: stat.value(P) for name, stat in self.reductions.items()})
        for node in self.tail:
            env[node.name] = call_node(P, node, [env[i] for i in node.inputs], self.weights)
        return env[self.loss.outputs[0]]


def _rowwise(model: Graph, loss: Graph, weights: Mapping[str, Any]) -> set[str]:
    """The values with a row per example: the model's inputs and what depends on them, and the
    loss graph's other inputs that are not weights (the targets)."""
    out = {n for n, _ in model.inputs}
    for node in model.nodes:
        if any(i in out for i in node.inputs):
            out.add(node.name)
    produced = out | {n.name for n in model.nodes}
    out |= {n for n, _ in loss.inputs if n not in produced and n not in weights}
    return out
