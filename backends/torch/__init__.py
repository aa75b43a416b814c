"""The PyTorch backend: training on CPU or CUDA with autograd. It registers itself here without
importing torch; the engine module (and torch) are imported when a run uses it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from nndsl.backend import Backend, Engine, register_backend

if TYPE_CHECKING:
    import numpy as np


def _engine(device: str, rng: str) -> Engine:
    from nndsl.backends.torch.engine import TorchEngine

    return TorchEngine(device, rng)


def _forward(graph: Any, feeds: Mapping[str, Any],
             weights: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """The same interpreter on the torch table (CPU, inference mode)."""
    import numpy as np
    import torch
    from nndsl.backends.torch.prims import make_torch_prims

    from nndsl.interpreter import run

    def tensors(arrays: Mapping[str, Any]) -> dict[str, Any]:
        return {k: torch.tensor(np.asarray(v)) for k, v in arrays.items()}

    with torch.no_grad():
        env = run(graph, make_torch_prims(training=False), tensors(feeds), tensors(weights)).env
    return {name: env[name].detach().cpu().numpy() if isinstance(env[name], torch.Tensor)
            else np.asarray(env[name]) for name in graph.outputs}


def _gradients(objective: Any, weights: Mapping[str, Any], names: list[str]) -> list[np.ndarray]:
    """torch autograd through the same interpreter and objective (inference mode)."""
    import numpy as np
    import torch
    from nndsl.backends.torch.prims import make_torch_prims

    leaves = {k: torch.tensor(np.asarray(v), requires_grad=k in names)
              for k, v in weights.items()}
    value = objective(make_torch_prims(training=False), leaves)
    if not isinstance(value, torch.Tensor) or not value.requires_grad:
        return [np.zeros(np.shape(weights[k])) for k in names]
    grads = torch.autograd.grad(value, [leaves[k] for k in names], allow_unused=True)
    return [np.zeros(np.shape(weights[k])) if g is None else g.numpy()
            for k, g in zip(names, grads, strict=True)]


register_backend(Backend(
    "torch", "PyTorch on the CPU or a CUDA device, gradients by autograd", engine=_engine,
    forward=_forward, gradients=_gradients, devices=("cpu", "cuda"), differentiable=True,
    distributed=True,
    is_default=True, order=10))
