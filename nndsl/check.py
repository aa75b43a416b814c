"""`nndsl check`: a spec is fine when it parses, checks, initialises and runs forward in NumPy."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nndsl import ops
from nndsl.errors import NndslError
from nndsl.initialize import initialize
from nndsl.interpreter import run
from nndsl.ir import NUMPY_DTYPE, Graph, Program, TensorType, TrainSpec
from nndsl.memory import Estimate, check_memory

SYMBOL_SIZES = {"batch": 2, "time": 5}
OTHER_SYMBOL_SIZE = 3


@dataclass
class LayerRow:
    name: str
    op: str
    shape: list[int | str]
    params: int


@dataclass
class ModelReport:
    """What `nndsl check` prints for one model."""

    name: str
    params: int
    inputs: dict[str, list[int | str]]
    outputs: dict[str, list[int | str]]
    layers: list[LayerRow] = field(default_factory=list)
    memory: Estimate | None = None

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "params": self.params, "inputs": self.inputs,
                "outputs": self.outputs, "layers": [vars(r) for r in self.layers],
                "memory": self.memory.as_json() if self.memory else None}


def concrete(shape: tuple[int | str, ...], sizes: dict[str, int] | None = None) -> tuple[int, ...]:
    sizes = sizes or SYMBOL_SIZES
    return tuple(_size(d, sizes) for d in shape)


def _size(dim: int | str, sizes: dict[str, int]) -> int:
    """A dim's size: an int, a symbol, or a sum of them ("time+time" from concat)."""
    if isinstance(dim, int):
        return dim
    if "+" in dim:
        return sum(_size(int(p) if p.isdigit() else p, sizes) for p in dim.split("+"))
    return sizes.get(dim, OTHER_SYMBOL_SIZE)


def _index_bound(graph: Graph, name: str) -> int:
    """Largest safe index for an integer input: the smallest vocabulary that reads it, directly
    or through the ops that pass indices on (identity, reshape, concat, ...)."""
    carried, vocab = {name}, []
    for node in graph.nodes:  # topological order: one pass follows every path
        if not carried.intersection(node.inputs):
            continue
        if node.param("vocab"):
            vocab.append(node.param("vocab"))
        elif node.type is not None and node.type.dtype == "i64":
            carried.add(node.name)
    return min(vocab) if vocab else 2


def random_inputs(graph: Graph, rng: np.random.Generator,
                  sizes: dict[str, int] | None = None) -> dict[str, np.ndarray]:
    feeds = {}
    for name, ty in graph.inputs:
        shape = concrete(ty.shape, sizes)
        if ty.dtype == "i64":
            feeds[name] = rng.integers(0, _index_bound(graph, name), size=shape)
        else:
            feeds[name] = rng.standard_normal(shape).astype(NUMPY_DTYPE[ty.dtype])
    return feeds


def report(graph: Graph) -> ModelReport:
    sizes = {w.name: math.prod(w.shape) for w in graph.weights if w.role != "buffer"}
    rows, counted = [], set()
    for node in graph.nodes:
        own = [w for _, w in node.weights if w in sizes and w not in counted]
        counted.update(own)
        shape = list(node.type.shape) if node.type else []
        rows.append(LayerRow(node.label or node.name, node.op, shape,
                             sum(sizes[w] for w in own)))
    types = graph.types()
    return ModelReport(graph.name, graph.param_count(),
                       {n: list(t.shape) for n, t in graph.inputs},
                       {n: list(types[n].shape) for n in graph.outputs}, rows)


MAX_CHECK_ELEMENTS = 20_000_000  # beyond this `check` skips its trial forward pass


def forward_cost(graph: Graph) -> int:
    """Elements the trial forward pass would allocate: weights plus every value."""
    sizes = [int(np.prod(w.shape, dtype=np.float64)) for w in graph.weights]
    sizes += [int(np.prod(concrete(t.shape), dtype=np.float64)) for t in graph.types().values()]
    return sum(sizes)


def run_forward(graph: Graph, seed: int = 0) -> bool:
    """Initialise and run one forward pass on random inputs; shapes must match the checker's.

    Returns False (and runs nothing) when the model is too large for a quick trial run.
    """
    from nndsl.backends.numpy.prims import make_numpy_prims

    if forward_cost(graph) > MAX_CHECK_ELEMENTS:
        return False

    weights = initialize(graph, seed)
    feeds = random_inputs(graph, np.random.default_rng(seed))
    result = run(graph, make_numpy_prims(training=False, seed=seed), feeds, weights)
    for node in graph.nodes:
        got = np.shape(result.env[node.name])
        want = concrete(node.type.shape) if node.type else got
        if tuple(got) != tuple(want):
            raise NndslError(f"internal: {node.op} produced shape {list(got)}, the checker "
                             f"inferred {list(want)}", node.span)
    return True


def check_penalties(graph: Graph, trains: Sequence[TrainSpec]) -> None:
    """Each regularizer and constraint a weight gets (its own, or the train block's and its
    phases' for weight-role tensors) runs once on a small array of the weight's rank, so that
    a bad strength or axis is reported by `check`, at its call, not in the first training step."""
    from nndsl.backends.numpy.prims import make_numpy_prims

    P = make_numpy_prims()
    stages = [dict(s.settings) for t in trains for s in (t, *t.phases)]
    for w in graph.weights:
        calls = [("regularizer", w.regularize), ("constraint", w.constraint)]
        for settings in stages if w.role == "weight" else ():
            regs = settings.get("regularize")
            calls += [("regularizer", c) for c in (regs if isinstance(regs, tuple) else (regs,))]
            calls.append(("constraint", settings.get("constraint")))
        sample = np.ones(tuple(min(d, 2) for d in w.shape), NUMPY_DTYPE[w.dtype])
        for kind, call in ((k, c) for k, c in calls if c is not None):
            try:
                ops.get(call.name, kind, call.span).compute(P, sample, **dict(call.kwargs))
            except NndslError as e:
                e.span = e.span or call.span
                raise
            except (ValueError, IndexError, TypeError) as e:  # e.g. an axis the weight lacks
                raise NndslError(f"{call.name} cannot apply to {w.name}, shape "
                                 f"{list(w.shape)}: {e}", call.span,
                                 hint="dense weights are [out, in], conv weights "
                                 "[out, in, *kernel]") from e


def check_program(program: Program, max_memory: int | None = None) -> list[ModelReport]:
    """Each model's report; the memory estimate first (nndsl/memory.py), so a model too large
    for the machine is refused at its layer before the trial forward pass allocates it."""
    estimates = check_memory(program, max_memory)
    seeds = {t.model: t.get("seed", 0) for t in program.trains}
    reports = []
    for graph, memory in zip(program.models, estimates, strict=True):
        run_forward(graph, seeds.get(graph.name, 0))
        check_penalties(graph, [t for t in program.trains if t.model == graph.name])
        reports.append(report(graph))
        reports[-1].memory = memory
    return reports


def shape_text(shape: list[int | str] | TensorType) -> str:
    dims = shape.shape if isinstance(shape, TensorType) else shape
    return "[" + ", ".join(str(d) for d in dims) + "]"
