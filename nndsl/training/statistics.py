"""Sums that batches add up: how each metric (and each reduction of a loss) is accumulated over
batches of rows on the device so that the total equals the value on all the rows at once.

A `Statistic` takes each batch's values through the primitive table `P` (so it runs on NumPy
arrays and torch tensors alike), keeps its running state on the device in float64, and gives
the final 0-d value at the end. Which one a metric uses is a registry entry:

- a mean over rows (accuracy, top-k accuracy, mae, a loss with `reduction="mean"`) adds
  value x rows and divides by the rows at the end;
- a sum (a loss with `reduction="sum"`) adds the values;
- precision, recall and F1 add the per-class counts (true positives, predicted, actual) and
  score them at the end; rmse adds squared errors and takes the root at the end;
- r2 merges each column's count, mean and sum of squared deviations (Chan et al.'s pairwise
  update, stable where sum(t^2) - n mean^2 would cancel) and its residual sum of squares;
- roc_auc is not a sum over rows: it keeps each row's score and label (two numbers a row) and
  ranks them once at the end by sorting (the Mann-Whitney statistic with ties counted half),
  the exact value of the pairwise formula without its rows x rows matrix.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from nndsl import ops
from nndsl.ops import metrics as m


class Statistic:
    """One value accumulated over batches; `add` each batch, then `value`."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn  # the metric or loss: fn(P, *args) -> 0-d
        self.rows = 0
        self.state: Any = None

    def add(self, P: Any, args: list[Any], rows: int) -> None:
        part = self.part(P, args, rows)
        self.state = part if self.state is None else self.merge(P, self.state, part)
        self.rows += rows

    def part(self, P: Any, args: list[Any], rows: int) -> Any:
        """The batch's contribution: the value times its rows (a row-weighted mean)."""
        return P.mul(_f64(P, self.fn(P, *args)), float(rows))

    def merge(self, P: Any, total: Any, part: Any) -> Any:
        if isinstance(total, tuple):
            return tuple(P.add(a, b) for a, b in zip(total, part, strict=True))
        return P.add(total, part)

    def value(self, P: Any) -> Any:
        return P.div(self.state, float(max(self.rows, 1)))


class Summed(Statistic):
    """A sum over rows (a loss with reduction = "sum"): the batch values add up."""

    def part(self, P: Any, args: list[Any], rows: int) -> Any:
        return _f64(P, self.fn(P, *args))

    def value(self, P: Any) -> Any:
        return self.state


class MeanSquare(Statistic):
    """rmse: the row-weighted mean of squared errors, rooted at the end."""

    def part(self, P: Any, args: list[Any], rows: int) -> Any:
        d = P.sub(_f64(P, args[0]), _f64(P, args[1]))
        return P.mul(P.mean(P.mul(d, d)), float(rows))

    def value(self, P: Any) -> Any:
        return P.sqrt(super().value(P))


class ClassScore(Statistic):
    """precision, recall or F1 from the per-class counts of every batch."""

    def __init__(self, key: str) -> None:
        super().__init__(lambda P, y, t: None)
        self.key, self.binary = key, False

    def part(self, P: Any, args: list[Any], rows: int) -> Any:
        self.binary = len(P.shape(args[0])) == 1 or P.shape(args[0])[-1] == 1
        return tuple(_f64(P, c) for c in m.class_counts(P, *args[:2]))

    def value(self, P: Any) -> Any:
        return m.averaged_of(P, m.scores_of(P, *self.state), self.key, self.binary)


class R2(Statistic):
    """r2: per column (rows, mean of t, sum of squared deviations of t, residual sum)."""

    def part(self, P: Any, args: list[Any], rows: int) -> Any:
        y, t = (P.reshape(_f64(P, a), (None, -1)) for a in args[:2])
        d, mean = P.sub(t, y), P.mean(t, axis=0)
        spread = P.sub(t, P.reshape(mean, (1, -1)))
        return (float(rows), mean, P.sum(P.mul(spread, spread), axis=0),
                P.sum(P.mul(d, d), axis=0))

    def merge(self, P: Any, total: Any, part: Any) -> Any:
        (na, ma, sa, ra), (nb, mb, sb, rb) = total, part
        n, delta = na + nb, P.sub(mb, ma)
        return (n, P.add(ma, P.mul(delta, nb / n)),
                P.add(P.add(sa, sb), P.mul(P.mul(delta, delta), na * nb / n)), P.add(ra, rb))

    def value(self, P: Any) -> Any:
        return m.r2_of(P, self.state[3], self.state[2])


