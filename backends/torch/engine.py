"""The torch training engine: the same graphs and update rules as the NumPy reference, run on
torch tensors (CPU or CUDA) with autograd. Data lives on the device and is batched by index."""

from __future__ import annotations

from collections.abc import Iterable
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
        # one table per mode, made once: a step only reseeds the generator of its forward pass
        self._step_rng = self._generator(0)
        self._step_P = make_torch_prims(training=True, generator=self._step_rng,
                                        device=self.device)
        self._inference_P = make_torch_prims(training=False, device=self.device)
        self._trainable: dict[tuple[str, ...], list[str]] = {}
        self._rules: dict[Call, tuple[Any, Any, dict[str, Any]]] = {}
        self._index: tuple[Any, Any] = (None, None)  # the last batch index, and on the device

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
        if index is not self._index[0]:  # the trainer takes every array's rows with one index
            self._index = (index, torch.as_tensor(index, device=self.device))
        return array[self._index[1]]

    def loss_and_grad(self, loss: Graph, feeds: dict[str, Any], weights: dict[str, Any],
                      frozen: tuple[str, ...], seed: int,
                      penalties: dict[str, list[Call]] | None = None) -> tuple[float, dict, dict]:
        """The loss's gradient by autograd. A penalty whose regularizers give their gradient in
        closed form is added outside autograd, as torch's weight_decay is (on the graph it cost
        more than the rest of a small model's backward pass); any other is taken on the same
        backward pass. A penalty reads one weight, so each gradient is the reference's sum of
        loss gradient and penalty gradient."""
        self._step_rng.manual_seed(seed)  # the same stream as a fresh generator of that seed
        names = self._trainable.get(frozen)
        if names is None:
            names = self._trainable[frozen] = trainable(self.model, frozen)
        regs = {k: calls for k, calls in (penalties or {}).items() if k in names}
        traced = {k for k, calls in regs.items() if not all(self._rule(c)[1] for c in calls)}
        leaves = {k: v.detach().requires_grad_(True) if k in names else v
                  for k, v in weights.items()}
        value, result = run_loss(self._step_P, self.model, loss, feeds, leaves)
        taken = {k: self._penalty(regs[k], leaves[k]) for k in regs if k in traced}
        roots = [t for t in (value, *taken.values())
                 if isinstance(t, torch.Tensor) and t.requires_grad]
        grads: Any = [None] * len(names)
        if roots and names:  # else nothing trainable reaches the loss
            grads = torch.autograd.grad(roots, [leaves[k] for k in names], allow_unused=True)
        out = {k: g if g is not None else torch.zeros_like(leaves[k])
               for k, g in zip(names, grads, strict=True)}
        total = _float(value)
        with torch.no_grad():
            for k, calls in regs.items():  # the reference's order, summed in float64
                total += _float(taken[k] if k in traced else self._penalty(calls, weights[k]))
                if k not in traced:
                    out[k] = out[k] + self._penalty(calls, weights[k], part=1)
        return total, out, {k: v.detach() for k, v in result.updates.items()}

    def _rule(self, call: Call) -> tuple[Any, Any, dict[str, Any]]:
        """A regularizer call's (penalty, closed-form gradient or None, hyper-parameters)."""
        rule = self._rules.get(call)
        if rule is None:
            opdef = ops.get(call.name, "regularizer", call.span)
            rule = self._rules[call] = (opdef.compute, opdef.grad, dict(call.kwargs))
        return rule

    def _penalty(self, calls: list[Call], w: Any, part: int = 0) -> Any:
        """The penalty on w (part 0) or its closed-form gradient (part 1), summed over calls."""
        return _added(self._rule(c)[part](self.P, w, **self._rule(c)[2]) for c in calls)

    def nonfinite(self, arrays: dict[str, Any]) -> str | None:
        """One concatenation, one sum and one device sync for all arrays (of one dtype); only
        when that finds a NaN or infinity are they looked at one by one, for the name."""
        values = list(arrays.values())
        if not values or (len({v.dtype for v in values}) == 1 and _finite(values)):
            return None
        return next((k for k, v in arrays.items() if not _finite([v])), None)

    def predict(self, feeds: dict[str, np.ndarray], weights: dict[str, Any]) -> dict[str, Any]:
        inputs = self.to_backend({n: feeds[n] for n, _ in self.model.inputs})
        with torch.no_grad():
            result = run(self.model, self._inference_P, inputs, weights)
        return self.to_numpy(result.env)


def _finite(values: list[torch.Tensor]) -> bool:
    """Whether every element is finite. A float64 sum of float32 (or narrower) values cannot
    overflow, so it is finite exactly when they all are; float64 values are multiplied by 0
    first, which maps each finite value to 0 and keeps NaN and infinity non-finite."""
    flat = torch.cat([v.reshape(-1) for v in values]) if len(values) > 1 else \
        values[0].reshape(-1)
    if flat.dtype == torch.float64:
        flat = flat * 0.0
    return bool(torch.isfinite(flat.sum(dtype=torch.float64)))


def _added(xs: Iterable[Any]) -> Any:
    """x1 + x2 + ... (sum() would start with 0 + x1: one more kernel for nothing)."""
    items = iter(xs)
    total = next(items)
    for x in items:
        total = total + x
    return total


def _float(x: Any) -> float:
    return float(x.detach()) if isinstance(x, torch.Tensor) else float(x)
