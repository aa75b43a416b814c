"""Max pooling on the CPU through torch's channels-last kernel where that pays.

torch's CPU max pool over a contiguous [batch, channels, *spatial] tensor works plane by plane
and is 2-4x slower than its channels-last kernel once there are a few channels (bench case 1:
the first pool of digits_cnn's evaluation of 1,437 rows takes 7.9 ms contiguous against 2.0 ms
through a channels-last copy and back). Either layout takes each maximum from the same window
position (the first maximum, or a NaN), so values and gradients are the same bit for bit; the
result is handed on contiguous, so nothing after a pool sees another layout.

Without a gradient the copy and the channels-last pool replace the pool. In a training step the
forward pool runs channels-last and returns its indices, and the backward pass scatters the
gradient with torch's own contiguous kernel (the channels-last backward would copy the gradient
twice more): 2x faster from about 16,000 output values up (64 x 32 x 28 x 28: 4.4 ms against 9.1),
slower below, where a Python autograd function costs more than it saves.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

_CHANNELS_LAST = {4: torch.channels_last, 5: torch.channels_last_3d}
_POOL = {4: F.max_pool2d, 5: F.max_pool3d}
_BACKWARD = {4: torch.ops.aten.max_pool2d_with_indices_backward,
             5: torch.ops.aten.max_pool3d_with_indices_backward}
MIN_CHANNELS = 4  # fewer, and the contiguous kernel is as fast
MIN_TRAINING_CHANNELS, MIN_TRAINING_OUTPUTS = 8, 16_384


def max_pool(x: torch.Tensor, kernel: Sequence[int], stride: Sequence[int]) -> torch.Tensor | None:
    """x max-pooled without padding through the channels-last kernel, or None where the plain
    contiguous call is the faster one."""
    if x.ndim not in _CHANNELS_LAST or x.device.type != "cpu" or x.shape[1] < MIN_CHANNELS:
        return None
    kernel, stride = tuple(kernel), tuple(stride)
    if not (x.requires_grad and torch.is_grad_enabled()):
        with torch.no_grad():
            return _POOL[x.ndim](x.contiguous(memory_format=_CHANNELS_LAST[x.ndim]),
                                 kernel_size=kernel, stride=stride).contiguous()
    outputs = x.shape[0] * x.shape[1] * _outputs(x.shape[2:], kernel, stride)
    if x.shape[1] < MIN_TRAINING_CHANNELS or outputs < MIN_TRAINING_OUTPUTS:
        return None
    return _ChannelsLastMaxPool.apply(x, kernel, stride)


def _outputs(spatial: Sequence[int], kernel: Sequence[int], stride: Sequence[int]) -> int:
    total = 1
    for size, k, s in zip(spatial, kernel, stride, strict=True):
        total *= max((size - k) // s + 1, 0)
    return total


class _ChannelsLastMaxPool(torch.autograd.Function):
    """Forward channels-last with the maxima's indices; backward torch's contiguous scatter."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, kernel: tuple[int, ...],
                stride: tuple[int, ...]) -> torch.Tensor:
        y, indices = _POOL[x.ndim](x.contiguous(memory_format=_CHANNELS_LAST[x.ndim]),
                                   kernel_size=kernel, stride=stride, return_indices=True)
        ctx.save_for_backward(x, indices)
        ctx.kernel, ctx.stride = kernel, stride
        return y.contiguous()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        x, indices = ctx.saved_tensors
        k = len(ctx.kernel)
        return _BACKWARD[x.ndim](grad.contiguous(), x, list(ctx.kernel), list(ctx.stride),
                                 [0] * k, [1] * k, False, indices.contiguous()), None, None
