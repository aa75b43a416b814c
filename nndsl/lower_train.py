"""AST -> TrainSpec: every train-block setting checked against its kind; the loss as a graph."""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated, Any, Literal

from nndsl import ops
from nndsl.errors import ErrorSink, NndslError, Span, did_you_mean
from nndsl.grammar import ast
from nndsl.ir import Call, Graph, Node, Phase, TensorType, TrainSpec, format_shape
from nndsl.lower import ModelBuilder, Poisoned, Scope, tensor_type
from nndsl.ops.registry import Constraint, Label, Regularizer
from nndsl.passes.bind import Mismatch, coerce, show
from nndsl.passes.trial import try_setting
from nndsl.passes.verify import verify

Metric = Annotated[Call, "metric"]  # `accuracy`, `top_k_accuracy(k=3)`
SETTINGS: dict[str, Any] = {
    "data": Annotated[Call, "data"],
    "optimizer": Annotated[Call, "optimizer"],
    "schedule": Annotated[Call, "schedule"],
    "regularize": Regularizer | tuple[Regularizer, ...],
    "constraint": Constraint,
    "clip": Annotated[Call, "clip"],
    "grad_noise": Annotated[Call, "noise"],
    "early_stop": Annotated[Call, "early_stop"],
    "trainer": Annotated[Call, "trainer"],
    "metrics": tuple[Metric, ...],
    "freeze": tuple[Label, ...],  # layer labels, or single weights `label.param`
    "split": float,
    "batch": int,
    "epochs": int,
    "steps": int,
    "truncate": int,  # truncated BPTT: chunks of this many time steps (training/truncate.py)
    "seed": int,
    "shuffle": bool,
    "diagnostics": bool,
    "compile": bool,  # torch.compile of the training step (backends/torch/compiled.py)
    "precision": Literal["f32", "bf16", "fp16"],  # torch autocast (backends/torch/precision.py)
}
RANGES: dict[str, tuple[Any, str]] = {
    "split": (lambda v: 0.0 <= v < 1.0, "a fraction in [0, 1)"),
    "batch": (lambda v: v >= 1, "an integer >= 1"),
    "epochs": (lambda v: v >= 1, "an integer >= 1"),
    "steps": (lambda v: v >= 1, "an integer >= 1"),
    "truncate": (lambda v: v >= 1, "a number of time steps >= 1"),
    "seed": (lambda v: v >= 0, "an integer >= 0"),
}
PHASE_ONLY_FORBIDDEN = ("data", "split", "seed")


def describe_setting(key: str) -> str:
    from nndsl.ops.registry import describe

    return describe(SETTINGS[key])


def _setting(stmt: ast.Setting) -> Any:
    if stmt.name not in SETTINGS:
        raise NndslError(f"unknown train setting '{stmt.name}'", stmt.span,
                         hint=did_you_mean(stmt.name, [*SETTINGS, "loss"])
                         or f"settings: loss, {', '.join(SETTINGS)}")
    try:
        value = coerce(stmt.value, SETTINGS[stmt.name], None)
    except Mismatch:
        raise NndslError(f"'{stmt.name}' must be {describe_setting(stmt.name)}", stmt.value.span,
                         expected=describe_setting(stmt.name), received=show(stmt.value)) from None
    if stmt.name in RANGES and not RANGES[stmt.name][0](value):
        raise NndslError(f"'{stmt.name}' is out of range", stmt.value.span,
                         expected=RANGES[stmt.name][1], received=repr(value))
    if isinstance(value, Call):
        try_setting(stmt.name, replace(value, span=value.span or stmt.value.span))
    return value


