"""Metrics against reference formulas written here with plain loops (scikit-learn's definitions:
macro averages over the classes present, class 1 for one binary output, zero_division=0), on
the NumPy and torch tables, for index, one-hot and binary targets; and a spec that records the
new metrics during training."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from nndsl.backends.numpy.prims import make_numpy_prims

from nndsl.ops.metrics import TASKS, class_scores, confusion, metrics_for, task_of
from nndsl.ops.registry import OPS


def numpy_table(*arrays: np.ndarray) -> tuple[Any, list[Any]]:
    return make_numpy_prims(), list(arrays)


def torch_table(*arrays: np.ndarray) -> tuple[Any, list[Any]]:
    torch = pytest.importorskip("torch")
    from nndsl.backends.torch.prims import make_torch_prims

    return make_torch_prims(), [torch.tensor(a) for a in arrays]


TABLES = {"numpy": numpy_table, "torch": torch_table}


def metric(name: str, backend: str, y: np.ndarray, t: np.ndarray, **params: Any) -> float:
    P, (yy, tt) = TABLES[backend](y, t)
    out = OPS[name].compute(P, yy, tt, **params)
    return float(out.detach().numpy() if hasattr(out, "detach") else out)


# ---- references ----------------------------------------------------------------------------

def ref_counts(pred: list[int], true: list[int], k: int) -> list[tuple[int, int, int]]:
    """(tp, predicted, actual) per class."""
    return [(sum(p == c and a == c for p, a in zip(pred, true, strict=True)),
             pred.count(c), true.count(c)) for c in range(k)]


def ref_macro(pred: list[int], true: list[int], k: int, which: str) -> float:
    values = []
    for tp, predicted, actual in ref_counts(pred, true, k):
        if predicted + actual == 0:
            continue  # a class nobody mentions is not averaged (scikit-learn's labels)
        values.append({"precision": tp / predicted if predicted else 0.0,
                       "recall": tp / actual if actual else 0.0,
                       "f1": 2 * tp / (predicted + actual)}[which])
    return sum(values) / len(values)


def ref_auc(scores: list[float], labels: list[int]) -> float:
    pos = [s for s, c in zip(scores, labels, strict=True) if c == 1]
    neg = [s for s, c in zip(scores, labels, strict=True) if c == 0]
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def ref_r2(y: np.ndarray, t: np.ndarray) -> float:
    cols = []
    for j in range(t.shape[1]):
        mean = sum(t[:, j]) / len(t)
        res = sum((t[i, j] - y[i, j]) ** 2 for i in range(len(t)))
        tot = sum((t[i, j] - mean) ** 2 for i in range(len(t)))
        cols.append(1 - res / tot if tot else (1.0 if res == 0 else 0.0))
    return sum(cols) / len(cols)


@pytest.fixture
def scores() -> tuple[np.ndarray, np.ndarray]:
    """40 rows over 5 classes; class 4 is never a target, ties in the scores."""
    rng = np.random.default_rng(3)
    y = np.round(rng.uniform(0, 1, (40, 5)), 1)
    return y, rng.integers(0, 4, 40).astype(np.int64)


# ---- classes -------------------------------------------------------------------------------

@pytest.mark.parametrize("backend", sorted(TABLES))
@pytest.mark.parametrize("which", ["precision", "recall", "f1"])
def test_macro_scores_match_the_reference(backend: str, which: str, scores: Any) -> None:
    y, t = scores
    pred = [int(np.argmax(row)) for row in y]
    want = ref_macro(pred, t.tolist(), 5, which)
    assert metric(which, backend, y, t) == pytest.approx(want, rel=1e-6)
    one_hot = np.eye(5)[t]
    assert metric(which, backend, y, one_hot) == pytest.approx(want, rel=1e-6)


@pytest.mark.parametrize("backend", sorted(TABLES))
@pytest.mark.parametrize("which", ["precision", "recall", "f1"])
def test_binary_scores_are_class_ones(backend: str, which: str) -> None:
    y = np.array([[0.9], [0.2], [0.5], [0.7], [0.8], [0.1], [0.4], [0.6]])
    t = np.array([[1.0], [0.0], [1.0], [0.0], [1.0], [0.0], [1.0], [1.0]])
    pred = [int(v > 0.5) for v in y[:, 0]]  # 0.5 is class 0
    tp, predicted, actual = ref_counts(pred, [int(v) for v in t[:, 0]], 2)[1]
    want = {"precision": tp / predicted, "recall": tp / actual,
            "f1": 2 * tp / (predicted + actual)}[which]
    assert metric(which, backend, y, t) == pytest.approx(want)
    assert metric(which, backend, y[:, 0], t[:, 0]) == pytest.approx(want)


def test_per_class_scores_and_confusion_matrix() -> None:
    P = make_numpy_prims()
    y = np.eye(3)[[0, 0, 1, 2, 2, 2]]
    t = np.array([0, 1, 1, 2, 2, 0])
    np.testing.assert_array_equal(confusion(P, y, t), [[1, 0, 1], [1, 1, 0], [0, 0, 2]])
    got = class_scores(P, y, t)
    np.testing.assert_allclose(got["precision"], [0.5, 1.0, 2 / 3])
    np.testing.assert_allclose(got["recall"], [0.5, 0.5, 1.0])
    np.testing.assert_allclose(got["f1"], [0.5, 2 / 3, 0.8])
    np.testing.assert_array_equal(got["support"], [2, 2, 2])


def test_a_class_never_predicted_scores_zero_precision_not_nan() -> None:
    y = np.eye(3)[[0, 0, 0, 0]]
    t = np.array([0, 1, 2, 0])
    assert metric("precision", "numpy", y, t) == pytest.approx((0.5 + 0 + 0) / 3)
    assert metric("recall", "numpy", y, t) == pytest.approx((1.0 + 0 + 0) / 3)


@pytest.mark.parametrize("backend", sorted(TABLES))
@pytest.mark.parametrize("k", [1, 2, 3, 5])
def test_top_k_accuracy(backend: str, k: int, scores: Any) -> None:
    y, t = scores
    hits = [sum(s > row[c] for s in row) < k for row, c in zip(y, t, strict=True)]
    assert metric("top_k_accuracy", backend, y, t, k=k) == pytest.approx(np.mean(hits))
    if k == 1:
        assert metric("top_k_accuracy", backend, y, t, k=1) >= metric("accuracy", backend, y, t)


# ---- binary scores -------------------------------------------------------------------------

@pytest.mark.parametrize("backend", sorted(TABLES))
def test_roc_auc_with_ties(backend: str) -> None:
    rng = np.random.default_rng(0)
    s = np.round(rng.uniform(0, 1, 30), 1)  # rounded: many ties
    c = (rng.uniform(0, 1, 30) < s).astype(np.int64)
    want = ref_auc(s.tolist(), c.tolist())
    assert metric("roc_auc", backend, s[:, None], c[:, None].astype(float)) == pytest.approx(want)
    two = np.stack([1 - s, s], axis=1)
    assert metric("roc_auc", backend, two, c) == pytest.approx(want)


def test_roc_auc_of_a_perfect_and_a_reversed_ranking() -> None:
    s, c = np.array([0.1, 0.4, 0.35, 0.8]), np.array([0.0, 0.0, 1.0, 1.0])
    assert metric("roc_auc", "numpy", s, c) == pytest.approx(0.75)
    assert metric("roc_auc", "numpy", c, c) == 1.0
    assert metric("roc_auc", "numpy", 1 - c, c) == 0.0
    assert np.isnan(metric("roc_auc", "numpy", s, np.ones(4)))  # one class: undefined


# ---- values --------------------------------------------------------------------------------

@pytest.mark.parametrize("backend", sorted(TABLES))
def test_rmse_and_r2(backend: str) -> None:
    rng = np.random.default_rng(1)
    t = rng.standard_normal((20, 3))
    y = t + 0.3 * rng.standard_normal((20, 3))
    assert metric("rmse", backend, y, t) == pytest.approx(np.sqrt(np.mean((y - t) ** 2)))
    assert metric("r2", backend, y, t) == pytest.approx(ref_r2(y, t))
    assert metric("r2", backend, t, t) == 1.0
    mean = np.broadcast_to(t.mean(axis=0), t.shape)
    assert metric("r2", backend, mean, t) == pytest.approx(0.0, abs=1e-9)
    assert metric("r2", backend, y[:, 0], t[:, 0]) == pytest.approx(ref_r2(y[:, :1], t[:, :1]))


def test_r2_of_a_constant_column() -> None:
    t = np.ones((4, 1))
    assert metric("r2", "numpy", t, t) == 1.0
    assert metric("r2", "numpy", t + 0.1, t) == 0.0


# ---- which metrics fit which output --------------------------------------------------------

def test_tasks_follow_the_output_shape() -> None:
    assert task_of(("batch", 10)) == "classes" and task_of(("batch",)) == "binary"
    assert task_of(("batch", 1)) == "binary" and task_of(("batch", 4, 4)) == "classes"
    assert task_of(()) == "values"
    assert set(metrics_for("classes")) == {"accuracy", "precision", "recall", "f1",
                                           "top_k_accuracy"}
    assert set(metrics_for("values")) == {"mae", "rmse", "r2"}
    assert "roc_auc" in metrics_for("binary") and set(TASKS) == {
        n for n, d in OPS.items() if d.kind == "metric"}


@pytest.mark.parametrize("name,y,t,message", [
    ("top_k_accuracy", ("batch", 1), ("batch", 1), "ranks class scores"),
    ("roc_auc", ("batch", 3), ("batch",), "one binary output"),
    ("precision", ("batch", 3), ("batch", 4), "target shape"),
])
def test_shape_rules(name: str, y: tuple, t: tuple, message: str) -> None:
    from nndsl.errors import NndslError
    from nndsl.ir import TensorType

    with pytest.raises(NndslError, match=message):
        OPS[name].output_type(TensorType(y), TensorType(t, "i64" if len(t) == 1 else "f32"))


# ---- in a spec -----------------------------------------------------------------------------

SPEC = """model net {
  input x: [batch, 2]
  p = x -> dense(8) -> tanh -> dense(2) -> softmax
  output p
}

