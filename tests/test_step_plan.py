"""The step plan (nndsl/training/step_plan.py) against the interpreter, its reference: for
every spec that trains with a loss, each node's value, the buffer updates and the loss are the
interpreter's bit for bit, in training mode, on NumPy and on torch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from nndsl.data.dataset import load_dataset
from nndsl.initialize import initialize
from nndsl.interpreter import run
from nndsl.program import load
from nndsl.training.core import loss_value
from nndsl.training.stages import stages
from nndsl.training.step_plan import LossPlan

from .conftest import SPECS

torch = pytest.importorskip("torch")


def _cases() -> list[tuple[Path, str, int]]:
    out = []
    for path in SPECS:
        program, _ = load(path)
        for train in program.trains:
            out += [(path, train.model, i) for i, stage in enumerate(stages(train))
                    if stage.loss is not None]
    return out


CASES = _cases()


def _tables(backend: str) -> Any:
    if backend == "numpy":
        from nndsl.backends.numpy.prims import make_numpy_prims

        return lambda: make_numpy_prims(training=True, seed=7), np.asarray
    from nndsl.backends.torch.prims import make_torch_prims

    def table() -> Any:
        return make_torch_prims(training=True, generator=torch.Generator().manual_seed(7))

    return table, lambda a: torch.as_tensor(np.asarray(a))


def _equal(got: Any, want: Any, what: str) -> None:
    got = got.detach().numpy() if isinstance(got, torch.Tensor) else np.asarray(got)
    want = want.detach().numpy() if isinstance(want, torch.Tensor) else np.asarray(want)
    assert got.dtype == want.dtype and got.shape == want.shape, what
    np.testing.assert_array_equal(got, want, err_msg=what)


def test_every_spec_that_trains_is_covered() -> None:
    assert len({path for path, _, _ in CASES}) >= 20


@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize(("path", "model", "index"), CASES,
                         ids=[f"{p.stem}-{m}-{i}" for p, m, i in CASES])
def test_plan_equals_the_interpreter_node_by_node(path: Path, model: str, index: int,
                                                  backend: str) -> None:
    program, _ = load(path)
    train = next(t for t in program.trains if t.model == model)
    stage = stages(train)[index]
    graph = program.model(model)
    wanted = {**dict(graph.inputs), **dict(train.targets)}
    data = load_dataset(wanted, [graph], train, path.parent)
    make, convert = _tables(backend)
    feeds = {k: convert(v[:8]) for k, v in data.train.items()}
    weights = {k: convert(v) for k, v in initialize(graph, train.get("seed", 0)).items()}

    P = make()
    want = run(graph, P, {n: feeds[n] for n, _ in graph.inputs}, weights)
    want_loss = loss_value(P, stage.loss, want.env, feeds, weights)
    P = make()
    got_loss, got = LossPlan(graph, stage.loss, P).run(P, feeds, weights)

    assert list(got.env) == list(want.env)
    for name in want.env:
        _equal(got.env[name], want.env[name], f"{path.stem}: {name}")
    assert got.updates.keys() == want.updates.keys()
    for name in want.updates:
        _equal(got.updates[name], want.updates[name], f"{path.stem}: update {name}")
    _equal(got_loss, want_loss, f"{path.stem}: the loss")