class TrainLowerer:
    """Checks one train block against the model it trains."""

    def __init__(self, tdef: ast.TrainDef, model: Graph | None, sink: ErrorSink) -> None:
        self.tdef, self.model, self.sink = tdef, model, sink
        self.targets: dict[str, TensorType] = {}
        self.spans: dict[str, Span] = {}

    def guard(self, action) -> Any:  # type: ignore[no-untyped-def]
        try:
            return action()
        except Poisoned:
            return None
        except NndslError as e:
            self.sink.add(e)
            return None

    def settings(self, body: tuple, phase: bool) -> tuple[dict[str, Any], ast.Setting | None]:
        """Check each setting; remembers where each was written in `self.spans` (and this
        block's or phase's own in `self.local`)."""
        values: dict[str, Any] = {}
        self.local: dict[str, Span] = {}
        loss: ast.Setting | None = None
        seen: dict[str, Span] = {}
        for stmt in body:
            if isinstance(stmt, ast.TargetDecl):
                for item in stmt.items:
                    self.guard(lambda item=item: self.declare_target(item))
                continue
            if not isinstance(stmt, ast.Setting):
                continue
            if stmt.name in seen:
                self.sink.add(NndslError(f"'{stmt.name}' is set twice", stmt.span).with_note(
                    "first set here", seen[stmt.name]))
                continue
            seen[stmt.name] = stmt.span
            self.spans[stmt.name] = stmt.value.span
            self.local[stmt.name] = stmt.span
            if phase and stmt.name in PHASE_ONLY_FORBIDDEN:
                self.sink.add(NndslError(f"'{stmt.name}' cannot change inside a phase", stmt.span,
                                         hint="set it once in the train block"))
                continue
            if stmt.name == "loss":
                loss = stmt
                continue
            value = self.guard(lambda stmt=stmt: _setting(stmt))
            if value is not None:
                values[stmt.name] = value
        return values, loss

    def declare_target(self, item: ast.TypedName) -> None:
        if item.name in self.targets or (self.model and item.name in self.model.types()):
            raise NndslError(f"target '{item.name}' clashes with an existing name", item.span)
        self.targets[item.name] = tensor_type(item.type)

    def check_freeze(self, names: tuple[str, ...], span: Span) -> None:
        """Each entry is a layer label (all its weights) or one weight, `label.param`."""
        if self.model is None:
            return
        known = {w.name.rsplit(".", 1)[0] for w in self.model.weights}
        weights = [w.name for w in self.model.weights]
        for name in names:
            if "." in name and name not in weights:
                label = name.rsplit(".", 1)[0]
                own = [w for w in weights if w.startswith(f"{label}.")]
                raise NndslError(f"freeze: the model has no weight '{name}'", span,
                                 hint=did_you_mean(name, weights) or (
                                     f"layer '{label}' has {', '.join(own)}" if own else
                                     f"labelled layers: {', '.join(sorted(known)) or 'none'}"))
            if "." not in name and name not in known:
                raise NndslError(f"freeze: no layer with weights is labelled '{name}'", span,
                                 hint=did_you_mean(name, known)
                                 or f"labelled layers: {', '.join(sorted(known)) or 'none'}")

    def loss_graph(self, stmt: ast.Setting) -> Graph | None:
        if self.model is None:
            return None
        return self.guard(lambda: lower_loss(stmt, self.model, self.targets))


