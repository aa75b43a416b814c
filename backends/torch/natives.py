"""One-call torch forms of the ops a training step spends its time in.

The decompositions are right on torch too, but each primitive is a kernel launch and an autograd
node: `dense` is transpose + matmul + add, adam fourteen primitives per weight, an LSTM some
fifteen per time step. These natives compute the same functions with torch's fused kernels
(F.linear, F.conv2d with its bias, F.cross_entropy, torch.lstm, addcdiv, ...). Each has its
op's signature and falls back to the decomposition for any case it does not cover (mixed
dtypes, asymmetric padding, peepholes, ...). tests/test_torch_natives.py compares each with the
decomposition (values and gradients, fused and fallback cases); the shared parity tests compare
them with NumPy.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from nndsl.backends.torch import fused

from nndsl.ops.conv import pads, sizes
from nndsl.ops.layers import dropout_keep
from nndsl.ops.optimizers import check_adam, require
from nndsl.ops.recurrent import Start, starts
from nndsl.ops.registry import OPS, WithUpdates, get, register_natives
from nndsl.ops.transformer import project, split_inputs
from nndsl.ops.upsampling import transpose_geometry

_CONV = {1: F.conv1d, 2: F.conv2d}
_RNN = {"tanh": torch.rnn_tanh, "relu": torch.rnn_relu}


def _floats(*xs: Any) -> bool:
    """True when every array given is a torch tensor of one floating dtype (None is skipped)."""
    dtype = None
    for x in xs:
        if x is None:
            continue
        if not isinstance(x, torch.Tensor) or (dtype is not None and x.dtype != dtype):
            return False
        dtype = x.dtype
    return dtype is not None and dtype.is_floating_point


def _decomposed(name: str) -> Callable[..., Any]:
    return OPS[name].compute


def _decomposed_kind(name: str, kind: str) -> Callable[..., Any]:
    return get(name, kind).compute


def dense(P: Any, x: Any, *, units: int, use_bias: bool = True, tied: str | None = None,
          shared_bias: bool = False, weight: Any, bias: Any = None) -> Any:
    """F.linear: x Wᵀ + b in one kernel (addmm), for any number of leading axes (a shared
    bias [1] broadcasts there too)."""
    if not _floats(x, weight, bias):
        return _decomposed("dense")(P, x, units=units, use_bias=use_bias, tied=tied,
                                    shared_bias=shared_bias, weight=weight, bias=bias)
    return F.linear(x, weight.t() if tied is not None else weight, bias)


def relu(P: Any, x: Any) -> Any:
    """F.threshold(x, 0, 0): x if x > 0 else 0, gradient 0 at 0 as the decomposition. A NaN
    stays NaN here (as in torch.relu and ONNX Relu) where the decomposition's where() makes it
    0; torch's where() with a boolean mask is also several times slower on the CPU."""
    return F.threshold(x, 0.0, 0.0) if _floats(x) else _decomposed("relu")(P, x)


def dropout(P: Any, x: Any, *, rate: float | None = None, keep: float | None = None) -> Any:
    """(x / keep) · mask with the decomposition's mask (the same uniform draws): a product
    with the boolean mask instead of its where() (a dropped -x gives -0.0 rather than 0.0)."""
    if not (P.training and _floats(x)):
        return _decomposed("dropout")(P, x, rate=rate, keep=keep)
    p = dropout_keep(rate, keep)
    return (x / p) * (P.random_uniform_like(x) < p)


def mse(P: Any, y: Any, t: Any, *, reduction: str = "mean") -> Any:
    """F.mse_loss: the squared differences and their mean (or sum) in one kernel, the gradient
    2(y - t)/n in one (the decomposition's difference, product and mean are three, each with
    its backward). Tensors of one floating dtype and one shape; others: the decomposition."""
    if not (_floats(y, t) and y.shape == t.shape):
        return _decomposed_kind("mse", "loss")(P, y, t, reduction=reduction)
    return F.mse_loss(y, t, reduction="sum" if reduction == "sum" else "mean")


# CPU vector registers by the instruction set torch dispatches to, in bytes
_VECTOR_BYTES = {"AVX512": 64, "AVX2": 32}
_MANY_ROWS = 64  # below this the transposed route's extra dispatch costs more than it saves


