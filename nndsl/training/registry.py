"""Trainers: registered strategies, one module each (backprop.py, hebbian.py, ...).

A trainer is a frozen, keyword-only dataclass registered with `@trainer(name)`: its fields are
the parameters a spec gives it (`adversarial(generator=G, k=2)`), read from the signature as
every op's are (did-you-mean, docs generated from the registry). Its class attributes declare
what it needs, so `nndsl check` refuses what `nndsl train` could not run, at the line:

- `reads`: the train settings it uses (any other setting in its stage is an error);
- `backends`: the engines it runs on; `data_parallel`: whether it can run on several ranks;
- `needs_loss`: whether its stage must have `loss = ...`;
- `gradient_free`: whether it trains models whose ops have no gradient (named in the error
  backprop gives for such a model).

It validates its own arguments in `__post_init__` (a positioned error at the call) and its
models in `check`; `data` says which arrays it reads; `run` trains one stage through a
`Session`, giving the orchestration its checkpoint state as `Position`s.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from nndsl.errors import NndslError, Span
from nndsl.ir import Graph, TensorType, TrainSpec
from nndsl.ops.registry import op

if TYPE_CHECKING:
    from nndsl.training.session import Position, Session
    from nndsl.training.stages import Stage

ALWAYS_READ = frozenset({"data", "seed", "split", "trainer", "freeze"})  # the run's own


@dataclass(frozen=True)
class CheckContext:
    """What a trainer's `check` sees: the block, the stage it runs, the program's models."""

    spec: TrainSpec
    stage: Stage
    models: dict[str, Graph]
    call_span: Span | None

    @property
    def model(self) -> Graph:
        return self.models[self.spec.model]

    def model_named(self, name: str, role: str) -> Graph:
        from nndsl.errors import did_you_mean

        if name not in self.models:
            raise NndslError(f"{role} '{name}' names no model of this spec", self.call_span,
                             hint=did_you_mean(name, self.models)
                             or f"models: {', '.join(self.models)}")
        return self.models[name]


@dataclass(frozen=True, kw_only=True)
class Trainer:
    """The base of every registered trainer."""

    reads: ClassVar[frozenset[str]] = frozenset()
    backends: ClassVar[tuple[str, ...]] = ("numpy", "torch")
    data_parallel: ClassVar[bool] = False
    needs_loss: ClassVar[bool] = False
    gradient_free: ClassVar[bool] = False  # trains models whose ops have no gradient
    records: ClassVar[frozenset[str]] = frozenset()  # its own metrics.csv columns

    def check(self, ctx: CheckContext) -> None:
        """Positioned errors for models this trainer cannot train (called by `nndsl check`)."""

    def models(self) -> tuple[str, ...]:
        """Models it trains besides the block's own (a GAN's discriminator)."""
        return ()

    def data(self, ctx: CheckContext) -> dict[str, TensorType]:
        """The data arrays it reads, by name: the model's inputs and the block's targets."""
        return {**dict(ctx.model.inputs), **dict(ctx.spec.targets)}

    def exports(self) -> tuple[str, ...]:
        """Models exported beside model.onnx (each as NAME.onnx)."""
        return ()

    def run(self, session: Session, stage: Stage, index: int, start: Position | None) -> None:
        raise NotImplementedError

    def check_state(self, position: Position, models: Mapping[str, Graph]) -> None:
        """Refuse checkpointed state this trainer would misread, before a resume starts
        (raise `checkpoint_schema.Damaged(field, value, expected)`). The record's generic parts
        (position, generator, history, finite numbers) are checked already; the default checks
        that slots named after weights hold arrays of the weight's shape and dtype."""
        from nndsl.training.checkpoint_schema import check_weight_slots

        check_weight_slots(position.state, models)


TRAINERS: dict[str, type[Trainer]] = {}


def trainer(name: str, **fields: Any) -> Callable[[type[Trainer]], type[Trainer]]:
    """Register a Trainer subclass as trainer `name` (also in the op registry, kind `trainer`,
    so specs bind its arguments as they bind any call's)."""

    def register(cls: type[Trainer]) -> type[Trainer]:
        if name in TRAINERS:
            raise ValueError(f"trainer {name!r} is defined twice")
        TRAINERS[name] = cls
        op(name, "trainer", **fields)(cls)
        return cls

    return register
