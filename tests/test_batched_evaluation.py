"""Evaluation in batches equals evaluation in one batch: every registered metric, on NumPy and
torch tables, and the loss graphs' decomposition (sums, means, arithmetic after them)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from nndsl.backends.numpy.prims import make_numpy_prims

from nndsl import ops
from nndsl.backend import make_engine
from nndsl.data.dataset import load_dataset
from nndsl.initialize import initialize
from nndsl.ops.metrics import TASKS, metric_column
from nndsl.program import load
from nndsl.training import evaluation, statistics
from nndsl.training.core import loss_value
from nndsl.training.run import plan
from nndsl.training.stages import stages

ROWS = 1000
# batched f64 accumulation of f32 values against one f32 reduction; f64 data throughout (the
# class metrics count in f32 whatever the data's dtype)
TOLERANCE = {np.float32: 2e-5, np.float64: 1e-11}


def _inputs(task: str, rng: np.random.Generator, dtype: Any) -> list[tuple[Any, Any]]:
    """(y, t) pairs of each shape the task's metrics take, with ties and every class."""
    if task == "classes":
        e = np.exp(rng.standard_normal((ROWS, 5)))
        y = e / e.sum(-1, keepdims=True)
        t = rng.integers(0, 5, ROWS)
        return [(y, t), (y, np.eye(5)[t])]
    if task == "binary":
        y = np.round(rng.random((ROWS, 1)), 1)  # ties, and scores of exactly 0.5
        t = (rng.random((ROWS, 1)) < 0.4).astype(float)
        two = np.concatenate([1 - y, y], 1)
        return [(y, t), (y[:, 0], t[:, 0]), (two, t[:, 0]), (two, np.concatenate([1 - t, t], 1))]
    y = rng.standard_normal((ROWS, 3))
    t = y + rng.standard_normal((ROWS, 3)) * [0.1, 1.0, 0.0]  # column 3 fitted exactly
    return [(y, t), (y[:, :1] * 0 + 2.0, t[:, :1] * 0 + 2.0)]  # a constant column


def _tables() -> list[tuple[str, Any, Any]]:
    torch = pytest.importorskip("torch")
    from nndsl.backends.torch.prims import make_torch_prims

    return [("numpy", make_numpy_prims(), np.asarray),
            ("torch", make_torch_prims(training=False, device=torch.device("cpu")),
             torch.as_tensor)]


def _cases() -> list[tuple[str, str]]:
    return [(name, task) for name, tasks in TASKS.items() for task in sorted(tasks)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("name", "task"), _cases())
def test_every_metric_batched_equals_one_batch(name: str, task: str, dtype: Any) -> None:
    rng = np.random.default_rng(3)
    fn = ops.get(name, "metric").compute
    tolerance = TOLERANCE[dtype if task == "values" else np.float32]
    for label, P, to in _tables():
        for y, t in _inputs(task, rng, dtype):
            if name == "roc_auc" and y.ndim == 2 and y.shape[1] == 2 and t.ndim == 1:
                continue  # roc_auc of two columns reads one-hot targets or 0/1 rows
            y, t = to(y.astype(dtype)), to(t.astype(dtype) if t.dtype.kind == "f" else t)
            whole = float(fn(P, y, t))
            for size in (1, 7, 64, ROWS):
                stat = statistics.for_metric(name)
                for start in range(0, ROWS, size):
                    stat.add(P, [y[start:start + size], t[start:start + size]],
                             min(size, ROWS - start))
                got = float(stat.value(P))
                assert got == pytest.approx(whole, rel=tolerance, abs=tolerance,
                                            nan_ok=True), (label, name, size)


def test_roc_auc_of_one_class_is_nan() -> None:
    P = make_numpy_prims()
    stat = statistics.for_metric("roc_auc")
    stat.add(P, [np.array([[0.2], [0.9]]), np.array([[1.0], [1.0]])], 2)
    assert np.isnan(float(stat.value(P)))


SPEC = """
model net {{
  input x: [batch, 4]
  h = x -> dense(8) -> tanh
  p = h -> dense(3) -> softmax
  output p, h
}}
train net {{
  data = npz("d.npz")
  target y: [batch]
  loss = {loss}
  metrics = [accuracy, f1, precision, recall, top_k_accuracy(k=2)]
  optimizer = sgd(lr=0.1)
  batch = 16
  split = 0.5
}}
"""
LOSSES = ["cross_entropy(p, y)", "cross_entropy(p, y, reduction=\"sum\")",
          "cross_entropy(p, y) + 0.1 * l1_activity(h)", "cross_entropy(p, y) ** 0.5",
          "cross_entropy(p, y) * cross_entropy(p, y, reduction=\"sum\") - 2.0"]


