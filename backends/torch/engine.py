"""The torch training engine: the same graphs and update rules as the NumPy reference, run on
torch tensors (CPU or CUDA) with autograd. Data lives on the device and is batched by index.

Random arrays come from a torch generator on the device, reseeded for every use; with
`rng="reference"` they are drawn from the NumPy stream the reference engine uses (the same seed
gives the same numbers) and moved to the device, so a run can be compared with NumPy's.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np
import torch
from nndsl.backends.torch.compiled import compiled_forward
from nndsl.backends.torch.data_parallel import DataParallel
from nndsl.backends.torch.multi import (  # (importing it registers foreach updates)
    ListTable,
    gradient_added,
    penalty_total,
)
from nndsl.backends.torch.precision import LossScale, autocast
from nndsl.backends.torch.prims import make_torch_prims

from nndsl import ops
from nndsl.errors import NndslError
from nndsl.interpreter import RunResult, run
from nndsl.ir import Call, Graph
from nndsl.training.core import run_loss, step_loss, trainable


def resolve_device(device: str) -> torch.device:
    """`auto` picks CUDA when a GPU is usable, else the CPU; `cuda:N` must exist."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise NndslError(f"--device {device}: no CUDA device is available here",
                             hint="use --device cpu or --device auto")
        index = device.partition(":")[2]
        if index and (not index.isdigit() or int(index) >= torch.cuda.device_count()):
            raise NndslError(f"--device {device}: this machine has "
                             f"{torch.cuda.device_count()} CUDA device(s)",
                             hint="devices count from cuda:0")
    try:
        return torch.device(device)
    except RuntimeError as e:
        raise NndslError(f"--device {device}: {e}") from None


class _Stream:
    """The source of a table's random draws: a torch generator, or a NumPy one (reference)."""

    def __init__(self, device: torch.device, reference: bool) -> None:
        self.reference = reference
        self.torch = torch.Generator(device=device).manual_seed(0)
        self.numpy = np.random.default_rng(0)

    def reseed(self, seed: int) -> None:
        if self.reference:
            self.numpy = np.random.default_rng(seed)
        else:
            self.torch.manual_seed(seed)