def lower_loss(stmt: ast.Setting, model: Graph, targets: dict[str, TensorType]) -> Graph:
    """The loss expression as a graph over model values (inputs, outputs, bindings) and targets."""
    b = ModelBuilder(f"{model.name}.loss", {}, ErrorSink(), stmt.span)
    available = {**model.types(), **targets}
    b.types.update(available)
    b.reserved = set(available)
    b.outer = model  # `energy(s, memory)` reads the weights of the model's layer `memory`
    scope = Scope(values={name: name for name in available})
    unbound = {n.name for n in model.nodes if n.name == n.label}  # named by label, not binding
    for w in model.weights:  # a layer label names its weight: contractive(code, enc)
        label, param = w.name.rsplit(".", 1)
        scope.values[w.name] = w.name  # and `enc.weight`, `h.bias` name themselves
        b.types[w.name] = TensorType(w.shape, w.dtype)
        if param == "weight" and (label not in scope.values or label in unbound):
            scope.values[label] = w.name
    value = b.tensor(stmt.value, scope)
    owner = next((n for n in b.nodes if n.weights and ops.OPS[n.op].borrows is None), None)
    if owner is not None:  # the loss graph has no weights of its own: nothing would train them
        raise NndslError(f"a loss cannot contain a layer with weights ({owner.op})", owner.span,
                         hint="compute it in the model, bind it (`h = ...`) and use h here")
    ty = b.types[value]
    if ty is None or ty.shape != ():
        raise NndslError("the loss must be a scalar", stmt.value.span, expected="shape []",
                         received=f"shape {format_shape(ty.shape) if ty else '?'}",
                         hint="use a loss such as mse(y, t), which averages over the batch")
    nodes = _fuse_softmax_cross_entropy(b.nodes, model)
    used = {i for n in nodes for i in n.inputs} | {value}
    available.update({w.name: b.types[w.name] for w in model.weights if w.name in b.types})
    inputs = tuple((n, t) for n, t in available.items() if n in used and t is not None)
    borrowed = {w for n in nodes for _, w in n.weights}  # the layers an `energy` reads
    graph = Graph(b.name, inputs, tuple(nodes), (value,),
                  tuple(w for w in model.weights if w.name in borrowed), stmt.span)
    return verify(graph)


def _fuse_softmax_cross_entropy(nodes: list[Node], model: Graph) -> list[Node]:
    """cross_entropy(softmax(z), t) -> cross_entropy_logits(z, t): log-sum-exp, no 2nd softmax."""
    producers = {n.name: n for n in model.nodes}
    out = []
    for node in nodes:
        src = producers.get(node.inputs[0]) if node.inputs else None
        if (node.op == "cross_entropy" and src is not None and src.op == "softmax"
                and src.param("axis", -1) in (-1, len(src.type.shape) - 1 if src.type else -1)
                and "cross_entropy_logits" in ops.OPS):
            fused = ops.OPS["cross_entropy_logits"].hyper
            node = replace(node, op="cross_entropy_logits",
                           inputs=(src.inputs[0], *node.inputs[1:]),
                           params=tuple((k, v) for k, v in node.params if k in fused))
        out.append(node)
    return out


def lower_train(tdef: ast.TrainDef, defs: Any, models: dict[str, Graph],
                sink: ErrorSink) -> TrainSpec | None:
    """Check a train block; errors go to `sink`, and None is returned if any was found."""
    before = len(sink.errors)
    model = models.get(tdef.name)
    if model is None and tdef.name not in defs.models:
        sink.add(NndslError(f"train block '{tdef.name}' names no model", tdef.span,
                            hint=did_you_mean(tdef.name, defs.models)
                            or "name the train block after the model it trains"))
        return None
    low = TrainLowerer(tdef, model, sink)  # model None: it failed; still check the settings
    settings, loss_stmt = low.settings(tdef.body, phase=False)
    block_spans = dict(low.local)
    if "freeze" in settings:
        low.guard(lambda: low.check_freeze(settings["freeze"], low.spans["freeze"]))
    loss = low.loss_graph(loss_stmt) if loss_stmt else None
    phases = []
    for stmt in (s for s in tdef.body if isinstance(s, ast.PhaseDef)):
        phase_settings, phase_loss = low.settings(stmt.body, phase=True)
        freeze = phase_settings.pop("freeze", ())
        where = low.spans.get("freeze", stmt.span)
        low.guard(lambda freeze=freeze, where=where: low.check_freeze(freeze, where))
        graph = low.loss_graph(phase_loss) if phase_loss else None
        phases.append(Phase(stmt.name, tuple(phase_settings.items()), graph, tuple(freeze),
                            stmt.span, tuple(low.local.items())))
    if len(sink.errors) > before or model is None:
        return None
    return TrainSpec(tdef.name, tuple(settings.items()), tuple(low.targets.items()), loss,
                     tuple(phases), tdef.span, tuple(block_spans.items()))
