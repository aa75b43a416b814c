"""Contrastive divergence: an `rbm` layer trained by k steps of Gibbs sampling (Hinton 2002),
or by a persistent chain (Tieleman 2008); a deep belief network is a stack of them trained one
phase at a time, the lower layers frozen.

One update on a batch of B visible rows v0 (the values reaching the layer's input in inference
mode: the data rows, or a lower layer's hidden probabilities), with W [hidden, visible]:

    p0 = σ(v0 Wᵀ + c)                 hidden probabilities        (statistics)
    h0 ~ Bernoulli(p0)                 hidden states               (drive the chain)
    CD-k, from h = h0, k times:
      pv = σ(h W + b);  v = pv on the last step, else v ~ Bernoulli(pv)
      ph = σ(v Wᵀ + c); h ~ Bernoulli(ph) unless it is the last step
    PCD-k, from the chain's visible states vc (M rows, kept across updates):
      h ~ Bernoulli(σ(vc Wᵀ + c)), then k times: pv = σ(h W + b); v ~ Bernoulli(pv);
      ph = σ(v Wᵀ + c); h ~ Bernoulli(ph) unless last; the chain keeps v
    ΔW = p0ᵀ v0 / B − phᵀ v / M,  Δc = mean(p0) − mean(ph),  Δb = mean(v0) − mean(v)

(M = B for CD.) Hidden statistics are probabilities throughout; the last visible is the
reconstruction's probabilities for CD (Hinton's practical guide, §3) and the chain's sampled
states for PCD. −Δ is handed to the stage's optimizer as the gradient, with `regularize`'s
gradient added to W's and the stage's noise, clipping, schedule and constraints applied as in
backprop. Draws come from one table per update, seeded `stream_seed(seed, step, 2)`, in the
order written above (h0 first).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

from nndsl import ops
from nndsl.errors import NndslError
from nndsl.ir import Call, Graph, Node
from nndsl.ops.optimizers import require
from nndsl.ops.rbm import bernoulli, free_energy, hidden_probs, visible_probs
from nndsl.ops.registry import Label
from nndsl.training.core import Updater, blowup, penalties, trainable
from nndsl.training.epochs import EPOCH_SETTINGS, EpochLoop
from nndsl.training.evaluation import evaluate
from nndsl.training.registry import CheckContext, Trainer, trainer
from nndsl.training.session import Position, Session
from nndsl.training.stages import Stage, stream_seed

STREAM = 2  # the Gibbs draws of one update: stream_seed(seed, step, STREAM)
CHAIN = "persistent_chain"  # PCD's checkpoint slot (weight names hold a dot: no clash)
MEASURES = ("reconstruction", "free_energy")


def _rbm_layer(model: Graph, frozen: tuple[str, ...], label: str | None, span: Any) -> Node:
    """The rbm node a stage trains: the one named by `layer=`, else the only one not frozen."""
    layers = [n for n in model.nodes if n.op == "rbm"]
    free = set(trainable(model, frozen))
    open_ = [n for n in layers if all(w in free for _, w in n.weights)]
    if label is not None:
        named = next((n for n in layers if n.label == label), None)
        if named is None:
            raise NndslError(f"layer={label} names no rbm layer of model '{model.name}'", span,
                             expected=", ".join(str(n.label) for n in layers) or "an rbm layer",
                             received=label)
        if named not in open_:
            raise NndslError(f"rbm layer '{label}' is frozen in this phase", span,
                             hint=f"remove {label} from `freeze` (and `trainable=false`)")
        return named
    if len(open_) == 1:
        return open_[0]
    if not layers:
        raise NndslError(f"contrastive divergence trains an rbm layer; model '{model.name}' "
                         "has none", span, hint="add one: `h = v -> r1: rbm(64)`")
    what = "every rbm layer is frozen" if not open_ else \
        f"{len(open_)} rbm layers are trainable ({', '.join(str(n.label) for n in open_)})"
    raise NndslError(f"contrastive divergence trains one rbm layer per phase: {what}", span,
                     hint="pick one with `contrastive_divergence(layer=LABEL)`, or freeze the "
                     "others with `freeze = [...]`")


@trainer("contrastive_divergence")
@dataclass(frozen=True, kw_only=True)
class ContrastiveDivergence(Trainer):
    """ΔW = ⟨h vᵀ⟩_data − ⟨h vᵀ⟩_model: the model's after k Gibbs steps from the data (CD-k).

    Trains one `rbm` layer (the phase's only unfrozen one, or `layer=LABEL`) on the values that
    reach its input; `persistent = true` continues one chain across updates instead (PCD). The
    update goes to the phase's optimizer as a negative gradient (`sgd(lr=0.1, momentum=0.5)`).
    It records `loss` (the batches' reconstruction error from sampled hidden states),
    `reconstruction` (mean (v − σ(σ(v Wᵀ + c) W + b))²) and `free_energy` (mean F(v)), and
    their `val_` forms with `split`.
    """

    k: int = 1
    persistent: bool = False
    layer: Label | None = None

    reads = EPOCH_SETTINGS | {"optimizer", "schedule", "regularize", "constraint", "clip",
                              "grad_noise"}
    gradient_free = True
    records = frozenset({*MEASURES, *(f"val_{m}" for m in MEASURES)})

    def __post_init__(self) -> None:
        require(self.k >= 1, "k", self.k, "an integer >= 1")

    def check(self, ctx: CheckContext) -> None:
        _rbm_layer(ctx.model, ctx.stage.frozen, self.layer, ctx.call_span)
        rule = ctx.stage.get("early_stop")
        monitor = rule.get("monitor", "val_loss") if rule is not None else ""
        if monitor in self.records and monitor.startswith("val_") and not ctx.spec.get("split"):
            raise NndslError(f"early_stop monitors '{monitor}', but no validation rows are "
                             "held out", rule.span, hint="set `split = 0.2`, or monitor "
                             f"`{monitor[4:]}`")

    def run(self, session: Session, stage: Stage, index: int, start: Position | None) -> None:
        node = _rbm_layer(session.model, stage.frozen, self.layer, stage.trainer_call.span)
        CDLoop(session, stage, index, start, self, node).run()


class CDLoop(EpochLoop):
    """Epochs of CD-k (or PCD-k) updates of one rbm layer."""

    def __init__(self, session: Session, stage: Stage, index: int, start: Position | None,
                 rule: ContrastiveDivergence, node: Node) -> None:
        super().__init__(session, stage, index, start)
        self.rule, self.node = rule, node
        self.names = dict(node.weights)
        self.dtype = self.model.weight(self.names["weight"]).dtype
        self.below = _inputs_of(self.model, node)
        self.updater = Updater(session.engine, self.model, stage, self.seed)
        self.regs = [_penalty_gradient(c) for c in penalties(
            self.model, stage.get("regularize")).get(self.names["weight"], [])]
        saved = session.engine.to_backend_state(start.state) if start is not None else {}
        self.chain = saved.pop(CHAIN, {}).get("v")
        self.updater.state = saved
        self._check_range()

    def state(self) -> dict[str, dict[str, Any]]:
        chain = {CHAIN: {"v": self.chain}} if self.chain is not None else {}
        return {**self.updater.state, **chain}

    def visible(self, feeds: dict[str, Any]) -> Any:
        """The values reaching the layer's input in inference mode, with the current weights."""
        name = self.node.inputs[0]
        if self.below is None:
            return feeds[name]
        return self.s.engine.run(self.below, feeds, self.weights).env[name]

    def _check_range(self) -> None:
        """Bernoulli visible units model values in [0, 1]: anything else is refused up front."""
        engine = self.s.engine
        v = engine.to_numpy({"v": self.visible(self.s.rows)})["v"]
        low, high = (float(v.min()), float(v.max())) if v.size else (0.0, 1.0)
        if low < 0.0 or high > 1.0:
            label = self.node.label or self.node.name
            raise NndslError(f"rbm '{label}' has Bernoulli visible units: its input must lie in "
                             f"[0, 1], the training rows give [{low:.4g}, {high:.4g}]",
                             self.node.span, hint="scale the data to [0, 1] (or binarise it)")

    def weights_of(self) -> tuple[Any, Any, Any]:
        w = self.weights
        return (w[self.names["weight"]], w[self.names["bias"]], w[self.names["visible_bias"]])

    def statistics(self, v0: Any) -> tuple[dict[str, Any], Any]:
        """−(⟨·⟩_data − ⟨·⟩_model) for W, c and b (the optimizer's gradients), and the batch's
        reconstruction error, from the draws of this step's table (see the module doc)."""
        P, dtype = self.s.engine.P, self.dtype
        R = self.s.engine.table(stream_seed(self.seed, self.s.step, STREAM))
        weight, bias, vbias = self.weights_of()
        p0 = hidden_probs(P, v0, weight, bias)
        h0 = bernoulli(R, p0, dtype)
        recon = visible_probs(P, h0, weight, vbias)
        diff = P.sub(v0, recon)
        if self.rule.persistent:
            start = self.chain if self.chain is not None else v0
            hc = bernoulli(R, hidden_probs(P, start, weight, bias), dtype)
            v, ph = self.gibbs(R, hc, None)
            self.chain = v
        else:
            v, ph = self.gibbs(R, h0, recon)
        grads = {self.names["weight"]: P.sub(_mean_outer(P, ph, v), _mean_outer(P, p0, v0)),
                 self.names["bias"]: P.sub(P.mean(ph, axis=0), P.mean(p0, axis=0)),
                 self.names["visible_bias"]: P.sub(P.mean(v, axis=0), P.mean(v0, axis=0))}
        name = self.names["weight"]
        for grad, params in self.regs:
            grads[name] = P.add(grads[name], grad(P, weight, **params))
        return grads, P.mean(P.mul(diff, diff))

    def gibbs(self, R: Any, h: Any, pv: Any) -> tuple[Any, Any]:
        """k steps from hidden states h (pv: the first step's visible probabilities when known);
        the last visible (probabilities for CD, states for PCD) and its hidden probabilities."""
        P, dtype, weight, bias, vbias = (self.s.engine.P, self.dtype, *self.weights_of())
        for step in range(1, self.rule.k + 1):
            last = step == self.rule.k
            pv = pv if pv is not None else visible_probs(P, h, weight, vbias)
            v = pv if last and not self.rule.persistent else bernoulli(R, pv, dtype)
            ph = hidden_probs(P, v, weight, bias)
            if not last:
                h, pv = bernoulli(R, ph, dtype), None
        return v, ph

    def update(self, feeds: dict[str, Any]) -> float:
        s, stage, engine = self.s, self.stage, self.s.engine
        grads, err = self.statistics(self.visible(feeds))
        loss = engine.scalar(err)
        bad = None if math.isfinite(loss) else "the loss"
        bad = bad or engine.nonfinite(grads)
        if bad is not None:
            raise blowup(stage, s.history.series("loss"), bad, loss,
                         self.updater.rate(s.step, self.epoch), self.epoch, s.step,
                         stage.trainer_call.span)
        rate = self.updater.apply(self.weights, grads, s.step, self.epoch)
        s.step += 1
        if s.step_rows:
            s.record({"kind": "step", "step": s.step, "epoch": self.epoch + 1, "loss": loss,
                      "lr": rate})
        return loss

    def measures(self, rows: dict[str, Any]) -> dict[str, float]:
        """Mean reconstruction error (from hidden probabilities) and mean free energy."""
        P, engine = self.s.engine.P, self.s.engine
        v = self.visible(rows)
        weight, bias, vbias = self.weights_of()
        recon = visible_probs(P, hidden_probs(P, v, weight, bias), weight, vbias)
        diff = P.sub(v, recon)
        return {"reconstruction": engine.scalar(P.mean(P.mul(diff, diff))),
                "free_energy": engine.scalar(P.mean(free_energy(P, v, weight, bias, vbias)))}

    def row(self) -> dict[str, float]:
        s = self.s
        out = {"lr": self.updater.rate(max(s.step - 1, 0), self.epoch - 1)}
        out.update(evaluate(s.engine, self.model, self.weights, replace(self.stage, loss=None),
                            s.data.train, s.data.val, self.target))
        out.update(self.measures(s.rows))
        if s.data.val:
            val = self.measures(s.engine.to_backend(s.data.val))
            out.update({f"val_{k}": v for k, v in val.items()})
            out["val_loss"] = val["reconstruction"]
        return out


def _penalty_gradient(call: Call) -> tuple[Any, dict[str, Any]]:
    """A regularizer's closed-form gradient (CD has no loss to differentiate) and its params."""
    grad = ops.get(call.name, "regularizer", call.span).grad
    if grad is None:
        raise NndslError(f"regularizer '{call.name}' gives no closed-form gradient, which "
                         "contrastive divergence needs", call.span, hint="use l1, l2 or elastic")
    return grad, dict(call.kwargs)


def _mean_outer(P: Any, h: Any, v: Any) -> Any:
    """hᵀ v / rows: [hidden, visible], the mean over the batch of the outer products."""
    return P.div(P.matmul(P.transpose(h), v), float(P.shape(h)[0]))


def _inputs_of(model: Graph, node: Node) -> Graph | None:
    """The part of the model that computes the rbm's input (None when it is a model input)."""
    name = node.inputs[0]
    if name in dict(model.inputs):
        return None
    producers = {n.name: n for n in model.nodes}
    needed, todo = set(), [name]
    while todo:
        value = todo.pop()
        if value in producers and value not in needed:
            needed.add(value)
            todo += list(producers[value].inputs)
    nodes = tuple(n for n in model.nodes if n.name in needed)
    return replace(model, nodes=nodes, outputs=(name,))