class TorchEngine:
    """Gradients by torch autograd over the interpreter's torch table."""

    name = "torch"

    def __init__(self, device: str = "auto", rng: str = "device") -> None:
        self.device = resolve_device(device)
        # one training table, made once: a use only reseeds its stream
        self._stream = _Stream(self.device, rng == "reference")
        source = (lambda: self._stream.numpy) if self._stream.reference else None
        self._step_P = make_torch_prims(training=True, generator=self._stream.torch,
                                        device=self.device, numpy_source=source)
        self.P = make_torch_prims(training=False, device=self.device)
        self._lists = ListTable(self.P)  # penalties of many weights in one foreach call each
        self._trainable: dict[tuple[str, tuple[str, ...]], list[str]] = {}
        self._rules: dict[int, tuple[Call, tuple[Any, Any, dict[str, Any]]]] = {}
        self._penalty_plans: dict[tuple[int, int], tuple[Any, ...]] = {}
        self._index: tuple[Any, Any] = (None, None)  # the last batch index, and on the device
        self.parallel: DataParallel | None = None  # set by `data_parallel` in a launched run
        self.configure()

    def configure(self, precision: str = "f32", compile: bool = False) -> None:
        """A stage's step options: autocast (and fp16's loss scale), torch.compile."""
        self._autocast = autocast(precision, self.device)
        self.loss_scale: LossScale | None = LossScale() if precision == "fp16" else None
        self._forward: Callable[..., tuple[Any, RunResult]] = \
            compiled_forward() if compile else step_loss

    def data_parallel(self, rank: int, world: int, vote: Callable[[], bool]) -> DataParallel:
        """Make this engine one rank of a data-parallel run (nndsl/training/distributed.py):
        batches are shared out, gradients summed across ranks."""
        self.parallel = DataParallel(rank, world, vote)
        self._step_P = make_torch_prims(
            training=True, generator=self._stream.torch, device=self.device,
            numpy_source=(lambda: self._stream.numpy) if self._stream.reference else None,
            global_draw=self.parallel.global_draw)
        return self.parallel

    def to_backend(self, arrays: Mapping[str, Any]) -> dict[str, Any]:
        return {k: v if isinstance(v, torch.Tensor) and v.device == self.device
                else torch.as_tensor(np.asarray(v)).to(self.device) for k, v in arrays.items()}

    def to_numpy(self, arrays: Mapping[str, Any]) -> dict[str, np.ndarray]:
        return {k: v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else np.asarray(v)
                for k, v in arrays.items()}

    def to_backend_state(self, state: Mapping[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        return {k: {key: torch.as_tensor(v).to(self.device) if isinstance(v, np.ndarray) else v
                    for key, v in s.items()} for k, s in state.items()}

    def take(self, array: Any, index: np.ndarray) -> Any:
        if index is not self._index[0]:  # the trainer takes every array's rows with one index
            rows = self.parallel.take(index) if self.parallel is not None else index
            self._index = (index, torch.as_tensor(rows, device=self.device))
        if isinstance(array, torch.Tensor) and array.ndim:  # x[i]'s rows, without its dispatch
            return array.index_select(0, self._index[1])
        return array[self._index[1]]

    def table(self, seed: int) -> Any:
        self._stream.reseed(seed)
        return self._step_P

    def run(self, graph: Graph, feeds: Mapping[str, Any], weights: Mapping[str, Any], *,
            training: bool = False, seed: int = 0) -> RunResult:
        P = self.table(seed) if training else self.P
        with torch.no_grad():
            return run(graph, P, feeds, weights)

    def loss_and_grad(self, model: Graph, loss: Graph, feeds: Mapping[str, Any],
                      weights: Mapping[str, Any], frozen: tuple[str, ...], seed: int,
                      penalties: Mapping[str, list[Call]] | None = None
                      ) -> tuple[float, dict[str, Any], dict[str, Any]]:
        """The loss's gradient by autograd. A penalty whose regularizers give their gradient in
        closed form is added outside autograd, as torch's weight_decay is (on the graph it cost
        more than the rest of a small model's backward pass); any other is taken on the same
        backward pass. A penalty reads one weight, so each gradient is the reference's sum of
        loss gradient and penalty gradient."""
        P = self.table(seed)
        names = self._trainable.get((model.name, frozen))
        if names is None:
            names = self._trainable[(model.name, frozen)] = trainable(model, frozen)
        regs, traced, groups = self._penalties(penalties, names)
        leaves = {k: v.detach().requires_grad_(True) if k in names else v
                  for k, v in weights.items()}
        if self.parallel is not None:
            return self._parallel_step(model, loss, feeds, weights, leaves, names,
                                       (regs, traced, groups), P)
        value, result = self._run_loss(P, model, loss, feeds, leaves)
        taken = {k: self._penalty(regs[k], leaves[k]) for k in regs if k in traced}
        out = self._scaled_grads([value, *taken.values()], leaves, names)
        with torch.no_grad():
            closed = self._closed_penalties(groups, weights, out)
        return _summed([value, *taken.values(), *closed]), out, self._updates(result, weights)

    def _closed_penalties(self, groups: list[tuple[list[str], list[Call]]],
                          weights: Mapping[str, Any], out: dict[str, Any]) -> list[Any]:
        """The closed-form penalties' gradients added to `out`, and their values: the weights
        sharing regularizers (the train block's) go through foreach calls, one per primitive
        instead of one call per weight, or one in all where the regularizer's gradient is added
        in one (`gradient_added`: l2 as torch's weight_decay adds it). The values only enter
        the recorded loss: each group's is one number from its weights' norms where the
        regularizers have that form (`penalty_total`), else one per weight."""
        lists, values = self._lists, []
        for names, calls in groups:
            ws = [weights[k] for k in names]
            gs = [out[k] for k in names]
            total, added = penalty_total(calls, ws), gradient_added(calls, gs, ws)
            rules = [self._rule(c) for c in calls] if total is None or added is None else []
            if total is None:  # one value per weight
                values += _added((rule[0](lists, ws, **rule[2]) for rule in rules), lists.add)
            else:
                values.append(total)
            if added is None:
                added = lists.add(gs, _added((rule[1](lists, ws, **rule[2]) for rule in rules),
                                             lists.add))
            out.update(zip(names, added, strict=True))
        return values

    def _run_loss(self, P: Any, model: Graph, loss: Graph, feeds: Mapping[str, Any],
                  leaves: Mapping[str, Any]) -> tuple[Any, RunResult]:
        """The model and its loss, under autocast when the stage asks for it."""
        with self._autocast():
            return self._forward(P, model, loss, feeds, leaves)

    def _scaled_grads(self, roots: list[Any], leaves: Mapping[str, Any],
                      names: list[str]) -> dict[str, Any]:
        """`_grads`, through fp16's loss scale when there is one."""
        scale = self.loss_scale
        if scale is None:
            return self._grads(roots, leaves, names)
        return scale.unscale(self._grads([r * scale.scale for r in roots if
                                          isinstance(r, torch.Tensor)], leaves, names))

    @staticmethod
    def _updates(result: RunResult, weights: Mapping[str, Any]) -> dict[str, Any]:
        """Buffer (and recurrent state) updates, detached, in their weight's dtype (autocast
        may have computed them in a narrower one)."""
        out = {}
        for k, v in result.updates.items():
            like = weights.get(k)  # None: a recurrent state not carried yet (truncate)
            out[k] = v.detach() if not isinstance(like, torch.Tensor) or v.dtype == like.dtype \
                else v.detach().to(like.dtype)
        return out

    def _parallel_step(self, model: Graph, loss: Graph, feeds: Mapping[str, Any],
                       weights: Mapping[str, Any], leaves: dict[str, Any], names: list[str],
                       plan: tuple[dict[str, list[Call]], set[str],
                                   list[tuple[list[str], list[Call]]]], P: Any
                       ) -> tuple[float, dict[str, Any], dict[str, Any]]:
        """One rank's share of a step: the share-weighted loss gradient of its rows, summed
        over the ranks; then every penalty, once, as one process adds it (`_penalties`' plan:
        autograd for those without a closed form, `_closed_penalties` for the others)."""
        assert self.parallel is not None
        regs, traced, groups = plan
        share = self.parallel.shard.share
        if share:
            value, result = self._run_loss(P, model, loss, feeds, leaves)
            out = self._scaled_grads([value * share], leaves, names)
            updates = {k: v * share for k, v in self._updates(result, weights).items()}
            local = _float(value) * share
        else:  # more ranks than rows in this batch: this one holds none
            out = {k: torch.zeros_like(leaves[k]) for k in names}
            updates = {w.name: torch.zeros_like(weights[w.name]) for w in model.weights
                       if w.role == "buffer"}
            local = 0.0
        total = self.parallel.reduce(local, out, updates)
        with torch.no_grad():
            for k, calls in regs.items():
                if k in traced:
                    total += _float(self._penalty(calls, weights[k]))
                    out[k] = out[k] + self._traced_penalty_grad(calls, weights[k])
            total += _summed(self._closed_penalties(groups, weights, out))
        return total, out, updates

    def _traced_penalty_grad(self, calls: list[Call], w: Any) -> Any:
        """The gradient of a penalty without a closed form, by autograd on it alone."""
        with torch.enable_grad():
            leaf = w.detach().requires_grad_(True)
            (g,) = torch.autograd.grad(self._penalty(calls, leaf), [leaf])
        return g

    def value_and_grad(self, fn: Callable[[Any, dict[str, Any]], Any],
                       weights: Mapping[str, Any], wrt: list[str], seed: int
                       ) -> tuple[float, dict[str, Any]]:
        P = self.table(seed)
        leaves = {k: v.detach().requires_grad_(True) if k in wrt else v
                  for k, v in weights.items()}
        value = fn(P, leaves)
        return _float(value), self._grads([value], leaves, wrt)

    def value_grads(self, model: Graph, loss: Graph, feeds: Mapping[str, Any],
                    weights: Mapping[str, Any], seed: int, names: list[str]
                    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """One forward pass with every float weight tracked and one backward pass to the
        values asked for; nothing leaves the device."""
        P = self.table(seed)
        leaves = {k: v.detach().requires_grad_(True) if v.is_floating_point() else v
                  for k, v in weights.items()}
        value, result = run_loss(P, model, loss, feeds, leaves)
        found = {n: result.env[n] for n in names}
        grads = self._grads([value], found, [n for n, v in found.items()
                                             if isinstance(v, torch.Tensor) and v.requires_grad])
        return ({n: v.detach() for n, v in found.items()},
                {n: grads[n] if n in grads else torch.zeros_like(v) for n, v in found.items()})

    def _grads(self, roots: list[Any], leaves: Mapping[str, Any],
               names: list[str]) -> dict[str, Any]:
        """d(sum of roots)/d leaf for each named leaf; zeros where nothing reaches it."""
        roots = [t for t in roots if isinstance(t, torch.Tensor) and t.requires_grad]
        grads: Any = [None] * len(names)
        if roots and names:  # else nothing trainable reaches the value
            grads = torch.autograd.grad(roots, [leaves[k] for k in names], allow_unused=True)
        return {k: g if g is not None else torch.zeros_like(leaves[k])
                for k, g in zip(names, grads, strict=True)}

    def _penalties(self, penalties: Mapping[str, list[Call]] | None, names: list[str]
                   ) -> tuple[dict[str, list[Call]], set[str], list[tuple[list[str], list[Call]]]]:
        """The penalties on trainable weights, those without a closed-form gradient (taken by
        autograd), and the others grouped by their regularizers: fixed for a stage, so worked
        out on its first step only."""
        key = (id(penalties), id(names))
        found = self._penalty_plans.get(key)
        if found is None or found[0] is not penalties or found[1] is not names:
            regs = {k: calls for k, calls in (penalties or {}).items() if k in names}
            traced = {k for k, calls in regs.items()
                      if not all(self._rule(c)[1] for c in calls)}
            groups: dict[tuple[int, ...], tuple[list[str], list[Call]]] = {}
            for k, calls in regs.items():
                if k not in traced:
                    groups.setdefault(tuple(map(id, calls)), ([], calls))[0].append(k)
            found = self._penalty_plans[key] = (penalties, names, regs, traced,
                                                list(groups.values()))
        return found[2], found[3], found[4]

    def _rule(self, call: Call) -> tuple[Any, Any, dict[str, Any]]:
        """A regularizer call's (penalty, closed-form gradient or None, hyper-parameters),
        looked up once per call object (hashing a Call walks its arguments)."""
        found = self._rules.get(id(call))
        if found is None or found[0] is not call:
            opdef = ops.get(call.name, "regularizer", call.span)
            found = self._rules[id(call)] = (call, (opdef.compute, opdef.grad,
                                                    dict(call.kwargs)))
        return found[1]

    def _penalty(self, calls: list[Call], w: Any, part: int = 0) -> Any:
        """The penalty on w (part 0) or its closed-form gradient (part 1), summed over calls."""
        rules = [self._rule(c) for c in calls]
        return _added(rule[part](self.P, w, **rule[2]) for rule in rules)

    def nonfinite(self, arrays: Mapping[str, Any], *, scratch: bool = False) -> str | None:
        """One multi-tensor pass and one read for all arrays (`_scratch_finite` for a step's
        gradients, else `_maybe_finite`); only when that finds a NaN or an infinity are they
        looked at one by one, exactly, for the name."""
        values = list(arrays.values())
        if not values or (_scratch_finite(values) if scratch else _maybe_finite(values)):
            return None
        return next((k for k, v in arrays.items() if not _finite([v])), None)

    def predict(self, model: Graph, feeds: Mapping[str, np.ndarray],
                weights: Mapping[str, Any]) -> dict[str, np.ndarray]:
        inputs = self.to_backend({n: feeds[n] for n, _ in model.inputs})
        with torch.no_grad():
            result = run(model, self.P, inputs, weights)
        return self.to_numpy(result.env)

    def scalar(self, x: Any) -> float:
        return _float(x)


def _scratch_finite(values: list[torch.Tensor]) -> bool:
    """Whether every element is finite, for arrays the engine made and may write: torch's
    mixed-precision check (torch._amp_foreach_non_finite_check_and_unscale_), one pass over
    every array that raises a flag on a NaN or an infinity and, with an unscale factor of 1,
    stores each element back as it was. About 3 µs for the digits MLP's six gradients against
    11 for the norms of `_maybe_finite`, and exact: no overflow to tell apart. Arrays it cannot
    write in place (a view sharing elements, a leaf that requires grad, mixed dtypes or
    devices) take `_maybe_finite`."""
    first = values[0]
    dtype, device = first.dtype, first.device
    if dtype not in _CHECKED or device.type not in ("cpu", "cuda") or not all(
            v.dtype is dtype and v.device == device and v.is_contiguous() and
            not v.requires_grad and not v.is_inference() for v in values):
        return _maybe_finite(values)
    found = torch.zeros(1, device=device)
    torch._amp_foreach_non_finite_check_and_unscale_(values, found, _unit(device))
    return not found.item()


_CHECKED = (torch.float32, torch.float64, torch.float16, torch.bfloat16)
_UNITS: dict[torch.device, torch.Tensor] = {}


def _unit(device: torch.device) -> torch.Tensor:
    """The unscale factor 1.0 (float32, as the check reads it) on `device`."""
    found = _UNITS.get(device)
    if found is None:
        found = _UNITS[device] = torch.ones(1, device=device)
    return found


def _maybe_finite(values: list[torch.Tensor]) -> bool:
    """True only when every element is finite: the sum of the tensors' 2-norms (one foreach
    call) is NaN or infinite when any element is. A norm of finite values can overflow too
    (above ~1e19 in float32): then this says False and the caller's exact check decides."""
    dtype = values[0].dtype
    if dtype not in (torch.float32, torch.float64) or any(v.dtype != dtype for v in values):
        return len({v.dtype for v in values}) == 1 and _finite(values)
    return math.isfinite(float(torch.stack(torch._foreach_norm(values)).sum()))


def _finite(values: list[torch.Tensor]) -> bool:
    """Whether every element is finite. A float64 sum of float32 (or narrower) values cannot
    overflow, so it is finite exactly when they all are; float64 values are multiplied by 0
    first, which maps each finite value to 0 and keeps NaN and infinity non-finite."""
    flat = torch.cat([v.reshape(-1) for v in values]) if len(values) > 1 else \
        values[0].reshape(-1)
    if flat.dtype == torch.float64:
        flat = flat * 0.0
    return math.isfinite(float(flat.sum(dtype=torch.float64)))


def _summed(values: list[Any]) -> float:
    """The loss and its penalties summed in float64 in the reference's order; on a GPU with
    one transfer to the host for all of them (not one wait per penalty). On the CPU there is
    nothing to wait for, and reading each number is cheaper than stacking them."""
    device = next((v.device for v in values if isinstance(v, torch.Tensor)), None)
    if len(values) == 1 or device is None or device.type == "cpu":
        total = 0.0
        for v in values:
            total += _float(v)
        return total
    tensors = [v.detach().reshape(()).to(torch.float64) if isinstance(v, torch.Tensor) else
               torch.tensor(float(v), dtype=torch.float64, device=device) for v in values]
    total = 0.0
    for x in torch.stack(tensors).tolist():
        total += x
    return total


def _added(xs: Iterable[Any], add: Callable[[Any, Any], Any] = operator.add) -> Any:
    """x1 + x2 + ... (sum() would start with 0 + x1: one more kernel for nothing)."""
    items = iter(xs)
    total = next(items)
    for x in items:
        total = add(total, x)
    return total


def _float(x: Any) -> float:
    return float(x.detach()) if isinstance(x, torch.Tensor) else float(x)
