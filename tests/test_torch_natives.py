"""Each torch native (backends/torch/natives.py) against its op's decomposition on the same torch
table: values and gradients in float64, for the configurations the native fuses and for those
it hands back to the decomposition (peepholes, asymmetric padding, one-hot targets, ...). The
shared parity tests already check every native against NumPy on the op's own samples."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from nndsl.backends.torch.prims import make_torch_prims  # noqa: E402

from nndsl import ops  # noqa: E402
from nndsl.ir import TensorType  # noqa: E402
from nndsl.ops.registry import OPS, WithUpdates  # noqa: E402

SEQ = (3, 5, 4)  # [batch, time, features]
CASES: list[tuple[str, tuple[tuple[int, ...], ...], dict[str, Any]]] = [
    ("dense", ((4, 6),), {"units": 3}),
    ("dense", ((2, 5, 6),), {"units": 3, "use_bias": False}),
    ("relu", ((4, 6),), {}),
    ("softmax", ((4, 6),), {"axis": 0}),
    ("log_softmax", ((4, 6),), {}),
    ("mse", ((4, 3), (4, 3)), {}),
    ("mse", ((2, 3, 2), (2, 3, 2)), {"reduction": "sum"}),
    ("mse", ((4, 3), (4, 1)), {}),  # broadcast targets: the decomposition
    ("softmax", ((100, 6),), {}),  # many rows, few classes: the transposed kernel (AVX-512)
    ("log_softmax", ((3, 40, 7),), {"axis": 2}),
    ("conv2d", ((2, 3, 7, 6),), {"channels": 4, "kernel": 3, "padding": "same"}),
    ("conv2d", ((2, 3, 7, 6),), {"channels": 4, "kernel": 2, "padding": "same"}),  # asymmetric
    ("conv1d", ((2, 3, 9),), {"channels": 2, "kernel": 3, "stride": 2, "dilation": 2}),
    *[("lstm", (SEQ,), {"units": 4, "sequences": s, "bidirectional": b})
      for s in (True, False) for b in (True, False)],
    ("lstm", (SEQ,), {"units": 4, "peephole": True}),
    ("lstm", (SEQ,), {"units": 4, "initial_state": "learned", "bidirectional": True}),
    ("lstm", (SEQ,), {"units": 4, "initial_state": "learned", "sequences": False}),
    ("gru", (SEQ,), {"units": 4, "initial_state": "learned"}),
    ("rnn", (SEQ,), {"units": 4, "initial_state": "learned", "activation": "relu"}),
    ("lstm", (SEQ,), {"units": 4, "coupled": True, "sequences": False}),
    *[("gru", (SEQ,), {"units": 4, "sequences": s, "bidirectional": True,
                       "linear_before_reset": r}) for s in (True, False) for r in (True, False)],
    *[("rnn", (SEQ,), {"units": 4, "activation": a, "sequences": False, "bidirectional": True})
      for a in ("tanh", "relu", "sigmoid")],
    *[("gelu", ((4, 6),), {"approximate": a}) for a in ("none", "tanh")],
    ("silu", ((4, 6),), {}),
    ("layer_norm", (SEQ,), {}),
    ("layer_norm", ((2, 3, 4, 5),), {"axis": 2, "use_bias": False, "eps": 1e-3}),
    ("conv_transpose2d", ((2, 3, 4, 5),), {"channels": 2, "kernel": 3, "stride": 2,
                                           "padding": 1, "output_padding": 1}),
    ("conv_transpose2d", ((2, 3, 4, 5),), {"channels": 2, "kernel": (3, 2), "stride": 2,
                                           "padding": "same"}),  # odd k − s: the fallback
    *[("upsample", ((2, 3, 4, 5),), {"scale": s, "mode": m})
      for s in (2, (3, 1)) for m in ("nearest", "bilinear")],
    ("multi_head_attention", (SEQ,), {"heads": 2}),
    ("multi_head_attention", (SEQ,), {"heads": 4, "causal": True, "use_bias": False}),
    ("multi_head_attention", ((3, 2, 4), (3, 5, 6)), {"heads": 2, "dim": 6, "causal": True}),
]


def _tensors(rng: np.random.Generator, shapes: tuple[tuple[int, ...], ...]) -> list[Any]:
    return [torch.tensor(rng.standard_normal(s), requires_grad=True) for s in shapes]


def _weights(rng: np.random.Generator, name: str, shapes: tuple[tuple[int, ...], ...],
             params: dict[str, Any]) -> dict[str, Any]:
    opdef = OPS[name]
    if opdef.weights is None:
        return {}
    hyper = {p.name: p.default for p in opdef.params if not p.required} | params
    specs = opdef.weights(*(TensorType(s, "f64") for s in shapes), **hyper)
    return {k: torch.tensor(rng.standard_normal(spec.shape) * 0.5, requires_grad=True)
            for k, spec in specs.items()}


def _value_and_grads(fn: Any, P: Any, args: list[Any], weights: dict[str, Any],
                     params: dict[str, Any]) -> list[np.ndarray]:
    """The output (and the state a layer reports in training mode) and the gradients of a
    fixed projection of them all."""
    out = fn(P, *args, **params, **weights)
    roots = [out.value, *out.updates.values()] if isinstance(out, WithUpdates) else [out]
    leaves = [*args, *weights.values()]
    total = sum((r * torch.linspace(-1, 1, r.numel(), dtype=r.dtype).reshape(r.shape)).sum()
                for r in roots)
    grads = torch.autograd.grad(total, leaves, allow_unused=True)
    return [r.detach().numpy() for r in roots] + [np.zeros(1) if g is None else g.numpy()
                                                  for g in grads]


@pytest.mark.parametrize(("name", "shapes", "params"), CASES,
                         ids=[f"{n}-{i}" for i, (n, _, _) in enumerate(CASES)])
def test_native_equals_the_decomposition(name: str, shapes: tuple[tuple[int, ...], ...],
                                         params: dict[str, Any]) -> None:
    opdef = OPS[name]
    rng = np.random.default_rng(len(name))
    args, weights = _tensors(rng, shapes), _weights(rng, name, shapes, params)
    P = make_torch_prims(training=True, generator=torch.Generator())
    got = _value_and_grads(opdef.native["torch"], P, args, weights, params)
    want = _value_and_grads(opdef.compute, P, args, weights, params)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-10, atol=1e-12)


def test_relu_gradient_is_zero_at_zero() -> None:
    x = torch.tensor([-1.0, 0.0, 2.0, float("nan")], requires_grad=True)
    y = OPS["relu"].native["torch"](make_torch_prims(), x)
    (grad,) = torch.autograd.grad(y.nansum(), [x])
    assert y.tolist()[:3] == [0.0, 0.0, 2.0] and grad.tolist() == [0.0, 0.0, 1.0, 0.0]


def test_dropout_draws_the_same_mask() -> None:
    x = torch.randn(64, 32, dtype=torch.float64)
    masks = []
    for fn in (OPS["dropout"].native["torch"], OPS["dropout"].compute):
        P = make_torch_prims(training=True, generator=torch.Generator().manual_seed(3))
        masks.append(fn(P, x, rate=0.3))
    assert torch.equal(masks[0], masks[1])  # == also holds between -0.0 and 0.0


@pytest.mark.parametrize("shape", [(3, 6, 8, 8), (2, 5, 4, 6, 6), (2, 3, 8, 8), (16, 16, 16, 16),
                                   (4, 8, 16, 16, 16)])
@pytest.mark.parametrize("padding", [((0, 0),) * 3, ((1, 0), (0, 1), (1, 1))])
def test_max_pool_takes_the_contiguous_kernels_maxima_and_gradients(
        shape: tuple[int, ...], padding: tuple[tuple[int, int], ...]) -> None:
    """Pools with many channels run channels-last on the CPU (backends/torch/pooling.py): the
    values, the layout handed on and the gradient are those of torch's contiguous kernel, with
    many ties and NaN among the values."""
    rng = np.random.default_rng(1)
    x = torch.as_tensor(rng.integers(-2, 3, size=shape).astype(np.float32))  # many ties
    x.view(-1)[::7] = float("nan")
    k = len(shape) - 2
    kernel, pads = (2,) * k, padding[:k]
    flat = [p for pair in reversed(pads) for p in pair]
    plain = {2: torch.nn.functional.max_pool2d, 3: torch.nn.functional.max_pool3d}[k]
    leaf = x.clone().requires_grad_(True)
    expected = plain(torch.nn.functional.pad(leaf, flat, value=-np.inf), kernel, kernel)
    P = make_torch_prims()
    with torch.no_grad():
        evaluated = P.max_pool(x, kernel, kernel, pads)
    trained_leaf = x.clone().requires_grad_(True)
    trained = P.max_pool(trained_leaf, kernel, kernel, pads)
    for y in (evaluated, trained):
        assert y.is_contiguous() and y.shape == expected.shape
        assert torch.equal(y.isnan(), expected.isnan())
        assert torch.equal(y.detach().nan_to_num(), expected.detach().nan_to_num())
    grad = torch.as_tensor(rng.standard_normal(expected.shape).astype(np.float32))
    (want,) = torch.autograd.grad(expected, [leaf], grad)
    (got,) = torch.autograd.grad(trained, [trained_leaf], grad)
    assert torch.equal(got, want)


@pytest.mark.parametrize("targets", ["indices", "one_hot"])
def test_cross_entropy_native(targets: str) -> None:
    rng = np.random.default_rng(0)
    z = torch.tensor(rng.standard_normal((6, 4)), requires_grad=True)
    idx = rng.integers(0, 4, 6).astype(np.float64)
    t = torch.tensor(idx if targets == "indices" else np.eye(4)[idx.astype(int)])
    P = make_torch_prims()
    for reduction in ("mean", "sum"):
        got, want = (_value_and_grads(fn, P, [z], {}, {"t": t, "reduction": reduction})
                     for fn in (_with_t(OPS["cross_entropy_logits"].native["torch"]),
                                _with_t(OPS["cross_entropy_logits"].compute)))
        for g, w in zip(got, want, strict=True):
            np.testing.assert_allclose(g, w, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("capability", ["AVX512", "AVX2", "DEFAULT"])
def test_few_classes_take_the_kernel_across_rows(monkeypatch: pytest.MonkeyPatch,
                                                 capability: str) -> None:
    """With fewer classes than a vector register holds and many rows, (log-)softmax and
    cross-entropy run torch's kernel for a leading axis on the transposed tensor: log_softmax
    and the loss bit for bit as the last-axis kernel, softmax within an ulp, gradients too, in
    the input's layout. Few rows, many classes or another axis keep the last-axis kernel. The
    bit-for-bit claims hold where torch's kernels use the capability routed for: a machine
    without AVX512 told it has it sends 10 classes across the rows of its AVX2 kernel, which
    agrees within an ulp only."""
    from nndsl.backends.torch import natives

    real = torch.backends.cpu.get_cpu_capability()
    monkeypatch.setattr(natives, "_CAPABILITY", capability)
    lanes = {"AVX512": 16, "AVX2": 8}.get(capability, 0)
    f32 = torch.float32
    assert natives._across_rows(torch.zeros(200, 10), -1) == (10 < lanes)
    assert natives._across_rows(torch.zeros(4, 50, 7), 2) == (7 < lanes)
    assert not natives._across_rows(torch.zeros(32, 10), -1)  # few rows
    assert not natives._across_rows(torch.zeros(200, 16), -1)  # a register's worth
    assert not natives._across_rows(torch.zeros(10, 200), 0)  # not the last axis
    assert not natives._across_rows(torch.zeros(200, 10, dtype=torch.float16), -1)
    assert natives._across_rows(torch.zeros(200, 7, dtype=torch.float64), -1) == (7 < lanes // 2)
    rng = np.random.default_rng(5)
    z = torch.tensor(rng.standard_normal((300, 10)) * 4, dtype=f32, requires_grad=True)
    t = torch.tensor(rng.integers(0, 10, 300))
    P = make_torch_prims()
    exact = capability == real or not natives._across_rows(z, -1)
    for name, plain in (("log_softmax", lambda x: torch.log_softmax(x, -1)),
                        ("softmax", lambda x: torch.softmax(x, -1))):
        got, want = OPS[name].native["torch"](P, z), plain(z)
        assert got.is_contiguous() and got.shape == want.shape
        if name == "log_softmax" and exact:
            assert torch.equal(got, want)
        ulps = (2e-7, 1e-9) if exact else (1e-6, 1e-6)  # float32, values up to ~10 apart
        torch.testing.assert_close(got, want, rtol=ulps[0], atol=ulps[1])
        weight = torch.linspace(-1, 1, z.numel()).reshape(z.shape)
        (g_got,) = torch.autograd.grad((got * weight).sum(), [z])
        (g_want,) = torch.autograd.grad((want * weight).sum(), [z])
        torch.testing.assert_close(g_got, g_want, rtol=1e-5, atol=1e-6)  # float32 sums
    for reduction in ("mean", "sum", "none"):
        got = OPS["cross_entropy_logits"].native["torch"](P, z, t, reduction=reduction)
        want = torch.nn.functional.cross_entropy(z, t, reduction=reduction)
        if exact:
            assert torch.equal(got, want)
        torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)


def _with_t(fn: Any) -> Any:
    def call(P: Any, z: Any, *, t: Any, reduction: str) -> Any:
        return fn(P, z, t, reduction=reduction)

    return call


@pytest.mark.parametrize("eps_inside", [False, True])
def test_adam_native_follows_the_rule(eps_inside: bool) -> None:
    """Five updates from the same start: the native's weights and state track the rule's."""
    opt = ops.get("adam", "optimizer")
    rng = np.random.default_rng(1)
    start = torch.tensor(rng.standard_normal((5, 3)))
    grads = [torch.tensor(rng.standard_normal((5, 3))) for _ in range(5)]
    P = make_torch_prims()
    results = []
    for fn in (opt.native["torch"], opt.compute):
        w, state = start, {}
        for t, g in enumerate(grads, 1):
            w, state = fn(P, w, g, state, 0.01 * t, t, lr=0.01, eps_inside=eps_inside)
        results.append((w, state))
    (w1, s1), (w2, s2) = results
    np.testing.assert_allclose(w1.numpy(), w2.numpy(), rtol=1e-12)
    for key in ("m", "v"):
        np.testing.assert_allclose(s1[key].numpy(), s2[key].numpy(), rtol=1e-12)


def test_adam_native_writes_only_the_moments_it_made() -> None:
    """A state from elsewhere (a checkpoint's arrays, a copy) and the weight are never written;
    the state a call returned is the optimizer's own, and the next step advances it in place,
    to the same numbers."""
    opt = ops.get("adam", "optimizer")
    P = make_torch_prims()
    w, g = torch.ones(3), torch.full((3,), 0.5)
    _, made = opt.native["torch"](P, w, g, {}, 0.1, 1, lr=0.1)
    copy = {k: v.clone() for k, v in made.items()}
    kept = {k: v.clone() for k, v in made.items()}
    _, from_copy = opt.native["torch"](P, w, g, copy, 0.1, 2, lr=0.1)
    assert all(torch.equal(copy[k], kept[k]) for k in kept)
    _, advanced = opt.native["torch"](P, w, g, made, 0.1, 2, lr=0.1)
    assert all(advanced[k] is made[k] for k in made)
    assert all(torch.equal(advanced[k], from_copy[k]) for k in made)
    assert torch.equal(w, torch.ones(3))


def test_adam_native_reads_strided_arrays_and_leaves_a_restored_state_alone() -> None:
    """A transposed weight and gradient (the fused kernel walks memory in order) and moments
    that share memory with a checkpoint's arrays: the rule's numbers, and the arrays kept."""
    opt = ops.get("adam", "optimizer")
    rng = np.random.default_rng(4)
    w = torch.tensor(rng.standard_normal((3, 5))).t()
    g = torch.tensor(rng.standard_normal((3, 5))).t()
    saved = {k: rng.random((5, 3)) for k in ("m", "v")}
    kept = {k: v.copy() for k, v in saved.items()}
    P = make_torch_prims()
    got_w, got_s = opt.native["torch"](P, w, g, {k: torch.as_tensor(v) for k, v in saved.items()},
                                       0.01, 3, lr=0.01)
    want_w, want_s = opt.compute(P, w, g, {k: torch.as_tensor(v) for k, v in kept.items()},
                                 0.01, 3, lr=0.01)
    np.testing.assert_allclose(got_w.numpy(), want_w.numpy(), rtol=1e-12)
    for key in ("m", "v"):
        np.testing.assert_allclose(got_s[key].numpy(), want_s[key].numpy(), rtol=1e-12)
        np.testing.assert_array_equal(saved[key], kept[key])


@pytest.mark.parametrize("limit", [0.5, 100.0])
def test_clip_norm_native_follows_the_rule(limit: float) -> None:
    """Scaled down past the limit, untouched under it; the given gradients stay as they were."""
    clip = ops.get("norm", "clip")
    rng = np.random.default_rng(2)
    grads = [torch.tensor(rng.standard_normal(s)) for s in ((4, 3), (3,), (2, 2, 2))]
    before = [g.clone() for g in grads]
    P = make_torch_prims()
    got = clip.native["torch"](P, grads, max=limit)
    want = clip.compute(P, grads, max=limit)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g.numpy(), w.numpy(), rtol=1e-12)
    assert all(torch.equal(g, b) for g, b in zip(grads, before, strict=True))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_clip_norm_factor_in_place_is_torchs_quotient(dtype: torch.dtype) -> None:
    """The factor worked out in place on the norm is min(max / (norm + 1e-6), 1) as torch's
    `max / tensor` gives it, bit for bit, and gradients autograd tracks get the same values."""
    clip = ops.get("norm", "clip")
    rng = np.random.default_rng(5)
    grads = [torch.tensor(rng.standard_normal(s), dtype=dtype) for s in ((64, 16), (64,), (1,))]
    P = make_torch_prims()
    total = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
    factor = torch.clamp(0.7 / (total + 1e-6), max=1.0)
    got = clip.native["torch"](P, grads, max=0.7)
    assert all(torch.equal(g, x * factor) for g, x in zip(got, grads, strict=True))
    tracked = [g.clone().requires_grad_(True) for g in grads]
    out = clip.native["torch"](P, tracked, max=0.7)
    assert all(torch.equal(o.detach(), g) for o, g in zip(out, got, strict=True))