def _across_rows(x: Any, axis: int) -> bool:
    """Whether torch's CPU (log-)softmax over `axis` is faster on the transposed tensor.

    Over the last axis, torch's CPU kernel vectorises along that axis: with fewer classes than
    a vector register holds (16 float32 with AVX-512: ten digits, ten CIFAR classes) it runs
    element by element, 5–7x slower than the kernel for another axis, which vectorises across
    rows. Both compute max, exp and sum per row in the same order, so log_softmax is the same
    bit for bit and softmax within an ulp (tests/test_torch_natives.py)."""
    if x.device.type != "cpu" or x.ndim < 2 or axis % x.ndim != x.ndim - 1 or \
            x.dtype not in (torch.float32, torch.float64):
        return False
    lanes = _VECTOR_BYTES.get(_cpu_capability(), 0) // x.element_size()
    return x.shape[-1] < lanes and x.numel() >= _MANY_ROWS * x.shape[-1]


def _cpu_capability() -> str:
    global _CAPABILITY
    if _CAPABILITY is None:
        _CAPABILITY = torch.backends.cpu.get_cpu_capability()
    return _CAPABILITY


_CAPABILITY: str | None = None


def _normalised(fn: Callable[..., Any], x: Any, axis: int) -> Any:
    """torch.softmax or torch.log_softmax of x over `axis`, by the faster kernel."""
    if _across_rows(x, axis):  # in x's layout again: kernels reading rows want it
        return fn(x.transpose(-1, 0), 0).transpose(-1, 0).contiguous()
    return fn(x, axis)


def softmax(P: Any, x: Any, *, axis: int = -1) -> Any:
    if not _floats(x):
        return _decomposed("softmax")(P, x, axis=axis)
    return _normalised(torch.softmax, x, axis)


def log_softmax(P: Any, x: Any, *, axis: int = -1) -> Any:
    if not _floats(x):
        return _decomposed("log_softmax")(P, x, axis=axis)
    return _normalised(torch.log_softmax, x, axis)


def cross_entropy_logits(P: Any, z: Any, t: Any, *, reduction: str = "mean") -> Any:
    """F.cross_entropy for [batch, classes] logits and class-index targets (truncated to
    integers, as the decomposition's cast does); one-hot targets use the decomposition. It is
    nll_loss of log_softmax, which takes the faster kernel for few classes (`_across_rows`)."""
    if _floats(z) and z.ndim == 2 and isinstance(t, torch.Tensor) and t.ndim == 1:
        if _across_rows(z, 1):
            return F.nll_loss(_normalised(torch.log_softmax, z, 1), t.to(torch.int64),
                              reduction=reduction)
        return F.cross_entropy(z, t.to(torch.int64), reduction=reduction)
    return _decomposed("cross_entropy_logits")(P, z, t, reduction=reduction)


def _conv(n: int, name: str) -> Callable[..., Any]:
    def native(P: Any, x: Any, *, channels: int, kernel: Any, stride: Any = 1,
               padding: Any = "valid", dilation: Any = 1, use_bias: bool = True,
               weight: Any, bias: Any = None) -> Any:
        """The convolution with its bias in one call (symmetric padding only)."""
        k, d = sizes(name, "kernel", kernel, n), sizes(name, "dilation", dilation, n)
        p = pads(name, padding, k, d)
        if not _floats(x, weight, bias) or any(lo != hi for lo, hi in p):
            return _decomposed(name)(P, x, channels=channels, kernel=kernel, stride=stride,
                                     padding=padding, dilation=dilation, use_bias=use_bias,
                                     weight=weight, bias=bias)
        return _CONV[n](x, weight, bias, stride=sizes(name, "stride", stride, n),
                        padding=tuple(lo for lo, _ in p), dilation=d)

    return native


def _weights(params: dict[str, Any], bidirectional: bool) -> list[Any]:
    """torch's flat weight list: (w_ih, w_hh, b_ih, b_hh) per direction, forward first."""
    suffixes = ("", "_reverse") if bidirectional else ("",)
    return [params[f"{w}{s}"] for s in suffixes
            for w in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]


Fused = Callable[..., tuple[Any, ...]]  # (x, hx, weights, bidirectional, training, params)