train net {
  data = builtin("xor")
  target y: [batch]
  loss = cross_entropy(p, y)
  optimizer = adam(lr=0.05)
  metrics = [accuracy, precision, recall, f1, top_k_accuracy(k=1)]
  epochs = 3
  batch = 4
}
"""


def _trained_rows(tmp_path: Path, text: str, capsys: Any) -> list[dict[str, str]]:
    """metrics.csv of `nndsl train` (NumPy) on the spec `text`."""
    from nndsl.cli import main

    (tmp_path / "net.nn").write_text(text, encoding="utf-8")
    run = tmp_path / "run"
    assert main(["train", str(tmp_path / "net.nn"), "--backend", "numpy", "--run-dir", str(run),
                 "--quiet"]) == 0, capsys.readouterr().err
    with (run / "metrics.csv").open(encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_a_spec_records_the_new_metrics(tmp_path: Path, capsys: Any) -> None:
    rows = _trained_rows(tmp_path, SPEC, capsys)
    assert len(rows) == 3
    for name in ("precision", "recall", "f1"):
        assert 0.0 <= float(rows[-1][name]) <= 1.0
    for row in rows:  # the best class alone: accuracy (ties would count in top-k's favour)
        assert float(row["top_k_accuracy_k1"]) == pytest.approx(float(row["accuracy"]))


DIGITS = """model m {
  input x: [batch, 1, 8, 8]
  probs = x -> flatten -> dense(10) -> softmax
  output probs
}
train m {
  data = builtin("digits")
  target y: [batch]
  loss = cross_entropy(probs, y)
  optimizer = adam(lr=1e-2)
  metrics = [accuracy]
  split = 0.2
  epochs = 2
}
"""


def test_a_configured_metric_is_its_own_column_and_can_be_monitored(tmp_path: Path,
                                                                    capsys: Any) -> None:
    text = DIGITS.replace("metrics = [accuracy]", "metrics = [accuracy, top_k_accuracy, "
                          "top_k_accuracy(k=2)]\n  early_stop = patience(50, "
                          "monitor=val_top_k_accuracy_k2)")
    rows = _trained_rows(tmp_path, text, capsys)
    assert len(rows) == 2
    for row in rows:
        for prefix in ("", "val_"):
            one, two, five = (float(row[f"{prefix}{m}"]) for m in (
                "accuracy", "top_k_accuracy_k2", "top_k_accuracy"))
            assert one <= two <= five and one < five
    assert (tmp_path / "run" / "plots" / "top_k_accuracy_k2.png").exists()


@pytest.mark.parametrize(("entry", "col", "message"), [
    ("top_k_accuracy(k=10)", 14, "top_k_accuracy(k=10) on 10 classes counts every row"),
    ("top_k_accuracy(k=0)", 14, "top_k_accuracy needs k >= 1"),
    ("top_k_accuracy(q=1)", 29, "top_k_accuracy has no parameter 'q'"),
    ("accuracy, top_k_accuracy(k=5), top_k_accuracy", 45,
     "metric 'top_k_accuracy' is listed twice"),
    ("acuracy", 14, "unknown metric 'acuracy'"),
])
def test_a_wrong_metric_entry_is_refused_at_its_place(tmp_path: Path, capsys: Any, entry: str,
                                                      col: int, message: str) -> None:
    from nndsl.cli import main

    (tmp_path / "m.nn").write_text(DIGITS.replace("metrics = [accuracy]",
                                                  f"metrics = [{entry}]"), encoding="utf-8")
    assert main(["check", str(tmp_path / "m.nn")]) == 1
    err = capsys.readouterr().err
    assert f"m.nn:11:{col}: error: " in err and message in err, err
    assert "Traceback" not in err
