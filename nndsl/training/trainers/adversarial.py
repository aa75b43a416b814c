"""Generative adversarial training (Goodfellow et al. 2014, Algorithm 1): k discriminator
updates, each on a fresh batch of real rows and of latent draws, then one generator update on
fresh latent draws. A conditional GAN feeds a condition from the data to both models.

How the two models fit is read from their declarations (`fit`), once for `nndsl check` and
again for the run: the generator's inputs the discriminator also declares are conditions (data
arrays of that name); the generator's other inputs are latents drawn from the prior; the
discriminator's one remaining input takes real rows or the generator's first output; its first
output is a probability made by `sigmoid`, whose input (the logit) the losses read, so that
log D and log(1 - D) are computed as -softplus(-l) and -softplus(l), finite for any logit.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import numpy as np

from nndsl import ops
from nndsl.errors import NndslError, Span
from nndsl.interpreter import run
from nndsl.ir import NUMPY_DTYPE, Call, Graph, TensorType, format_shape
from nndsl.ops.activations import softplus_of
from nndsl.ops.optimizers import require
from nndsl.ops.registry import ModelName
from nndsl.training.core import Updater, blowup, penalties, trainable
from nndsl.training.epochs import EpochLoop
from nndsl.training.registry import CheckContext, Trainer, trainer
from nndsl.training.session import Position, Session
from nndsl.training.stages import Stage, stream_seed

OptimizerCall = Annotated[Call, "optimizer"]
# Stream numbers of this trainer's draws (0 and 1 are the forward pass and gradient noise).
Z_STREAM = 2  # the latent draws of every update
FAKE_STREAM = 3  # the generator's forward pass making a discriminator update's fakes
FORWARD_STREAM = 4  # the forward pass that is differentiated (dropout masks)
NOISE_STREAMS = {"discriminator": 5, "generator": 6}  # gradient noise, per model
ROLES = ("discriminator", "generator")
STATS = ("d_loss", "g_loss", "d_real", "d_fake")


@dataclass(frozen=True)
class Pair:
    """The generator and discriminator as they fit together."""

    generator: Graph
    discriminator: Graph
    latents: tuple[tuple[str, TensorType], ...]  # drawn from the prior
    conditions: tuple[str, ...]  # data arrays both models read
    real: str  # the discriminator's input for real rows or fakes
    logit: str  # the value the discriminator's sigmoid reads


def fit(g: Graph, d: Graph, span: Span | None) -> Pair:
    """How the models fit; a positioned error where they do not."""
    d_inputs = dict(d.inputs)
    conditions = tuple(n for n, _ in g.inputs if n in d_inputs)
    latents = tuple((n, t) for n, t in g.inputs if n not in d_inputs)
    for name in conditions:
        if dict(g.inputs)[name] != d_inputs[name]:
            raise NndslError(f"condition '{name}' is declared differently by the two models",
                             span, expected=f"{name}: {dict(g.inputs)[name]} (generator)",
                             received=f"{name}: {d_inputs[name]} (discriminator)",
                             hint="a condition is one data array, fed to both models")
    _check_latents(g, latents)
    others = [n for n, _ in d.inputs if n not in conditions]
    if len(others) != 1:
        raise NndslError(f"discriminator '{d.name}' must have exactly one input besides the "
                         "conditions it shares with the generator", d.span or span,
                         expected="one input for real rows or the generator's samples",
                         received=", ".join(others) or "none",
                         hint="inputs both models declare are conditions (data arrays)")
    fake_type, real_type = g.types()[g.outputs[0]], d_inputs[others[0]]
    if fake_type != real_type:
        raise NndslError(f"generator '{g.name}' makes samples that discriminator '{d.name}' "
                         f"cannot read as '{others[0]}'", span,
                         expected=f"{others[0]}: {real_type}",
                         received=f"{g.outputs[0]}: {fake_type} (the generator's first output)")
    return Pair(g, d, latents, conditions, others[0], _logit(d, span))


def _check_latents(g: Graph, latents: tuple[tuple[str, TensorType], ...]) -> None:
    if not latents:
        raise NndslError(f"generator '{g.name}' has no latent input", g.span,
                         hint="declare one, e.g. `input z: [batch, 8]`; inputs the "
                         "discriminator also declares are conditions, read from the data")
    for name, ty in latents:
        known = len(ty.shape) >= 2 and ty.shape[0] == "batch" and \
            all(isinstance(d, int) for d in ty.shape[1:])
        if ty.dtype == "i64" or not known:
            raise NndslError(f"latent input '{name}' of generator '{g.name}' cannot be drawn",
                             g.span, expected="floats of shape [batch, sizes...], e.g. "
                             "[batch, 8]", received=f"{name}: {ty}",
                             hint="an input the discriminator also declares is a condition "
                             "from the data instead")


def _logit(d: Graph, span: Span | None) -> str:
    """The discriminator's first output must be sigmoid(l) of shape [batch] or [batch, 1]."""
    node = next((n for n in d.nodes if n.name == d.outputs[0]), None)
    out = d.types()[d.outputs[0]]
    if node is None or node.op != "sigmoid":
        raise NndslError(f"discriminator '{d.name}' must end in a sigmoid (the probability "
                         "that its input is real)", (node.span if node else None) or d.span or
                         span, received=node.op if node else "an input",
                         hint="end it with `-> dense(1) -> sigmoid`")
    if out.shape not in (("batch",), ("batch", 1)):
        raise NndslError(f"discriminator '{d.name}' must give one probability per row",
                         node.span or span, expected="[batch, 1] or [batch]",
                         received=format_shape(out.shape))
    return node.inputs[0]


