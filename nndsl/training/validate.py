"""`nndsl check` refuses what `nndsl train` could not run, at the line: each stage's trainer
must run on this spec (its models, its loss), every setting must be read by a trainer that
runs, and every monitored series must be one the run records."""

from __future__ import annotations

from typing import Any

from nndsl import ops
from nndsl.errors import ErrorSink, NndslError, Span
from nndsl.ir import Graph, Phase, TrainSpec
from nndsl.training.registry import ALWAYS_READ, CheckContext, Trainer
from nndsl.training.stages import Stage, stages


def _trainer(stage: Stage) -> Trainer:
    call = stage.trainer_call
    made: Trainer = ops.get(call.name, "trainer", call.span).compute(**dict(call.kwargs))
    return made


def _setting_errors(spec: TrainSpec, phases: list[tuple[Phase | None, Stage, Trainer]]
                    ) -> list[NndslError]:
    """A setting the trainer of its stage (or of no stage, for the block's) never reads."""
    errors = []
    block = {k for k, _ in spec.settings} | ({"loss"} if spec.loss is not None else set())
    used: set[str] = set()
    for phase, stage, trainer in phases:
        own = ({k for k, _ in phase.settings} | ({"loss"} if phase.loss is not None else set())
               if phase is not None else block)
        for key in own - ALWAYS_READ - trainer.reads:
            where = phase.where(key) if phase is not None else spec.where(key)
            errors.append(_unread(key, stage, where))
        used |= trainer.reads | ALWAYS_READ
    if spec.phases:
        for key in block - used:
            errors.append(_unread(key, None, spec.where(key)))
    return sorted(errors, key=lambda e: (e.span.line, e.span.column) if e.span else (0, 0))


def _unread(key: str, stage: Stage | None, where: Span | None) -> NndslError:
    if stage is None:
        return NndslError(f"no phase's trainer reads '{key}'", where,
                          hint="remove it, or set it in a phase whose trainer uses it")
    name = stage.trainer_call.name
    return NndslError(f"trainer '{name}' does not use '{key}'", where,
                      hint=f"remove it; {name} reads: "
                      + (", ".join(sorted(_reads(stage))) or "no train settings"))


def _reads(stage: Stage) -> set[str]:
    return set(_trainer(stage).reads)


def _stage_errors(spec: TrainSpec, phase: Phase | None, stage: Stage, trainer: Trainer,
                  models: dict[str, Graph]) -> list[NndslError]:
    errors = []
    owner = phase or spec
    if trainer.needs_loss and stage.loss is None:
        what = f"phase '{stage.name}'" if phase is not None else f"train block '{spec.model}'"
        errors.append(NndslError(f"{what} has no loss", owner.span,
                                 hint="set `loss = ...`" + (" in the phase or in the train "
                                                             "block" if phase else "")))
    ctx = CheckContext(spec, stage, models, stage.trainer_call.span or owner.span)
    try:
        _check_model_names(stage, ctx)
        trainer.check(ctx)
    except NndslError as e:
        e.span = e.span or ctx.call_span
        errors.append(e)
    metrics = stage.get("metrics") or ()
    if metrics and not spec.targets:
        errors.append(NndslError("metrics compare the model's output with a target; this "
                                 "block declares none", owner.where("metrics"),
                                 hint="declare one: `target y: [batch]`"))
    elif metrics and spec.model in models:
        errors += _metric_errors(spec, owner, metrics, models[spec.model])
    return errors + _monitor_errors(spec, owner, stage, trainer)


def _metric_errors(spec: TrainSpec, owner: TrainSpec | Phase, metrics: tuple[Any, ...],
                   model: Graph) -> list[NndslError]:
    """Each metric must take the model's first output and the first target (roc_auc one
    binary score, accuracy classes or 0/1, top_k_accuracy more classes than k), as the
    evaluation will feed them; and no two entries may record the same column."""
    from nndsl.ops.metrics import metric_call, metric_column

    out = model.types()[model.outputs[0]]
    target = spec.targets[0][1]
    errors, columns = [], set()
    for item in metrics:
        call = metric_call(item)
        where = call.span or owner.where("metrics")
        column = metric_column(call)
        if column in columns:
            errors.append(NndslError(f"metric '{column}' is listed twice", where,
                                     hint="each metric is recorded once; remove one"))
        columns.add(column)
        try:
            ops.get(call.name, "metric").output_type(out, target, **dict(call.kwargs))
        except NndslError as e:
            errors.append(NndslError(f"metric '{call}' cannot score output "
                                     f"'{model.outputs[0]}' against target "
                                     f"'{spec.targets[0][0]}': {e.message}", where,
                                     expected=e.expected, received=e.received, hint=e.hint))
    return errors


def _check_model_names(stage: Stage, ctx: CheckContext) -> None:
    """Every trainer parameter typed as a model name must name a model of the spec."""
    from nndsl.ops.registry import describe

    call = stage.trainer_call
    for param in ops.get(call.name, "trainer").params:
        value = call.get(param.name)
        if value is not None and describe(param.annotation) == "a model name":
            ctx.model_named(value, f"{call.name}'s {param.name}")


def _monitor_errors(spec: TrainSpec, owner: TrainSpec | Phase, stage: Stage,
                    trainer: Trainer) -> list[NndslError]:
    rule = stage.get("early_stop")
    if rule is None:
        return []
    monitor = rule.get("monitor", "val_loss")
    held_out = bool(spec.get("split", 0.0))
    from nndsl.ops.metrics import metric_column

    metrics = tuple(metric_column(m) for m in stage.get("metrics") or ())
    recorded = {"loss", *metrics, *trainer.records}
    if held_out:
        recorded |= {"val_loss", *(f"val_{m}" for m in metrics)}
    if monitor in recorded:
        return []
    where = rule.span or owner.where("early_stop")
    if monitor.startswith("val_") and not held_out:
        return [NndslError(f"early_stop monitors '{monitor}', but no validation rows are held "
                           "out", where, hint="set `split = 0.2` (a fraction of the rows), or "
                           "monitor `loss`")]
    return [NndslError(f"early_stop monitors '{monitor}', which this run does not record",
                       where, expected=", ".join(sorted(recorded)), received=monitor)]


def validate_train(spec: TrainSpec, models: dict[str, Graph], sink: ErrorSink) -> None:
    """Add every reason `nndsl train` could not run this block to `sink`."""
    plan: list[tuple[Phase | None, Stage, Trainer]] = []
    for phase, stage in zip(spec.phases or (None,), stages(spec), strict=True):
        try:
            plan.append((phase, stage, _trainer(stage)))
        except NndslError as e:
            e.span = e.span or stage.trainer_call.span
            sink.add(e)
    for error in _setting_errors(spec, plan):
        sink.add(error)
    for phase, stage, trainer in plan:
        for error in _stage_errors(spec, phase, stage, trainer, models):
            sink.add(error)