class RocAuc(Statistic):
    """roc_auc: every row's score and 0/1 label, ranked once at the end."""

    def part(self, P: Any, args: list[Any], rows: int) -> Any:
        y, t = args[:2]
        two = P.shape(y)[-1:] == (2,)
        s = P.reshape(P.slice(y, -1, 1, 2) if two else y, (-1,))
        if two and len(P.shape(t)) == len(P.shape(y)):
            t = P.slice(t, -1, 1, 2)
        return [(_f64(P, s), _f64(P, P.cast(P.gt(P.reshape(t, (-1,)), 0.5), "f32")))]

    def merge(self, P: Any, total: Any, part: Any) -> Any:
        return total + part

    def value(self, P: Any) -> Any:
        s = P.concat([a for a, _ in self.state], 0)
        pos = P.concat([b for _, b in self.state], 0)
        return mann_whitney(P, s, pos)


def mann_whitney(P: Any, s: Any, pos: Any) -> Any:
    """P(s_pos > s_neg) + 1/2 P(s_pos = s_neg) by sorting: the rows are grouped by equal score;
    each positive row wins against the negatives of lower groups and ties half of its own."""
    xp = _array_module(s)
    order = xp.argsort(s)
    ss, pp = s[order], pos[order]
    new = P.concat([P.ones_like(ss[:1]), P.cast(P.gt(ss[1:], ss[:-1]), "f64")], 0)
    group = _ints(xp, xp.cumsum(new, 0)) - 1
    pos_g = _bincount(xp, group, pp)
    neg_g = _bincount(xp, group, P.sub(1.0, pp))
    below = P.sub(xp.cumsum(neg_g, 0), neg_g)
    wins = P.sum(P.mul(pos_g, P.add(below, P.mul(0.5, neg_g))))
    n_pos = P.sum(pos)
    pairs = P.mul(n_pos, P.sub(float(P.shape(s)[0]), n_pos))
    auc = P.div(wins, P.maximum(pairs, 1.0))
    return P.where(P.gt(pairs, 0.0), auc, P.mul(auc, float("nan")))


def _array_module(x: Any) -> Any:
    """NumPy for NumPy arrays, torch for tensors: sorting is not a primitive of the table."""
    if isinstance(x, np.ndarray):
        return np
    import torch

    return torch


def _ints(xp: Any, x: Any) -> Any:
    return x.astype(np.int64) if xp is np else x.long()


def _bincount(xp: Any, group: Any, weights: Any) -> Any:
    if xp is np:
        return np.bincount(group, weights)
    return xp.bincount(group, weights=weights)


def _f64(P: Any, x: Any) -> Any:
    return P.cast(x, "f64")


# metric name -> its statistic (a metric not named here is a row-weighted mean of batches)
METRIC_STATISTICS: dict[str, Callable[[Callable[..., Any]], Statistic]] = {
    "precision": lambda fn: ClassScore("precision"),
    "recall": lambda fn: ClassScore("recall"),
    "f1": lambda fn: ClassScore("f1"),
    "rmse": MeanSquare,
    "r2": R2,
    "roc_auc": RocAuc,
}


def for_metric(name: str, **params: Any) -> Statistic:
    """The statistic that accumulates metric `name` (called as fn(P, y, t, **params))."""
    compute = ops.get(name, "metric").compute
    fn = (lambda P, y, t: compute(P, y, t, **params)) if params else compute
    return METRIC_STATISTICS.get(name, Statistic)(fn)


def for_reduction(op: str, params: dict[str, Any], fn: Callable[..., Any]) -> Statistic:
    """A loss graph's node that reduces rows to one number: a loss sums or averages; a metric
    uses its own statistic; anything else is taken as a row-weighted mean of its batches."""
    opdef = ops.OPS.get(op)
    if opdef is not None and opdef.kind == "metric" and op in METRIC_STATISTICS:
        return METRIC_STATISTICS[op](fn)
    if opdef is not None and opdef.kind == "loss" and params.get("reduction") == "sum":
        return Summed(fn)
    return Statistic(fn)
