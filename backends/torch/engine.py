"""The torch training engine: the same graphs and update rules as the NumPy reference, run on
torch tensors (CPU or CUDA) with autograd. Data lives on the device and is batched by index."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from nndsl.backends.numpy.autodiff import run_loss, trainable
from nndsl.backends.torch.prims import make_torch_prims

from nndsl import ops
from nndsl.interpreter import run
from nndsl.ir import Call, Graph


def resolve_device(device: str) -> torch.device:
    """`auto` picks CUDA when a GPU is usable, else the CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        from nndsl.errors import NndslError

        raise NndslError("--device cuda: no CUDA device is available here",
                         hint="use --device cpu or --device auto")
    return torch.device(device)


class TorchEngine:
    """Gradients by torch autograd over the interpreter's torch table."""

    def __init__(self, model: Graph, device: str = "auto") -> None:
        self.model = model
        self.device = resolve_device(device)
        self.P = make_torch_prims(training=True, generator=self._generator(0), device=self.device)

    def _generator(self, seed: int) -> torch.Generator:
        return torch.Generator(device=self.device).manual_seed(seed)

    def to_backend(self, arrays: dict[str, np.ndarray]) -> dict[str, Any]:
        return {k: torch.as_tensor(np.asarray(v)).to(self.device) for k, v in arrays.items()}

    def to_numpy(self, arrays: dict[str, Any]) -> dict[str, np.ndarray]:
        return {k: v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else np.asarray(v)
                for k, v in arrays.items()}

    def to_backend_state(self, state: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        return {k: {key: torch.as_tensor(v).to(self.device) if isinstance(v, np.ndarray) else v
                    for key, v in s.items()} for k, s in state.items()}

    def take(self, array: Any, index: np.ndarray) -> Any:
        return array[torch.as_tensor(index, device=self.device)]

    def loss_and_grad(self, loss: Graph, feeds: dict[str, Any], weights: dict[str, Any],
                      frozen: tuple[str, ...], seed: int) -> tuple[float, dict, dict]:
        P = make_torch_prims(training=True, generator=self._generator(seed), device=self.device)
        names = trainable(self.model, frozen)
        leaves = {k: v.detach().requires_grad_(True) if k in names else v
                  for k, v in weights.items()}
        value, result = run_loss(P, self.model, loss, feeds, leaves)
        grads: Any = [None] * len(names)
        if value.requires_grad and names:  # else nothing trainable reaches the loss
            grads = torch.autograd.grad(value, [leaves[k] for k in names], allow_unused=True)
        out = {k: g if g is not None else torch.zeros_like(leaves[k])
               for k, g in zip(names, grads, strict=True)}
        updates = {k: v.detach() for k, v in result.updates.items()}
        return float(value.detach()), out, updates

    def penalty_and_grad(self, calls: list[Call], w: Any) -> tuple[float, Any]:
        leaf = w.detach().requires_grad_(True)
        total = sum(ops.get(c.name, "regularizer", c.span).compute(self.P, leaf, **dict(c.kwargs))
                    for c in calls)
        (grad,) = torch.autograd.grad(total, [leaf])
        return float(total.detach()), grad

    def nonfinite(self, arrays: dict[str, Any]) -> str | None:
        """One device sync for all arrays, not one per array."""
        if not arrays:
            return None
        finite = torch.stack([torch.isfinite(v).all() for v in arrays.values()]).cpu()
        return None if bool(finite.all()) else list(arrays)[int(finite.int().argmin())]

    def predict(self, feeds: dict[str, np.ndarray], weights: dict[str, Any]) -> dict[str, Any]:
        P = make_torch_prims(training=False, device=self.device)
        inputs = self.to_backend({n: feeds[n] for n, _ in self.model.inputs})
        with torch.no_grad():
            result = run(self.model, P, inputs, weights)
        return self.to_numpy(result.env)
