"""`compile = true` (or `nndsl train --compile`): the training step's forward pass and loss,
the step plan (nndsl/training/step_plan.py), through torch.compile.

torch.compile traces the plan's straight-line calls into one graph and generates fused
kernels for it (inductor: C++ on the CPU, Triton on CUDA); autograd runs the generated
backward. The first steps pay for tracing and code generation (seconds to tens of seconds,
measured in bench case 12), and a batch of another size (an epoch's last) compiles once more
with a dynamic batch dimension. It is off by default: on the CPU the benchmark's small models
spend their time in kernel launches that compilation does not remove.

Random draws inside the forward pass (dropout) still come from the engine's generator,
reseeded for every step. The generated kernels round differently: a compiled digits_mlp run's
losses agreed with the plain run's to about 1e-7 relative.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch

from nndsl.interpreter import RunResult
from nndsl.ir import Graph
from nndsl.training.step_plan import loss_plan


def compiled_forward() -> Callable[..., tuple[Any, RunResult]]:
    """run_loss's signature, compiled once per (model, loss, table)."""
    compiled: dict[tuple[int, int, int], tuple[Any, Callable[..., Any]]] = {}

    def forward(P: Any, model: Graph, loss: Graph, feeds: Mapping[str, Any],
                weights: Mapping[str, Any]) -> tuple[Any, RunResult]:
        key = (id(model), id(loss), id(P))
        found = compiled.get(key)
        if found is None:
            plan = loss_plan(model, loss, P)

            def step(feeds: dict[str, Any], weights: dict[str, Any]) -> Any:
                value, result = plan.run(P, feeds, weights)
                return value, result.env, result.updates

            found = compiled[key] = ((model, loss, P), torch.compile(step, dynamic=None))
        value, env, updates = found[1](dict(feeds), dict(weights))
        return value, RunResult(env, updates)

    return forward