def _reaches(d: Graph, source: str) -> bool:
    """Whether `source` reaches the discriminator's first output through ops with gradients."""
    smooth = {d.outputs[0]}
    for node in reversed(d.nodes):
        opdef = ops.OPS.get(node.op)
        if node.name in smooth and (opdef is None or opdef.differentiable):
            smooth.update(node.inputs)
    return source in smooth


def _check_gradients(pair: Pair, frozen: tuple[str, ...]) -> None:
    """Both models train by gradients: every trainable weight must get one, and the
    generator's samples must reach the discriminator's verdict through differentiable ops."""
    from nndsl.training.gradient_flow import gradient_flow

    for graph, skip in ((pair.generator, frozen), (pair.discriminator, ())):
        flow = gradient_flow(graph)
        blocked = [w for w in trainable(graph, skip) if w in flow.blocked]
        if blocked:
            node = flow.blocked[blocked[0]]
            raise NndslError(f"adversarial training cannot train '{blocked[0]}' of model "
                             f"'{graph.name}': {node.op} has no gradient", node.span,
                             hint="use differentiable ops in both models")
        for w in graph.weights:
            if w.role == "buffer":
                raise NndslError(f"model '{graph.name}' keeps running statistics "
                                 f"('{w.name}'), which adversarial training does not update",
                                 w.span or graph.span, hint="use layer_norm instead of "
                                 "batchnorm in a GAN")
    if not _reaches(pair.discriminator, pair.real):
        raise NndslError(f"the generator gets no gradient: discriminator "
                         f"'{pair.discriminator.name}' reads '{pair.real}' only through ops "
                         "without a gradient", pair.discriminator.span)


@trainer("adversarial")
@dataclass(frozen=True, kw_only=True)
class Adversarial(Trainer):
    """k discriminator updates on -mean log D(x) - mean log(1 - D(G(z))), then one generator
    update on -mean log D(G(z)) (non_saturating) or mean log(1 - D(G(z))) (saturating).

    Each discriminator update reads the next batch of real rows and draws z from `prior`
    (normal: N(0, 1); uniform: U[-1, 1)) in the shape of the generator's latent inputs; the
    generator update draws fresh z and reuses the last batch's conditions. The train block's
    optimizer trains both models unless `generator_optimizer` or `discriminator_optimizer` is
    given. metrics.csv records d_loss, g_loss, d_real = mean D(x), d_fake = mean D(G(z)),
    d_lr and g_lr per epoch.
    """

    generator: ModelName
    discriminator: ModelName
    k: int = 1
    generator_loss: Literal["non_saturating", "saturating"] = "non_saturating"
    prior: Literal["normal", "uniform"] = "normal"
    generator_optimizer: OptimizerCall | None = None
    discriminator_optimizer: OptimizerCall | None = None

    reads = frozenset({"optimizer", "schedule", "batch", "epochs", "shuffle", "clip",
                       "grad_noise", "regularize", "constraint"})
    records = frozenset({*STATS, "d_lr", "g_lr"})

    def __post_init__(self) -> None:
        from nndsl.passes.trial import try_setting

        require(self.generator != self.discriminator, "discriminator", self.discriminator,
                "a different model from the generator")
        require(self.k >= 1, "k", self.k, "an integer >= 1")
        for call in (self.generator_optimizer, self.discriminator_optimizer):
            if call is not None:
                try_setting("optimizer", call)

    def pair(self, models: dict[str, Graph], span: Span | None) -> Pair:
        def named(name: str, role: str) -> Graph:
            from nndsl.errors import did_you_mean

            if name not in models:
                raise NndslError(f"{role} '{name}' names no model of this spec", span,
                                 hint=did_you_mean(name, models)
                                 or f"models: {', '.join(models)}")
            return models[name]

        return fit(named(self.generator, "generator"),
                   named(self.discriminator, "discriminator"), span)

    def check(self, ctx: CheckContext) -> None:
        pair = self.pair(ctx.models, ctx.call_span)
        if ctx.spec.model != self.generator:
            raise NndslError(f"train block '{ctx.spec.model}' runs adversarial training of "
                             f"generator '{self.generator}'", ctx.call_span,
                             hint=f"write `train {self.generator} {{ ... }}`: the block is "
                             "named after the generator (exported as model.onnx)")
        _check_gradients(pair, ctx.stage.frozen)

    def data(self, ctx: CheckContext) -> dict[str, TensorType]:
        pair = self.pair(ctx.models, ctx.call_span)
        wanted = (pair.real, *pair.conditions)
        return {name: dict(pair.discriminator.inputs)[name] for name in wanted}

    def models(self) -> tuple[str, ...]:
        return (self.discriminator,)

    def exports(self) -> tuple[str, ...]:
        return (self.discriminator,)

    def run(self, session: Session, stage: Stage, index: int, start: Position | None) -> None:
        models = {name: session.graph(name) for name in (self.generator, self.discriminator)}
        AdversarialLoop(session, stage, index, start, self,
                        self.pair(models, stage.trainer_call.span)).run()