def _fused(name: str, call: Fused, P: Any, x: Any, units: int, bidirectional: bool,
           sequences: bool, params: dict[str, Any], begin: list[Start]) -> Any:
    """torch's fused RNN/LSTM/GRU over the whole sequence (batch first), from each direction's
    start (zeros, a learned vector or a carried state: h_0 [D, batch, H] stacked from them).

    `sequences=false` returns torch's h_n, which is the decomposition's [h_T forward, h_1
    reverse] on the feature axis. In training mode a one-directional layer also reports its
    final state, h_n (and c_n), as the decomposition does.
    """
    weights = _weights(params, bidirectional)
    given = [v for start in begin for v in start if v is not None]
    if not (_floats(x, *weights, *given) and x.ndim == 3 and x.shape[1] > 0
            and _supported(name, params)):
        return _decomposed(name)(P, x, units=units, bidirectional=bidirectional,
                                 sequences=sequences, **params)
    if given:
        zeros = x.new_zeros((x.shape[0], units))
        h0 = torch.stack([zeros if s.h is None else zeros + s.h for s in begin])
        c0 = torch.stack([zeros if s.c is None else zeros + s.c for s in begin]) \
            if name == "lstm" else None
    else:  # zeros: one tensor serves both (the kernel only reads its initial state)
        h0 = c0 = x.new_zeros((len(begin), x.shape[0], units))
    hx = (h0, c0) if name == "lstm" else h0
    out, *final = call(x, hx, weights, bidirectional, bool(P.training), params)
    value = out if sequences else final[0][0] if len(begin) == 1 else \
        torch.cat(list(final[0]), dim=-1)
    if not P.training or bidirectional:
        return value
    return WithUpdates(value, dict(zip(("state_h", "state_c"), (f[0] for f in final),
                                       strict=False)))


def rnn(P: Any, x: Any, *, units: int, activation: str = "tanh", bidirectional: bool = False,
        sequences: bool = True, initial_state: str = "zeros", weight_ih: Any, weight_hh: Any,
        bias_ih: Any, bias_hh: Any, weight_ih_reverse: Any = None, weight_hh_reverse: Any = None,
        bias_ih_reverse: Any = None, bias_hh_reverse: Any = None, initial_h: Any = None,
        initial_h_reverse: Any = None, state_h: Any = None) -> Any:
    params = dict(activation=activation, initial_state=initial_state, weight_ih=weight_ih,
                  weight_hh=weight_hh, bias_ih=bias_ih, bias_hh=bias_hh, initial_h=initial_h,
                  initial_h_reverse=initial_h_reverse, state_h=state_h, **_reverse(
                      weight_ih_reverse, weight_hh_reverse, bias_ih_reverse, bias_hh_reverse))
    begin = starts(bidirectional, (initial_h, None), (initial_h_reverse,), (state_h, None))
    return _fused("rnn", _rnn, P, x, units, bidirectional, sequences, params, begin)


def lstm(P: Any, x: Any, *, units: int, bidirectional: bool = False, sequences: bool = True,
         peephole: bool = False, coupled: bool = False, initial_state: str = "zeros",
         weight_ih: Any, weight_hh: Any, bias_ih: Any, bias_hh: Any,
         weight_peephole: Any = None, weight_ih_reverse: Any = None,
         weight_hh_reverse: Any = None, bias_ih_reverse: Any = None,
         bias_hh_reverse: Any = None, weight_peephole_reverse: Any = None,
         initial_h: Any = None, initial_c: Any = None, initial_h_reverse: Any = None,
         initial_c_reverse: Any = None, state_h: Any = None, state_c: Any = None) -> Any:
    params = dict(peephole=peephole, coupled=coupled, initial_state=initial_state,
                  weight_ih=weight_ih, weight_hh=weight_hh, bias_ih=bias_ih, bias_hh=bias_hh,
                  weight_peephole=weight_peephole,
                  weight_peephole_reverse=weight_peephole_reverse, initial_h=initial_h,
                  initial_c=initial_c, initial_h_reverse=initial_h_reverse,
                  initial_c_reverse=initial_c_reverse, state_h=state_h, state_c=state_c,
                  **_reverse(weight_ih_reverse, weight_hh_reverse, bias_ih_reverse,
                             bias_hh_reverse))
    begin = starts(bidirectional, (initial_h, initial_c), (initial_h_reverse, initial_c_reverse),
                   (state_h, state_c))
    return _fused("lstm", _lstm, P, x, units, bidirectional, sequences, params, begin)


def gru(P: Any, x: Any, *, units: int, bidirectional: bool = False, sequences: bool = True,
        linear_before_reset: bool = True, initial_state: str = "zeros", weight_ih: Any,
        weight_hh: Any, bias_ih: Any, bias_hh: Any, weight_ih_reverse: Any = None,
        weight_hh_reverse: Any = None, bias_ih_reverse: Any = None, bias_hh_reverse: Any = None,
        initial_h: Any = None, initial_h_reverse: Any = None, state_h: Any = None) -> Any:
    params = dict(linear_before_reset=linear_before_reset, initial_state=initial_state,
                  weight_ih=weight_ih, weight_hh=weight_hh, bias_ih=bias_ih, bias_hh=bias_hh,
                  initial_h=initial_h, initial_h_reverse=initial_h_reverse, state_h=state_h,
                  **_reverse(weight_ih_reverse, weight_hh_reverse, bias_ih_reverse,
                             bias_hh_reverse))
    begin = starts(bidirectional, (initial_h, None), (initial_h_reverse,), (state_h, None))
    return _fused("gru", _gru, P, x, units, bidirectional, sequences, params, begin)