def _one_batch(program: Any, spec: Any, data: Any, weights: dict[str, Any]) -> dict[str, float]:
    """Today's reference: the whole split in one NumPy batch."""
    from nndsl.backends.numpy.engine import NumpyEngine

    P, model = make_numpy_prims(), program.model(spec.model)
    out = {}
    for prefix, part in (("", data.train), ("val_", data.val)):
        env = NumpyEngine().predict(model, part, weights)
        if prefix:
            out["val_loss"] = float(loss_value(P, spec.loss, env, part, weights))
        for call in spec.get("metrics"):
            out[prefix + metric_column(call)] = float(ops.get(call.name, "metric").compute(
                P, env["p"], part["y"], **dict(call.kwargs)))
    return out


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_evaluate_in_batches_equals_one_batch(tmp_path: Path, loss: str, backend: str,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(evaluation, "EVAL_BYTES", 0)  # batches of EVAL_BATCH rows, not one
    if backend == "torch":
        pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", x=rng.standard_normal((1203, 4)).astype(np.float32),
             y=rng.integers(0, 3, 1203))
    (tmp_path / "s.nn").write_text(SPEC.format(loss=loss))
    program, _ = load(tmp_path / "s.nn")
    spec = program.trains[0]
    model = program.model(spec.model)
    data = load_dataset(plan(program, spec).data, [model], spec, tmp_path)
    weights = initialize(model, 0)
    want = _one_batch(program, spec, data, weights)
    engine = make_engine(backend, "cpu", "device")
    stage = stages(spec)[0]
    got = evaluation.evaluate(engine, model, engine.to_backend(weights), stage, data.train,
                              data.val, "y", batch=100)
    assert list(got) == list(want)
    assert got == pytest.approx(want, rel=2e-5)
    assert evaluation.LossPlan.of(model, spec.loss, weights).whole is None


def test_a_total_mixed_back_into_rows_is_a_weighted_mean(tmp_path: Path) -> None:
    (tmp_path / "s.nn").write_text(SPEC.format(loss="mse(h * cross_entropy(p, y), h)"))
    program, _ = load(tmp_path / "s.nn")
    spec = program.trains[0]
    model = program.model(spec.model)
    assert evaluation.LossPlan.of(model, spec.loss, initialize(model, 0)).whole is not None


def test_the_evaluation_takes_as_many_rows_as_its_values_fit_in(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """One batch where the values of every row fit in EVAL_BYTES; else batches of as many rows
    as fit (never fewer than EVAL_BATCH); longer sequences than the shapes say count longer."""
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", x=rng.standard_normal((1203, 4)).astype(np.float32),
             y=rng.integers(0, 3, 1203))
    (tmp_path / "s.nn").write_text(SPEC.format(loss="cross_entropy(p, y)"))
    program, _ = load(tmp_path / "s.nn")
    spec = program.trains[0]
    model = program.model(spec.model)
    data = load_dataset(plan(program, spec).data, [model], spec, tmp_path)
    engine = make_engine("numpy", "cpu", "device")
    sizes: list[int] = []
    batches_of = evaluation.batches_of

    def counted(*args: Any) -> Any:
        for feeds, rows in batches_of(*args):
            sizes.append(rows)
            yield feeds, rows

    monkeypatch.setattr(evaluation, "batches_of", counted)
    per_row = 4 * (4 + 8 + 8 + 3 + 3)  # x, dense, tanh, dense, softmax: float32
    assert evaluation._row_bytes(model, data.train) == per_row

    def evaluated() -> list[int]:
        sizes.clear()
        evaluation.evaluate(engine, model, initialize(model, 0), stages(spec)[0], data.train,
                            data.val, "y", batch=16)
        return list(sizes)

    assert evaluated() == [601, 602]  # the train and validation halves, one batch each
    monkeypatch.setattr(evaluation, "EVAL_BYTES", 550 * per_row)
    assert evaluated() == [550, 51, 550, 52]
    monkeypatch.setattr(evaluation, "EVAL_BYTES", 100 * per_row)
    assert evaluated() == [512, 89, 512, 90]  # EVAL_BATCH rows at the least
    wide = {"x": np.zeros((10, 12), np.float32)}  # three times the row the shapes say
    assert evaluation._row_bytes(model, wide) == 3 * per_row
