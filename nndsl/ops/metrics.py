"""Metrics (kind `metric`): `fn(P, y, t, *, ...)` -> a 0-d value.

A metric compares the model's first output y with the first target t. Which metrics fit a
model follows from the shape of its output (`task`):

- `classes`: scores over K >= 2 classes on the last axis; targets are class indices (one rank
  less) or one-hot rows. The predicted class is the arg-max.
- `binary`: one output per row ([batch] or [batch, 1]), a probability thresholded at 0.5
  (exactly 0.5 counts as class 0); targets are 0/1.
- `values`: anything else: a regression output compared element by element.

Precision, recall and F1 are macro averages over the classes that occur in the targets or the
predictions (scikit-learn's `average="macro"`); for a binary output they are those of class 1
(scikit-learn's `average="binary"`). A class never predicted has precision 0, a class never
present recall 0 (scikit-learn's `zero_division=0`). `nndsl evaluate` prints them per class.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from nndsl.errors import NndslError
from nndsl.ir import Call, TensorType, format_shape
from nndsl.ops.losses import _classes, _matching, _pair, _probs_and_indices, _target_mask
from nndsl.ops.registry import get, op

SCALAR = TensorType((), "f32")
TASKS: dict[str, frozenset[str]] = {}  # metric -> the tasks ("classes", "binary", "values")


def metric(name: str, tasks: tuple[str, ...], **fields: Any) -> Callable[..., Any]:
    """Register a metric and the kinds of output it scores. Metrics of classes count arg-maxes
    and thresholds, so they have no gradient; the regression ones (`values`) do."""
    def register(fn: Callable[..., Any]) -> Callable[..., Any]:
        TASKS[name] = frozenset(tasks)
        return op(name, "metric", differentiable="values" in tasks, **fields)(fn)

    return register


def metric_call(item: Call | str) -> Call:
    """A `metrics` entry as a resolved call: `accuracy` or `top_k_accuracy(k=3)` (a bare name,
    as an older spec or the API may give it, takes the metric's defaults)."""
    if isinstance(item, Call):
        return item
    return Call(item, tuple((p.name, p.default) for p in get(item, "metric").params))


def metric_column(item: Call | str) -> str:
    """The column a metric is recorded under: its name, with each argument that differs from
    the default appended (`top_k_accuracy(k=3)` -> `top_k_accuracy_k3`), so two settings of
    one metric are two columns and `early_stop` can monitor either."""
    call = metric_call(item)
    defaults = {p.name: p.default for p in get(call.name, "metric").params}
    suffix = "".join(f"_{k}{_plain(v)}" for k, v in call.kwargs if defaults.get(k) != v)
    return call.name + suffix


def _plain(value: Any) -> str:
    return str(value).replace(".", "p").replace("-", "m")  # a name: 0.5 -> 0p5


def metrics_for(task: str) -> list[str]:
    """The registered metrics that score an output of `task`, in registration order."""
    return [name for name, tasks in TASKS.items() if task in tasks]


def task_of(shape: tuple[Any, ...]) -> str:
    """`classes`, `binary` or `values` for an output of this shape (see the module's doc)."""
    if len(shape) == 1 or (len(shape) == 2 and shape[-1] == 1):
        return "binary"
    if len(shape) >= 2 and (not isinstance(shape[-1], int) or shape[-1] >= 2):
        return "classes"
    return "values"


def _binary(P: Any, y: Any) -> bool:
    shape = P.shape(y)
    return len(shape) == 1 or shape[-1] == 1


# ---- class counts (shared by the metrics and `nndsl evaluate`) -----------------------------

def one_hots(P: Any, y: Any, t: Any) -> tuple[Any, Any]:
    """(predicted, actual) as f32 one-hot rows [rows, K]; a binary output gives K = 2."""
    if _binary(P, y):
        pred = P.cast(P.gt(P.reshape(y, (-1, 1)), 0.5), "f32")
        true = P.cast(P.gt(P.reshape(t, (-1, 1)), 0.5), "f32")
        return P.concat([P.sub(1.0, pred), pred], 1), P.concat([P.sub(1.0, true), true], 1)
    k = P.shape(y)[-1]
    scores = P.reshape(y, (-1, k))
    pred = P.one_hot(P.argmax(scores, axis=-1), k, "f32")
    if len(P.shape(t)) == len(P.shape(y)):
        return pred, P.one_hot(P.argmax(P.reshape(t, (-1, k)), axis=-1), k, "f32")
    return pred, P.one_hot(P.reshape(P.cast(t, "i64"), (-1,)), k, "f32")


def confusion(P: Any, y: Any, t: Any) -> Any:
    """C[i, j] = the number of rows of class i predicted as class j (rows: actual classes)."""
    pred, true = one_hots(P, y, t)
    return P.matmul(P.transpose(true), pred)


def class_scores(P: Any, y: Any, t: Any) -> dict[str, Any]:
    """Per class k: precision tp/predicted, recall tp/actual, F1 2tp/(predicted + actual),
    support (actual) and whether the class occurs at all (0 where a denominator is 0)."""
    return scores_of(P, *class_counts(P, y, t))


def class_counts(P: Any, y: Any, t: Any) -> tuple[Any, Any, Any]:
    """Per class: (true positives, rows predicted, rows actual) — sums over rows, so the
    counts of several batches add up to those of all their rows."""
    pred, true = one_hots(P, y, t)
    return P.sum(P.mul(pred, true), axis=0), P.sum(pred, axis=0), P.sum(true, axis=0)


def scores_of(P: Any, tp: Any, predicted: Any, actual: Any) -> dict[str, Any]:
    """`class_scores` from the class counts."""
    both = P.add(predicted, actual)
    return {"precision": P.div(tp, P.maximum(predicted, 1.0)),
            "recall": P.div(tp, P.maximum(actual, 1.0)),
            "f1": P.div(P.mul(2.0, tp), P.maximum(both, 1.0)),
            "support": actual, "present": P.cast(P.gt(both, 0.0), "f32")}


def _averaged(P: Any, y: Any, t: Any, key: str) -> Any:
    return averaged_of(P, class_scores(P, y, t), key, _binary(P, y))


def averaged_of(P: Any, scores: dict[str, Any], key: str, binary: bool) -> Any:
    """Class 1's score for a binary output, else the macro mean over the classes present."""
    if binary:
        return P.reshape(P.slice(scores[key], 0, 1, 2), ())
    present = scores["present"]
    return P.div(P.sum(P.mul(scores[key], present)), P.maximum(P.sum(present), 1.0))


# ---- shape rules and samples ---------------------------------------------------------------

def _scores(name: str) -> Callable[..., TensorType]:
    """Class scores with index or one-hot targets, or one binary output with 0/1 targets."""
    classes, same = _classes(name), _matching(name)

    def infer(y: TensorType, t: TensorType, *_: TensorType, **__: Any) -> TensorType:
        if y.rank == 1 or (y.rank == 2 and y.shape[-1] == 1):
            return same(y, t)
        return classes(y, t)

    return infer


def _top_k_type(y: TensorType, t: TensorType, *_: TensorType, k: int = 5,
                **__: Any) -> TensorType:
    if y.rank < 2 or y.shape[-1] == 1:
        raise NndslError("top_k_accuracy ranks class scores [batch, classes]",
                         expected="[batch, classes]", received=format_shape(y.shape),
                         hint="for one binary output use accuracy")
    if k < 1:
        raise NndslError("top_k_accuracy needs k >= 1", expected="k >= 1", received=str(k))
    classes = y.shape[-1]
    if isinstance(classes, int) and k >= classes:
        raise NndslError(f"top_k_accuracy(k={k}) on {classes} classes counts every row",
                         expected=f"k < {classes}", received=str(k),
                         hint=f"give a smaller k, e.g. top_k_accuracy(k={max(classes // 2, 1)})")
    return _classes("top_k_accuracy")(y, t)


def _binary_type(y: TensorType, t: TensorType, *_: TensorType, **__: Any) -> TensorType:
    if y.rank == 2 and y.shape[-1] == 2:
        return _classes("roc_auc")(y, t)
    if y.rank == 1 or (y.rank == 2 and y.shape[-1] == 1):
        return _matching("roc_auc")(y, t)
    raise NndslError("roc_auc scores one binary output: [batch], [batch, 1] or two classes",
                     expected="[batch, 1] or [batch, 2]", received=format_shape(y.shape),
                     hint="for several classes use accuracy, f1 or top_k_accuracy")


def _scores_and_bits(rng: Any) -> tuple[Any, ...]:
    """Probabilities with ties (0.5 and a repeated score) and 0/1 targets of both classes."""
    y = np.array([[0.9], [0.2], [0.5], [0.7], [0.7], [0.1], [0.4], [0.6]])
    return y, np.array([[1.0], [0.0], [1.0], [0.0], [1.0], [0.0], [1.0], [1.0]])


def _probs_and_spread_indices(rng: Any) -> tuple[Any, ...]:
    """Scores over 6 classes, every class a target at least once."""
    e = np.exp(rng.standard_normal((12, 6)))
    return e / e.sum(axis=-1, keepdims=True), rng.permutation(np.arange(12) % 6).astype(np.int64)


# ---- metrics -------------------------------------------------------------------------------

@metric("accuracy", ("classes", "binary"), infer=_classes("accuracy"),
        sample_inputs=_probs_and_indices)
def accuracy(P: Any, y: Any, t: Any) -> Any:
    """Fraction of correct predictions: argmax_k y = class, or (y > 0.5) = (t > 0.5) for 1 output.

    Multi-class targets are class indices or one-hot; a single output ([batch, 1] or [batch])
    is thresholded at 0.5 (exactly 0.5 counts as class 0), its targets are 0/1.
    """
    shape_y = P.shape(y)
    if len(shape_y) == 1 or shape_y[-1] == 1:
        hit = P.eq(P.gt(P.reshape(y, (-1,)), 0.5), P.gt(P.reshape(t, (-1,)), 0.5))
    elif len(P.shape(t)) == len(shape_y):
        hit = P.eq(P.argmax(y, axis=-1), P.argmax(t, axis=-1))
    else:
        hit = P.eq(P.argmax(y, axis=-1), P.cast(t, "i64"))
    return P.mean(P.cast(hit, "f32"))


@metric("precision", ("classes", "binary"), infer=_scores("precision"),
        sample_inputs=_probs_and_spread_indices)
def precision(P: Any, y: Any, t: Any) -> Any:
    """Macro mean over classes of tp_k / predicted_k; for one binary output, class 1's."""
    return _averaged(P, y, t, "precision")


@metric("recall", ("classes", "binary"), infer=_scores("recall"),
        sample_inputs=_probs_and_spread_indices)
def recall(P: Any, y: Any, t: Any) -> Any:
    """Macro mean over classes of tp_k / actual_k; for one binary output, class 1's."""
    return _averaged(P, y, t, "recall")


@metric("f1", ("classes", "binary"), infer=_scores("f1"), sample_inputs=_scores_and_bits)
def f1(P: Any, y: Any, t: Any) -> Any:
    """Macro mean of 2 tp_k / (predicted_k + actual_k), the harmonic mean of precision and recall.

    For one binary output it is class 1's F1 (van Rijsbergen's F-measure with beta = 1).
    """
    return _averaged(P, y, t, "f1")


@metric("top_k_accuracy", ("classes",), infer=_top_k_type,
        sample_inputs=_probs_and_spread_indices, sample_params={"k": 3})
def top_k_accuracy(P: Any, y: Any, t: Any, *, k: int = 5) -> Any:
    """Fraction of rows whose class is among the k highest scores (ties count in its favour).

    A row's rank is the number of classes scored strictly higher than its own class; the row
    counts when that rank is below k. In a spec `metrics = [top_k_accuracy]` uses k = 5 and
    `metrics = [top_k_accuracy(k=3)]` k = 3 (recorded as `top_k_accuracy_k3`); `nndsl evaluate
    --top-k K` sets k for its own report.
    """
    mine = P.sum(P.mul(_target_mask(P, y, t), y), axis=-1, keepdims=True)
    higher = P.sum(P.cast(P.gt(y, mine), "f32"), axis=-1)
    return P.mean(P.cast(P.lt(higher, float(k)), "f32"))


@metric("roc_auc", ("binary",), infer=_binary_type, sample_inputs=_scores_and_bits)
def roc_auc(P: Any, y: Any, t: Any) -> Any:
    """P(s_pos > s_neg) + ½ P(s_pos = s_neg) over positive-negative pairs (Mann–Whitney U).

    The area under the ROC curve of the score s (the one output, or column 1 of two classes).
    It compares every pair of rows, so it costs rows² memory; NaN when only one class occurs.
    """
    s = P.reshape(P.slice(y, -1, 1, 2) if P.shape(y)[-1:] == (2,) else y, (-1,))
    if len(P.shape(t)) == len(P.shape(y)) and P.shape(y)[-1:] == (2,):
        t = P.slice(t, -1, 1, 2)
    pos = P.cast(P.gt(P.reshape(t, (-1,)), 0.5), "f32")
    col, row = P.reshape(s, (-1, 1)), P.reshape(s, (1, -1))
    wins = P.add(P.cast(P.gt(col, row), "f32"), P.mul(0.5, P.cast(P.eq(col, row), "f32")))
    pairs_of = P.matmul(P.reshape(pos, (1, -1)), P.matmul(wins, P.reshape(P.sub(1.0, pos),
                                                                         (-1, 1))))
    n_pos = P.sum(pos)
    pairs = P.mul(n_pos, P.sub(P.sum(P.ones_like(pos)), n_pos))
    auc = P.div(P.reshape(pairs_of, ()), P.maximum(pairs, 1.0))
    return P.where(P.gt(pairs, 0.0), auc, P.mul(auc, float("nan")))


@metric("mae", ("values",), infer=_matching("mae"), sample_inputs=_pair)
def mae(P: Any, y: Any, t: Any) -> Any:
    """mean over all elements of |y - t|."""
    return P.mean(P.abs(P.sub(y, t)))


@metric("rmse", ("values",), infer=_matching("rmse"), sample_inputs=_pair)
def rmse(P: Any, y: Any, t: Any) -> Any:
    """sqrt(mean over all elements of (y - t)^2), the root of mse in the target's units."""
    d = P.sub(y, t)
    return P.sqrt(P.mean(P.mul(d, d)))


@metric("r2", ("values",), infer=_matching("r2"), sample_inputs=_pair)
def r2(P: Any, y: Any, t: Any) -> Any:
    """1 - Σ (t - y)^2 / Σ (t - mean t)^2 per output column, averaged over the columns.

    The coefficient of determination (scikit-learn's r2_score): 1 is a perfect fit, 0 is
    as good as predicting each column's mean; a constant column scores 1 if fitted exactly,
    else 0.
    """
    y, t = P.reshape(y, (None, -1)), P.reshape(t, (None, -1))
    d = P.sub(t, y)
    spread = P.sub(t, P.mean(t, axis=0, keepdims=True))
    return r2_of(P, P.sum(P.mul(d, d), axis=0), P.sum(P.mul(spread, spread), axis=0))


def r2_of(P: Any, residual: Any, total: Any) -> Any:
    """r2 from each column's residual and total sums of squares."""
    fitted = P.sub(1.0, P.div(residual, P.where(P.gt(total, 0.0), total, P.ones_like(total))))
    exact = P.where(P.gt(residual, 0.0), P.zeros_like(total), P.ones_like(total))
    return P.mean(P.where(P.gt(total, 0.0), fitted, exact))