def _reverse(weight_ih: Any, weight_hh: Any, bias_ih: Any, bias_hh: Any) -> dict[str, Any]:
    return dict(weight_ih_reverse=weight_ih, weight_hh_reverse=weight_hh,
                bias_ih_reverse=bias_ih, bias_hh_reverse=bias_hh)


def _supported(name: str, params: dict[str, Any]) -> bool:
    """What torch's fused layers compute: no peepholes or coupled gates, torch's GRU reset
    (after the matmul), and the tanh or relu RNN."""
    if name == "lstm":
        return not params.get("peephole") and not params.get("coupled")
    if name == "gru":
        return bool(params.get("linear_before_reset", True))
    return params.get("activation", "tanh") in _RNN


def _lstm(x: Any, hx: tuple[Any, Any], w: list[Any], bidirectional: bool, training: bool,
          params: dict[str, Any]) -> tuple[Any, ...]:
    return torch.lstm(x, hx, w, True, 1, 0.0, training, bidirectional, True)


def _gru(x: Any, h0: Any, w: list[Any], bidirectional: bool, training: bool,
         params: dict[str, Any]) -> tuple[Any, ...]:
    return torch.gru(x, h0, w, True, 1, 0.0, training, bidirectional, True)


def _rnn(x: Any, h0: Any, w: list[Any], bidirectional: bool, training: bool,
         params: dict[str, Any]) -> tuple[Any, ...]:
    fn = _RNN[params.get("activation", "tanh")]
    return fn(x, h0, w, True, 1, 0.0, training, bidirectional, True)


def adam(P: Any, w: Any, g: Any, state: dict[str, Any], rate: float, t: int, *,
         lr: float = 1e-3, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8,
         eps_inside: bool = False) -> tuple[Any, dict[str, Any]]:
    """The adam rule in torch.optim.Adam's kernels: its fused one (backends/torch/fused.py),
    else lerp, addcmul, addcdiv (eps inside the root): one or seven kernels per weight instead
    of fourteen. The weight given is never written, nor is a state this rule did not return
    (backends/torch/fused.py)."""
    check_adam(lr, beta1, beta2, eps)
    done = fused.adam([w], [g], [state], rate, t, beta1=beta1, beta2=beta2, eps=eps,
                      eps_inside=eps_inside)
    if done is not None:
        return done[0][0], done[1][0]
    m, v = state.get("m"), state.get("v")
    if not _floats(w, g, m, v):
        return _decomposed_kind("adam", "optimizer")(P, w, g, state, rate, t, lr=lr, beta1=beta1,
                                             beta2=beta2, eps=eps, eps_inside=eps_inside)
    m = g * (1.0 - beta1) if m is None else torch.lerp(m, g, 1.0 - beta1)
    v = g * g * (1.0 - beta2) if v is None else torch.addcmul(v * beta2, g, g,
                                                              value=1.0 - beta2)
    v_hat = v / (1.0 - beta2**t)
    denom = v_hat.add_(eps).sqrt_() if eps_inside else v_hat.sqrt_().add_(eps)
    return torch.addcdiv(w, m, denom, value=-rate / (1.0 - beta1**t)), {"m": m, "v": v}


def clip_norm(P: Any, grads: list[Any], *, max: float) -> list[Any]:
    """The `norm` clip in clip_grad_norm_'s kernels: one norm per gradient and one product per
    gradient, each a single foreach call; out of place. The factor min(max / (total + 1e-6), 1)
    is worked out in place on the norm just made, as torch's `max / tensor` computes it
    (reciprocal, then product), without that operator's Python wrapper: 32 -> 28 us a step for
    an LSTM's six gradients."""
    if not (grads and _floats(*grads)):
        return _decomposed_kind("norm", "clip")(P, grads, max=max)
    require(max > 0, "max", max, "a positive number")
    total = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
    factor = total.add_(1e-6).reciprocal_().mul_(max).clamp_(max=1.0)
    return list(torch._foreach_mul(grads, factor))


