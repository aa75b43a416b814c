"""Training diagnostics (`diagnostics = true`): what the lecture notes teach to watch, per layer.

- `grad_norm2`: the squared norm of the loss gradient with respect to the layer's output z,
  ||dE/dz||^2 = sum_j (dE/dz_j)^2, the notes' measure of vanishing gradients: through a chain
  of sigmoids, whose slope is at most 1/4, it shrinks layer by layer towards the input.
- `update_ratio`: ||w_after - w_before|| / ||w_before|| over the layer's trainable weights for
  one update (a rule of thumb puts healthy values near 1e-3).
- `dead_fraction`: of a ReLU that follows the layer, the fraction of units that output 0 for
  every row of the batch (the notes advise monitoring it).
- `saturated_fraction`: of a sigmoid or tanh that follows the layer, the fraction of outputs
  where the slope is under 5% of its largest (so little gradient passes).

They are measured once per epoch, on its last batch, before that batch's update, in training
mode with the step's own random draws: one more forward and backward pass per epoch, on the
device (the engine's `value_grads`; the statistics are written against the primitive table P,
so NumPy and torch compute them alike). Training itself is unchanged, bit for bit.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from nndsl import ops
from nndsl.errors import NndslError
from nndsl.ir import Graph
from nndsl.training.core import trainable

SLOPE_FLOOR = 0.05  # saturated: the slope is under this fraction of the activation's largest
DEAD, SATURATED = 0.5, 0.5  # a layer is flagged when this fraction (or more) is dead, saturated
VANISHING, EXPLODING = 1e-4, 1e4  # grad_norm2 against the layer nearest the loss
COLUMNS = ("epoch", "step", "phase", "layer", "grad_norm2", "update_ratio", "dead_fraction",
           "saturated_fraction")


def _dead(P: Any, y: Any) -> Any:
    """Units (every position but the batch axis) that are <= 0 on every row."""
    return P.mean(P.cast(P.le(P.max(y, axis=0), 0.0), "f32"))


def _sigmoid_saturated(P: Any, y: Any) -> Any:
    """sigmoid' = y (1 - y), largest 1/4 at y = 1/2."""
    return P.mean(P.cast(P.lt(P.mul(4.0, P.mul(y, P.sub(1.0, y))), SLOPE_FLOOR), "f32"))


def _tanh_saturated(P: Any, y: Any) -> Any:
    """tanh' = 1 - y^2, largest 1 at y = 0."""
    return P.mean(P.cast(P.lt(P.sub(1.0, P.mul(y, y)), SLOPE_FLOOR), "f32"))


# activation op -> (the column it fills, the fraction as a function of its output)
WATCHED: dict[str, tuple[str, Callable[[Any, Any], Any]]] = {
    "relu": ("dead_fraction", _dead),
    "sigmoid": ("saturated_fraction", _sigmoid_saturated),
    "tanh": ("saturated_fraction", _tanh_saturated),
}


@dataclass(frozen=True)
class Layer:
    """A layer with weights: its output z, its trainable weights, and the watched activation
    that follows it (through dropout or noise), if any."""

    label: str
    output: str
    weights: tuple[str, ...]
    activation: str | None = None
    column: str | None = None
    final: bool = False  # its activation is a model output (an output sigmoid may saturate)


def layers(model: Graph, frozen: tuple[str, ...] = ()) -> list[Layer]:
    """Every node with trainable weights and a float output, in the model's order."""
    readers: dict[str, list[Any]] = {}
    for node in model.nodes:
        for name in node.inputs:
            readers.setdefault(name, []).append(node)
    train = set(trainable(model, frozen))
    out = []
    for node in model.nodes:
        mine = tuple(w for _, w in node.weights if w in train)
        if not mine or node.type is None or node.type.dtype == "i64":
            continue
        follow = node.name
        while len(readers.get(follow, ())) == 1 and (nxt := readers[follow][0]).op not in \
                WATCHED and getattr(ops.OPS.get(nxt.op), "training_only", False):
            follow = nxt.name
        act = readers.get(follow, [])
        watched = act[0] if len(act) == 1 and act[0].op in WATCHED else None
        out.append(Layer(node.label or node.name, node.name, mine,
                         watched.name if watched else None,
                         WATCHED[watched.op][0] if watched else None,
                         watched is not None and watched.name in model.outputs))
    return out


