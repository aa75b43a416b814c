"""Mixed precision for the torch engine: `precision = bf16 | fp16 | f32` in a train block.

The weights, the optimizer state, the penalties and the export stay float32; the forward pass
and the loss run under torch.autocast on the engine's device type with the chosen dtype
(matrix products and convolutions in bf16/fp16, reductions and losses in float32, by torch's
autocast rules), and autograd returns float32 gradients for the float32 weights.

fp16's narrow range needs a loss scale: the loss is multiplied by S before the backward pass
and the gradients divided by S after it (S a power of two, so both are exact). Where a
gradient overflows the step is skipped and S halves; after `GROWTH_INTERVAL` good steps in a
row it doubles — torch.amp.GradScaler's rule, kept here as two numbers a checkpoint stores,
so a resumed run continues with the same scale.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
INIT_SCALE = 2.0**16
GROWTH_INTERVAL = 2000
MIN_SCALE = 2.0**-24  # below this every fp16 gradient underflows: the run has blown up


def autocast(precision: str, device: torch.device) -> Callable[[], Any]:
    """A context factory: torch.autocast for bf16/fp16, nothing for f32."""
    if precision not in DTYPES:
        return contextlib.nullcontext
    dtype = DTYPES[precision]
    return lambda: torch.autocast(device_type=device.type, dtype=dtype)


@dataclass
class LossScale:
    """fp16's dynamic loss scale S and the good steps since it last changed."""

    scale: float = INIT_SCALE
    good: int = 0

    def unscale(self, grads: dict[str, Any]) -> dict[str, Any]:
        names = list(grads)
        if not names:
            return grads
        values = torch._foreach_mul([grads[k] for k in names], 1.0 / self.scale)
        return dict(zip(names, values, strict=True))

    def skipped(self) -> None:
        """A gradient overflowed: no update this step; halve S."""
        self.scale, self.good = self.scale * 0.5, 0

    def stepped(self) -> None:
        self.good += 1
        if self.good >= GROWTH_INTERVAL:
            self.scale, self.good = self.scale * 2.0, 0

    def record(self) -> dict[str, Any]:
        return {"scale": self.scale, "good": self.good}

    @classmethod
    def restore(cls, saved: Any) -> LossScale:
        """From a checkpoint's record (checked: a positive power of two and a count)."""
        from nndsl.training.checkpoint_schema import Damaged

        ok = isinstance(saved, dict) and set(saved) == {"scale", "good"}
        scale, good = (saved.get("scale"), saved.get("good")) if ok else (None, None)
        if not (isinstance(scale, float) and scale > 0 and _power_of_two(scale)
                and isinstance(good, int) and 0 <= good < GROWTH_INTERVAL):
            raise Damaged("record.loss_scale", saved,
                          "{scale: a positive power of two, good: a count of steps}")
        return cls(scale, good)


def _power_of_two(x: float) -> bool:
    import math

    mantissa, _ = math.frexp(x)
    return mantissa == 0.5