class AdversarialLoop(EpochLoop):
    """Each batch of real rows is one discriminator update; every k-th is followed by a
    generator update. The count since the last generator update carries over epochs."""

    def __init__(self, session: Session, stage: Stage, index: int, start: Position | None,
                 gan: Adversarial, pair: Pair) -> None:
        super().__init__(session, stage, index, start)
        self.gan, self.pair = gan, pair
        self.graphs = {"generator": pair.generator, "discriminator": pair.discriminator}
        self.params = {role: session.weights[g.name] for role, g in self.graphs.items()}
        frozen = {"generator": stage.frozen, "discriminator": ()}
        self.names = {role: trainable(g, frozen[role]) for role, g in self.graphs.items()}
        self.regs = {role: penalties(g, stage.get("regularize"))
                     for role, g in self.graphs.items()}
        own = {"generator": gan.generator_optimizer,
               "discriminator": gan.discriminator_optimizer}
        self.updaters = {role: Updater(session.engine, g, stage, self.seed, own[role],
                                       noise_stream=NOISE_STREAMS[role])
                         for role, g in self.graphs.items()}
        self.updates = {role: 0 for role in ROLES}  # each model's updates (its optimizer's t)
        self.pending = 0  # discriminator updates since the last generator update
        self.tally: dict[str, list[float]] = {k: [] for k in STATS}
        if start is not None:
            for role, updater in self.updaters.items():
                saved = {k.partition("/")[2]: v for k, v in start.state.items()
                         if k.startswith(role + "/")}
                updater.state = session.engine.to_backend_state(saved)
            record = start.record
            self.updates = {role: int(record.get("updates", {}).get(role, 0)) for role in ROLES}
            self.pending = int(record.get("pending", 0))
            self.tally = {k: [float(x) for x in record.get("tally", {}).get(k, [])]
                          for k in STATS}

    # -- checkpoint state --------------------------------------------------------------------

    def state(self) -> dict[str, dict[str, Any]]:
        return {f"{role}/{name}": slots for role, updater in self.updaters.items()
                for name, slots in updater.state.items()}

    def position(self, epoch: int, rng: dict[str, Any] | None, batch: int = 0,
                 losses: list[float] | None = None) -> Position:
        out = super().position(epoch, rng, batch)
        out.record.update({"updates": dict(self.updates), "pending": self.pending,
                           "tally": dict(self.tally)})  # read at once, never kept
        return out

    # -- one batch -----------------------------------------------------------------------------

    def update(self, feeds: dict[str, Any]) -> float:
        conditions = {name: feeds[name] for name in self.pair.conditions}
        real = feeds[self.pair.real]
        d_loss = self.discriminator_step(real, conditions)
        self.pending += 1
        if self.pending == self.gan.k and self.s.budget_left():
            self.generator_step(int(real.shape[0]), conditions)
            self.pending = 0
        return d_loss

    def latents(self, rows: int) -> dict[str, Any]:
        """z for every latent input, drawn from the prior with this update's seed."""
        engine = self.s.engine
        table = engine.table(stream_seed(self.seed, self.s.step, Z_STREAM))
        out = {}
        for name, ty in self.pair.latents:
            like = engine.P.constant(np.zeros((rows, *ty.shape[1:]), NUMPY_DTYPE[ty.dtype]),
                                     ty.dtype)
            if self.gan.prior == "normal":
                out[name] = table.random_normal_like(like)
            else:
                out[name] = engine.P.sub(engine.P.mul(2.0, table.random_uniform_like(like)), 1.0)
        return out

    def judge(self, P: Any, samples: Any, conditions: dict[str, Any],
              weights: dict[str, Any]) -> tuple[Any, Any]:
        """The discriminator on samples: (its logits, its probabilities)."""
        env = run(self.pair.discriminator, P, {self.pair.real: samples, **conditions},
                  weights).env
        return env[self.pair.logit], env[self.pair.discriminator.outputs[0]]

    def discriminator_step(self, real: Any, conditions: dict[str, Any]) -> float:
        s, engine, gen = self.s, self.s.engine, self.pair.generator
        z = self.latents(int(real.shape[0]))
        fake = engine.run(gen, {**z, **conditions}, self.params["generator"], training=True,
                          seed=stream_seed(self.seed, s.step, FAKE_STREAM)).env[gen.outputs[0]]
        parts: dict[str, Any] = {}

        def loss(P: Any, weights: dict[str, Any]) -> Any:
            real_logit, real_p = self.judge(P, real, conditions, weights)
            fake_logit, fake_p = self.judge(P, fake, conditions, weights)
            value = P.add(P.mean(softplus_of(P, P.neg(real_logit))),  # -log D(x)
                          P.mean(softplus_of(P, fake_logit)))  # -log(1 - D(G(z)))
            parts.update(d_loss=value, d_real=P.mean(real_p), d_fake=P.mean(fake_p))
            return self.penalized(P, value, weights, "discriminator")

        self.step("discriminator", loss, parts)
        return self.tally["d_loss"][-1]

    def generator_step(self, rows: int, conditions: dict[str, Any]) -> None:
        gen = self.pair.generator
        z = self.latents(rows)
        saturating = self.gan.generator_loss == "saturating"
        parts: dict[str, Any] = {}

        def loss(P: Any, weights: dict[str, Any]) -> Any:
            fake = run(gen, P, {**z, **conditions}, weights).env[gen.outputs[0]]
            logit, _ = self.judge(P, fake, conditions, self.params["discriminator"])
            # saturating: mean log(1 - D) = -mean softplus(l); else -mean log D = softplus(-l)
            value = P.neg(P.mean(softplus_of(P, logit))) if saturating else \
                P.mean(softplus_of(P, P.neg(logit)))
            parts.update(g_loss=value)
            return self.penalized(P, value, weights, "generator")

        self.step("generator", loss, parts)

    def penalized(self, P: Any, value: Any, weights: dict[str, Any], role: str) -> Any:
        """The loss plus the regularizers' penalties on the model's trained weights."""
        for name, calls in self.regs[role].items():
            if name in self.names[role]:
                for call in calls:
                    penalty = ops.get(call.name, "regularizer", call.span).compute
                    value = P.add(value, penalty(P, weights[name], **dict(call.kwargs)))
        return value

    def step(self, role: str, loss: Callable[[Any, dict[str, Any]], Any],
             parts: dict[str, Any]) -> None:
        """Differentiate `loss` for the model's trained weights and update them."""
        s, engine = self.s, self.s.engine
        total, grads = engine.value_and_grad(loss, self.params[role], self.names[role],
                                             stream_seed(self.seed, s.step, FORWARD_STREAM))
        values = {k: engine.scalar(v) for k, v in parts.items()}
        updater, done = self.updaters[role], self.updates[role]
        bad = None if math.isfinite(total) else "the loss"
        bad = bad or engine.nonfinite(grads, scratch=True)  # autograd's
        if bad is not None:
            key = role[0] + "_loss"
            raise blowup(self.stage, s.history.series(key), bad if bad == "the loss" else
                         f"{self.graphs[role].name}: {bad}", values[key],
                         updater.rate(done, self.epoch), self.epoch, s.step,
                         self.stage.trainer_call.span)
        updater.apply(self.params[role], grads, done, self.epoch)
        self.updates[role] = done + 1
        s.step += 1
        for key, value in values.items():
            self.tally[key].append(value)
        if s.step_rows:
            s.record({"kind": "step", "step": s.step, "epoch": self.epoch + 1, **values})

    # -- one epoch -----------------------------------------------------------------------------

    def end_epoch(self) -> None:
        row: dict[str, Any] = {"kind": "epoch", "step": self.s.step, "epoch": self.epoch,
                               "phase": self.stage.name}
        row.update({k: float(np.mean(v)) if v else math.nan for k, v in self.tally.items()})
        for role in ROLES:  # the rate of each model's last update
            row[role[0] + "_lr"] = self.updaters[role].rate(max(self.updates[role] - 1, 0),
                                                            self.epoch - 1)
        self.s.record(row)
        self.skip, self.losses = 0, []
        self.tally = {k: [] for k in STATS}
