"""Error-correction rules for one layer of units: Rosenblatt's perceptron rule for threshold
units and the Widrow–Hoff delta rule (least mean squares) on the units' net input."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from nndsl.errors import NndslError
from nndsl.ir import Graph, Node
from nndsl.ops.optimizers import require
from nndsl.training.epochs import EPOCH_SETTINGS, EpochLoop
from nndsl.training.registry import CheckContext, Trainer, trainer
from nndsl.training.session import Position, Session
from nndsl.training.stages import Stage

THRESHOLDS = ("step", "sign")


@dataclass(frozen=True)
class Layer:
    """The trained layer: its dense node, and the threshold after it (None for linear units)."""

    dense: Node
    threshold: Node | None


def single_layer(model: Graph, rule: str, thresholds: tuple[str, ...], span: Any) -> Layer:
    """The model must be one dense layer on a model input, then one of `thresholds` (or
    nothing, where a linear unit is allowed) as its first output."""
    producers = {n.name: n for n in model.nodes}
    out = producers.get(model.outputs[0])
    threshold = out if out is not None and out.op in thresholds else None
    dense = producers.get(threshold.inputs[0]) if threshold is not None else out
    linear_ok = "linear" in thresholds
    if dense is None or dense.op != "dense" or (threshold is None and not linear_ok) or \
            dense.inputs[0] not in dict(model.inputs):
        shown = " or ".join(t for t in thresholds if t != "linear")
        units = f"dense -> {shown}" + (" (or a linear dense output)" if linear_ok else "")
        raise NndslError(f"the {rule} rule trains one layer of units: model '{model.name}' "
                         f"must be `input -> {units}`", (out.span if out else None) or span,
                         hint="train deeper models with backprop (differentiable units) or a "
                         "gradient-free trainer")
    return Layer(dense, threshold)


@dataclass(frozen=True, kw_only=True)
class ErrorCorrection(Trainer):
    """What the two rules share: one layer, a target, online updates (batch = 1 by default)."""

    lr: float = 1.0

    reads = EPOCH_SETTINGS
    gradient_free = True
    rule: ClassVar[str] = ""
    units: ClassVar[tuple[str, ...]] = THRESHOLDS

    def __post_init__(self) -> None:
        require(self.lr > 0, "lr", self.lr, "a positive number")

    def check(self, ctx: CheckContext) -> None:
        single_layer(ctx.model, self.rule, self.units, ctx.call_span)
        if not ctx.spec.targets:
            raise NndslError(f"the {self.rule} rule needs a target", ctx.call_span,
                             hint="declare one: `target y: [batch, 1]`")

    def run(self, session: Session, stage: Stage, index: int, start: Position | None) -> None:
        layer = single_layer(session.model, self.rule, self.units, stage.span)
        RuleLoop(session, stage, index, start, self, layer).run()

    def error(self, P: Any, t: Any, net: Any, y: Any) -> Any:
        """t - (the value the rule corrects)."""
        raise NotImplementedError

    def batch_loss(self, P: Any, err: Any) -> Any:
        raise NotImplementedError


@trainer("perceptron")
@dataclass(frozen=True, kw_only=True)
class Perceptron(ErrorCorrection):
    """Rosenblatt: w += lr (t - y) x, b += lr (t - y), y = step(w x + b) or sign(w x + b).

    Summed over a batch's rows (batch = 1, the default, is the classic online rule). Targets
    are 0/1 for step units and -1/+1 for sign units. The recorded loss is the fraction of rows
    misclassified; training stops after the first epoch without a mistake (on separable data
    the rule is guaranteed to get there).
    """

    rule = "perceptron"

    def error(self, P: Any, t: Any, net: Any, y: Any) -> Any:
        return P.sub(t, y)

    def batch_loss(self, P: Any, err: Any) -> Any:
        wrong = P.cast(P.gt(P.max(P.abs(err), axis=-1), 0.0), "f32")
        return P.mean(wrong)


@trainer("delta")
@dataclass(frozen=True, kw_only=True)
class Delta(ErrorCorrection):
    """Widrow–Hoff (ADALINE, least mean squares): w += lr (t - net) x, net = w x + b.

    The error is taken before any threshold, so the rule also trains step or sign units
    through their net input; summed over a batch's rows (batch = 1 by default). The recorded
    loss is the mean of (t - net)^2 / 2 over the batch, before the update.
    """

    rule = "delta"
    units: ClassVar[tuple[str, ...]] = (*THRESHOLDS, "linear")

    def error(self, P: Any, t: Any, net: Any, y: Any) -> Any:
        return P.sub(t, net)

    def batch_loss(self, P: Any, err: Any) -> Any:
        return P.mul(0.5, P.mean(P.sum(P.mul(err, err), axis=-1)))


class RuleLoop(EpochLoop):
    """Online error correction: forward, error, outer-product update of the dense layer."""

    default_batch = 1

    def __init__(self, session: Session, stage: Stage, index: int, start: Position | None,
                 rule: ErrorCorrection, layer: Layer) -> None:
        super().__init__(session, stage, index, start)
        self.rule, self.layer = rule, layer
        self.names = dict(layer.dense.weights)
        self.errors = 0.0

    def update(self, feeds: dict[str, Any]) -> float:
        s, P = self.s, self.s.engine.P
        env = s.engine.run(self.model, feeds, self.weights).env
        net, y = env[self.layer.dense.name], env[self.model.outputs[0]]
        t = P.reshape(P.cast(feeds[self.target], _dtype(self.model)), P.shape(y))
        err = self.rule.error(P, t, net, y)
        x = feeds[self.layer.dense.inputs[0]]
        w = self.names["weight"]
        self.weights[w] = P.add(self.weights[w], P.mul(self.rule.lr, P.matmul(
            P.transpose(err), x)))
        if "bias" in self.names:
            b = self.names["bias"]
            self.weights[b] = P.add(self.weights[b], P.mul(self.rule.lr, P.sum(err, axis=0)))
        s.step += 1
        loss = s.engine.scalar(self.rule.batch_loss(P, err))
        self.errors += loss
        return loss

    def converged(self) -> bool:
        history = self.s.history.series("loss")
        return isinstance(self.rule, Perceptron) and bool(history) and history[-1] == 0.0


def _dtype(model: Graph) -> str:
    return "f64" if any(t.dtype == "f64" for _, t in model.inputs) else "f32"