def gelu(P: Any, x: Any, *, approximate: str = "none") -> Any:
    return F.gelu(x, approximate=approximate) if _floats(x) else _decomposed("gelu")(
        P, x, approximate=approximate)


def silu(P: Any, x: Any) -> Any:
    return F.silu(x) if _floats(x) else _decomposed("silu")(P, x)


def layer_norm(P: Any, x: Any, *, axis: int = -1, eps: float = 1e-5, use_bias: bool = True,
               gamma: Any, beta: Any = None) -> Any:
    """F.layer_norm over the trailing axes from `axis` (gamma's shape)."""
    if not _floats(x, gamma, beta):
        return _decomposed("layer_norm")(P, x, axis=axis, eps=eps, use_bias=use_bias,
                                         gamma=gamma, beta=beta)
    return F.layer_norm(x, tuple(x.shape[axis % x.ndim:]), gamma, beta, eps)


def conv_transpose2d(P: Any, x: Any, *, channels: int, kernel: Any, stride: Any = 1,
                     padding: Any = "valid", output_padding: Any = 0, use_bias: bool = True,
                     weight: Any, bias: Any = None) -> Any:
    """F.conv_transpose2d with its bias, for equal crops before and after (not an odd `same`)."""
    g = transpose_geometry(kernel, stride, padding, output_padding)
    if not _floats(x, weight, bias) or any(lo != hi for lo, hi in g.crops):
        return _decomposed("conv_transpose2d")(
            P, x, channels=channels, kernel=kernel, stride=stride, padding=padding,
            output_padding=output_padding, use_bias=use_bias, weight=weight, bias=bias)
    return F.conv_transpose2d(x, weight, bias, stride=g.stride,
                              padding=tuple(lo for lo, _ in g.crops), output_padding=g.extra)


def upsample(P: Any, x: Any, *, scale: Any, mode: str = "nearest") -> Any:
    """F.interpolate with integer scale factors (align_corners=False for bilinear)."""
    if not _floats(x):
        return _decomposed("upsample")(P, x, scale=scale, mode=mode)
    factors = sizes("upsample", "scale", scale, 2)
    corners = {"align_corners": False} if mode == "bilinear" else {}
    return F.interpolate(x, scale_factor=tuple(float(f) for f in factors), mode=mode, **corners)


def multi_head_attention(P: Any, *xs: Any, heads: int, dim: int | None = None,
                         causal: bool = False, use_bias: bool = True, weight_q: Any,
                         weight_k: Any, weight_v: Any, weight_out: Any, bias_q: Any = None,
                         bias_k: Any = None, bias_v: Any = None, bias_out: Any = None) -> Any:
    """The projections with F.linear and the heads with F.scaled_dot_product_attention; a key
    padding mask uses the decomposition (which attends evenly where every key is hidden)."""
    weights = dict(weight_q=weight_q, weight_k=weight_k, weight_v=weight_v,
                   weight_out=weight_out, bias_q=bias_q, bias_k=bias_k, bias_v=bias_v,
                   bias_out=bias_out)
    query, keys, values, mask = split_inputs(xs, lambda a: a.ndim)
    if mask is not None or not _floats(*xs, *weights.values()):
        return _decomposed("multi_head_attention")(P, *xs, heads=heads, dim=dim, causal=causal,
                                                   use_bias=use_bias, **weights)
    w = weights.get

    def split(x: Any, role: str) -> Any:  # [batch, T, dim] -> [batch, heads, T, dim / heads]
        y = project(P, x, w(f"weight_{role}"), w(f"bias_{role}"))
        return y.unflatten(-1, (heads, -1)).transpose(1, 2)

    context = F.scaled_dot_product_attention(split(query, "q"), split(keys, "k"),
                                             split(values, "v"), is_causal=causal)
    return project(P, context.transpose(1, 2).flatten(-2), w("weight_out"), w("bias_out"))


NATIVE: dict[str | tuple[str, str], Callable[..., Any]] = {
    "dense": dense, "relu": relu, "dropout": dropout, "softmax": softmax,
    "log_softmax": log_softmax, "cross_entropy_logits": cross_entropy_logits, "mse": mse,
    "conv1d": _conv(1, "conv1d"), "conv2d": _conv(2, "conv2d"),
    "lstm": lstm, "gru": gru, "rnn": rnn, ("optimizer", "adam"): adam,
    ("clip", "norm"): clip_norm,
    "gelu": gelu, "silu": silu, "layer_norm": layer_norm, "conv_transpose2d": conv_transpose2d,
    "upsample": upsample, "multi_head_attention": multi_head_attention,
}
register_natives("torch", NATIVE)
