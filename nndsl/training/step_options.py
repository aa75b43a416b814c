"""How a training step runs, beyond what it computes: `precision = f32 | bf16 | fp16` (autocast,
backends/torch/precision.py) and `compile = true` (torch.compile, backends/torch/compiled.py).
Both are the torch engine's; asked of another backend they are an error at the setting, before
anything is written."""

from __future__ import annotations

from typing import Any

from nndsl.errors import NndslError
from nndsl.ir import TrainSpec
from nndsl.training.stages import Stage

# setting -> (whether a value asks for torch, what it means)
TORCH_ONLY = {
    "precision": (lambda v: v != "f32", "mixed precision (torch.autocast)"),
    "compile": (lambda v: bool(v), "torch.compile"),
}


def check_backend(spec: TrainSpec, backend: str) -> None:
    """Refuse, at the setting, a step option the backend cannot honour."""
    if backend == "torch":
        return
    owners: list[Any] = [spec, *spec.phases]
    for owner in owners:
        settings = dict(owner.settings)
        for key, (asks, meaning) in TORCH_ONLY.items():
            if key in settings and asks(settings[key]):
                value = str(settings[key]).lower()
                raise NndslError(f"`{key} = {value}` needs the torch backend ({meaning}); "
                                 f"this run uses {backend}", owner.where(key),
                                 hint="train with --backend torch, or remove the setting")


def configure(engine: Any, stage: Stage) -> None:
    """Set the engine's step options for a stage (every stage sets them: a phase without them
    runs in float32, uncompiled)."""
    configure_engine = getattr(engine, "configure", None)
    if configure_engine is not None:
        configure_engine(precision=stage.get("precision", "f32"),
                         compile=bool(stage.get("compile", False)))


def reset(engine: Any) -> None:
    """Back to the plain float32 step (a stage's options end with it)."""
    configure_engine = getattr(engine, "configure", None)
    if configure_engine is not None:
        configure_engine()


def forced_compile(program: Any, model: str | None) -> Any:
    """The program with `compile = true` in the train block `nndsl train --compile` runs."""
    from dataclasses import replace

    from nndsl.training.run import pick_train

    spec = pick_train(program, model)
    settings = tuple((k, v) for k, v in spec.settings if k != "compile") + (("compile", True),)
    trains = tuple(replace(t, settings=settings) if t is spec else t for t in program.trains)
    return replace(program, trains=trains)