class Probe:
    """Measures one batch of one stage: `measure` before the update, `ratios` after it."""

    def __init__(self, engine: Any, model: Graph, loss: Graph, frozen: tuple[str, ...]) -> None:
        self.engine, self.model, self.loss = engine, model, loss
        self.layers = layers(model, frozen)
        self.names = list(dict.fromkeys([*(la.output for la in self.layers),
                                         *(la.activation for la in self.layers
                                           if la.activation)]))

    def measure(self, feeds: Mapping[str, Any], weights: Mapping[str, Any],
                seed: int) -> list[dict[str, Any]]:
        """Per layer: grad_norm2 and the activation's fraction, as host floats (one transfer)."""
        values, grads = self.engine.value_grads(self.model, self.loss, feeds, weights, seed,
                                                self.names)
        P = self.engine.P
        found: dict[str, Any] = {}
        for la in self.layers:
            g = grads[la.output]
            found[f"{la.label}:grad_norm2"] = P.sum(P.mul(g, g))
            if la.activation is not None and la.column is not None:
                fraction = WATCHED[self.model.node(la.activation).op][1]
                found[f"{la.label}:{la.column}"] = fraction(P, values[la.activation])
        numbers = self._host(found)
        return [{"layer": la.label, **{key.partition(":")[2]: v for key, v in numbers.items()
                                       if key.partition(":")[0] == la.label}}
                for la in self.layers]

    def ratios(self, before: Mapping[str, Any], after: Mapping[str, Any],
               rows: list[dict[str, Any]]) -> None:
        """Fill in each layer's update_ratio from the weights before and after the update."""
        P = self.engine.P
        found: dict[str, Any] = {}
        for la in self.layers:
            moved = weight = 0.0
            for w in la.weights:
                d = P.sub(after[w], before[w])
                moved = P.add(moved, P.sum(P.mul(d, d)))
                weight = P.add(weight, P.sum(P.mul(before[w], before[w])))
            found[la.label] = P.div(P.sqrt(moved), P.add(P.sqrt(weight), 1e-12))
        numbers = self._host(found)
        for row in rows:
            row["update_ratio"] = numbers[row["layer"]]

    def _host(self, found: dict[str, Any]) -> dict[str, float]:
        """0-d backend arrays as Python floats, moved off the device together."""
        if not found:
            return {}
        P = self.engine.P
        packed = P.concat([P.reshape(P.cast(v, "f64"), (1,)) for v in found.values()], 0)
        values = self.engine.to_numpy({"v": packed})["v"]
        return dict(zip(found, (float(v) for v in values), strict=True))


# -- after training -----------------------------------------------------------------------------

HINTS = {
    "dead": "{value:.0%} of its ReLUs output 0 for every row of a batch; try a lower learning "
            "rate, leaky_relu, or he_normal init",
    "saturated": "{value:.0%} of its units are saturated (slope under 5% of the largest); try "
                 "relu, batch_norm, a smaller init (glorot_uniform) or standardised inputs",
    "vanishing": "its gradient's squared norm is {value:.1e} times the last layer's: the "
                 "gradient vanishes on its way back; try relu with he_normal init, batch_norm, "
                 "residual connections, or fewer layers",
    "exploding": "its gradient's squared norm is {value:.1e} times the last layer's: the "
                 "gradient explodes on its way back; try clip = norm(1.0), a lower learning "
                 "rate or a smaller init",
}


@dataclass(frozen=True)
class Finding:
    layer: str
    problem: str  # a key of HINTS
    value: float

    def __str__(self) -> str:
        return f"{self.layer}: {self.problem}: {HINTS[self.problem].format(value=self.value)}"


def findings(rows: list[dict[str, Any]], model: Graph) -> list[Finding]:
    """What the last epoch measured says about each layer (rows in model order per epoch).
    The saturation of an activation that is a model output (a classifier's sigmoid growing
    confident) is not a fault."""
    if not rows:
        return []
    last = [r for r in rows if r["step"] == rows[-1]["step"] and r["phase"] == rows[-1]["phase"]]
    outputs = {la.label for la in layers(model) if la.final}
    out: list[Finding] = []
    reference = _number(last[-1].get("grad_norm2"))
    for row in last:
        out += _flags(row, reference, row is last[-1], row["layer"] in outputs)
    return out


def _flags(row: dict[str, Any], reference: float | None, nearest: bool,
           output: bool) -> list[Finding]:
    layer, out = row["layer"], []
    dead, saturated = _number(row.get("dead_fraction")), _number(row.get("saturated_fraction"))
    if dead is not None and dead >= DEAD:
        out.append(Finding(layer, "dead", dead))
    if saturated is not None and saturated >= SATURATED and not output:
        out.append(Finding(layer, "saturated", saturated))
    norm = _number(row.get("grad_norm2"))
    if nearest or norm is None or not reference or not math.isfinite(reference):
        return out
    ratio = norm / reference
    if ratio < VANISHING:
        out.append(Finding(layer, "vanishing", ratio))
    elif ratio > EXPLODING or not math.isfinite(ratio):
        out.append(Finding(layer, "exploding", ratio))
    return out


def _number(value: Any) -> float | None:
    if value is None or value == "":
        return None
    return float(value)


def check_rows(rows: Any) -> list[dict[str, Any]]:
    """Diagnostics rows read back from a checkpoint: a list of objects of numbers with a
    layer and a phase; anything else is an error (the checkpoint was damaged)."""
    ok = isinstance(rows, list) and all(
        isinstance(r, dict) and isinstance(r.get("layer"), str)
        and isinstance(r.get("phase"), str)
        and all(isinstance(r.get(k), int) for k in ("epoch", "step"))
        and all(isinstance(v, int | float | bool) or v is None
                for k, v in r.items() if k not in ("layer", "phase")) for r in rows)
    if not ok:
        raise NndslError("the checkpoint's diagnostics record is damaged",
                         expected="a list of rows: epoch, step, phase, layer and numbers",
                         hint="checkpoints are written by nndsl only: resume from a copy, or "
                         "start the run again")
    return [dict(r) for r in rows]
