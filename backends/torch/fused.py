"""adam in torch.optim.Adam(fused=True)'s kernel: one pass over each weight that reads the
weight, its gradient and both moments once and writes them once, instead of seven kernels
that each read and write whole tensors (on the CPU less than half the time, the weights' copies
below included: 32–40 against 96–103 µs a step for the digits MLP's six weights).

The kernel computes m <- beta1 m + (1 - beta1) g, v <- beta2 v + (1 - beta2) g², and
w <- w - (lr / (1 - beta1^t)) m / (sqrt(v) / sqrt(1 - beta2^t) + eps): the rule of
nndsl/ops/optimizers.py with its roundings in another order (within one unit in the last
place of the reference per step, as the foreach kernels it replaces were). Every weight is
updated by the same per-tensor kernel whether it comes alone or in a list, so the multi-tensor
update equals the per-weight one bit for bit.

The kernel writes in place. A weight is written where it lies only when nothing else can see
it change: a tensor this module returned (never one a caller made, which may share memory with
its arrays: `torch.as_tensor` of a NumPy array does), held by nothing but the list it came in
(the caller hands it over, `nndsl/training/multi.py`), with no view, NumPy array or autograd
record of its memory. Any other weight is copied first (the diagnostics keep the old weights
for their update ratios, a caller may keep what it passed in). The copies cost the digits
MLP's training loop 5% of its time and the CNN's 8% (interleaved A/B runs). The moments are
copied too, unless this module made them (`Moments`, the state a call returns): those only the
optimizer holds, so the next step advances them in place. A state from anywhere else (a
checkpoint's arrays, a copy) is never written.
"""

from __future__ import annotations

import sys
import weakref
from typing import Any

import torch

DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)
DEVICES = ("cpu", "cuda")


# the weights this module returned, by id (a tensor has no hash of its own)
_RETURNED: weakref.WeakValueDictionary[int, torch.Tensor] = weakref.WeakValueDictionary()


def _references(ws: list[Any], i: int) -> int:
    """References to ws[i] as `sys.getrefcount` sees them from here: the list's, this frame's
    name's and the call's argument's, as far as the interpreter counts the last two (Python
    3.14 borrows some references on its stack, and counts fewer)."""
    w = ws[i]
    return sys.getrefcount(w)


# what `_references` reads for a tensor held by its list alone, measured rather than assumed:
# a holder anywhere else adds one to it on every Python version
_ONLY_THE_LIST = _references([torch.empty(0)], 0)


def _writable(ws: list[Any], i: int) -> bool:
    """Whether ws[i] may be updated where it lies: referred to by the list only (no name,
    container, view or autograd record; counted before this frame names it), this module's own
    (`_RETURNED`), and not shared with another tensor or a NumPy array (its storage held by it
    alone, the probe's reference aside)."""
    if _references(ws, i) != _ONLY_THE_LIST:
        return False
    w = ws[i]
    return _RETURNED.get(id(w)) is w and w._use_count() == 1 and not w.requires_grad and \
        torch._C._storage_Use_Count(w.untyped_storage()._cdata) == 2


class Moments(dict):  # type: ignore[type-arg]
    """{"m", "v"} as this module returns them: tensors nothing but the optimizer's state holds,
    contiguous and shaped like their weight."""


def _restored(x: Any, w: Any) -> bool:
    """A moment the kernel can read beside `w`."""
    return isinstance(x, torch.Tensor) and x.dtype is w.dtype and x.device == w.device and \
        x.shape == w.shape


def adam(ws: list[Any], gs: list[Any], states: list[dict[str, Any]], rate: float, t: int, *,
         beta1: float, beta2: float, eps: float, eps_inside: bool
         ) -> tuple[list[Any], list[dict[str, Any]]] | None:
    """The updated weights and states, or None where the fused kernel does not apply (the
    caller's kernels do then): eps outside the root, tensors of one floating dtype on one CPU
    or CUDA device."""
    first = ws[0] if ws else None
    if eps_inside or not isinstance(first, torch.Tensor) or first.dtype not in DTYPES or \
            first.device.type not in DEVICES:
        return None
    dtype, device = first.dtype, first.device
    del first  # see `_writable`
    ms, vs = [], []
    for w, g, s in zip(ws, gs, states, strict=True):
        if not isinstance(g, torch.Tensor) or w.dtype is not dtype or g.dtype is not dtype or \
                w.device != device:
            return None
        if isinstance(s, Moments):  # this module's own: advanced in place
            ms.append(s["m"])
            vs.append(s["v"])
        elif not s or ("m" not in s and "v" not in s):  # the first step
            ms.append(torch.zeros(w.shape, dtype=dtype, device=device))
            vs.append(torch.zeros(w.shape, dtype=dtype, device=device))
        elif _restored(s.get("m"), w) and _restored(s.get("v"), w):
            ms.append(s["m"].clone(memory_format=torch.contiguous_format))
            vs.append(s["v"].clone(memory_format=torch.contiguous_format))
        else:
            return None
    del w, g, s  # see `_writable`
    new = [ws[i] if _writable(ws, i) else ws[i].clone(memory_format=torch.contiguous_format)
           for i in range(len(ws))]
    step = torch.full((), float(t), dtype=torch.float32, device=device)
    gs = [g if g.is_contiguous() else g.contiguous() for g in gs]  # read in storage order
    torch._fused_adam_(new, gs, ms, vs, [], [step] * len(new), lr=rate, beta1=beta1,
                       beta2=beta2, weight_decay=0.0, eps=eps, amsgrad=False, maximize=False)
    for w in new:
        if _RETURNED.get(id(w)) is not w:  # a copy made here; one written in place is known
            _RETURNED[id(w)] = w
    return new, [Moments(m=m, v=v) for m, v in zip(ms, vs, strict=True)]
