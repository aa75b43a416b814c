"""Activations, losses, metrics, initializers, regularizers and constraints against independent
reference formulas written here (never by calling the op under test), on seeded inputs that
include extreme values; gradients at the extremes are checked through the torch table."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from nndsl.backends.numpy.prims import make_numpy_prims

import nndsl.ops.activations as activations
import nndsl.ops.initializers as initializers
import nndsl.ops.losses as losses
import nndsl.ops.metrics as metrics
import nndsl.ops.regularizers as regularizers
from nndsl.errors import NndslError
from nndsl.ir import TensorType
from nndsl.ops.registry import OPS, OpDef, all_ops, get

P = make_numpy_prims()
EXTREMES = np.array([-300.0, -30.0, -2.0, -1.0, -1e-3, 0.0, 1e-3, 1.0, 2.0, 30.0, 300.0])
MODULES = (activations, losses, metrics, initializers, regularizers)


def mine_all() -> list[OpDef]:
    """The ops registered by the modules under test, of every kind."""
    modules = {m.__name__ for m in MODULES}
    return sorted((d for d in all_ops() if d.compute.__module__ in modules),
                  key=lambda d: (d.kind, d.name))


def mine(*kinds: str) -> list[str]:
    """Names of the ops of `kinds` registered by the modules under test."""
    return [d.name for d in mine_all() if d.kind in kinds]


def lookup(name: str) -> OpDef:
    """A tensor op, else the regularizer or constraint of that name."""
    return OPS[name] if name in OPS else get(name, ("regularizer", "constraint"))


def run(name: str, *inputs: Any, **params: Any) -> Any:
    return lookup(name).compute(P, *inputs, **params)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


def _sig(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # the catalog's identity (ACT-03), never overflows


_erfc = np.vectorize(math.erfc)


def _lif(v: float, tau_ref: float, tau_m: float) -> float:
    return 1.0 / (tau_ref - tau_m * math.log1p(-1.0 / v)) if v > 1 else 0.0


# name -> (params, reference on float64 arrays)
ACTIVATIONS: dict[str, tuple[dict[str, Any], Callable[[np.ndarray], np.ndarray]]] = {
    "identity": ({}, lambda x: x),
    "linear": ({}, lambda x: x),
    "sigmoid": ({}, _sig),
    "tanh": ({}, lambda x: np.sign(x) * -np.expm1(-2 * np.abs(x)) / (1 + np.exp(-2 * np.abs(x)))),
    "relu": ({}, lambda x: x * (x > 0)),
    "leaky_relu": ({"slope": 0.2}, lambda x: np.where(x >= 0, x, 0.2 * x)),
    "elu": ({"alpha": 0.7}, lambda x: np.where(x > 0, x, 0.7 * np.expm1(np.minimum(x, 0)))),
    "selu": ({}, lambda x: 1.0507009873554804934193349852946 * np.where(
        x > 0, x, 1.6732632423543772848170429916717 * np.expm1(np.minimum(x, 0)))),
    "softplus": ({}, lambda x: np.logaddexp(0.0, x)),
    "hardtanh": ({"low": -0.5, "high": 2.0}, lambda x: np.clip(x, -0.5, 2.0)),
    "ramp": ({}, lambda x: np.clip(x, -1.0, 1.0)),
    "arctan": ({}, lambda x: np.arctan2(x, 1.0)),
    "step": ({"at_zero": 0.5}, lambda x: np.heaviside(x, 0.5)),
    "sign": ({"at_zero": -1.0}, lambda x: np.where(x == 0, -1.0, np.sign(x))),
    "softmax": ({"axis": -1}, lambda x: np.exp(x - np.logaddexp.reduce(x, -1, keepdims=True))),
    "log_softmax": ({}, lambda x: x - np.logaddexp.reduce(x, -1, keepdims=True)),
    "one_hot": ({}, lambda x: np.eye(x.shape[-1])[np.argmax(x, axis=-1)]),
    "gaussian_rbf": ({}, lambda x: np.exp(-(x**2))),
    "ricker": ({}, lambda x: (1 - x**2) * np.exp(-(x**2) / 2)),
    "gelu": ({}, lambda x: 0.5 * x * _erfc(-x / math.sqrt(2.0))),
    "silu": ({}, lambda x: x * _sig(x)),
    "sine": ({"w0": 3.0}, lambda x: np.sin(3.0 * x)),
    "swish": ({"beta": 2.0}, lambda x: x * _sig(2.0 * x)),
    "lif_rate": ({"tau_ref": 0.003, "tau_m": 0.01},
                 np.vectorize(lambda v: _lif(v, 0.003, 0.01))),
}


def _activation_inputs(rng: np.random.Generator) -> np.ndarray:
    x = np.concatenate([rng.standard_normal(21) * 3.0, EXTREMES])
    return x.reshape(4, 8)


# ---- registration --------------------------------------------------------------------------

def test_every_activation_has_a_reference() -> None:
    assert set(mine("activation")) == set(ACTIVATIONS)


@pytest.mark.parametrize("opdef", mine_all(), ids=lambda d: f"{d.kind}:{d.name}")
def test_op_is_documented_by_a_formula_line(opdef: OpDef) -> None:
    doc = opdef.doc
    assert doc and "\n" not in doc.strip() and len(doc) <= 100, opdef.name


def test_kinds() -> None:
    assert set(mine("loss")) >= {"mse", "sse", "bce", "cross_entropy", "cross_entropy_logits",
                                 "nll", "hinge", "logistic", "max_margin", "kl_normal",
                                 "l1_activity", "contractive"}
    assert set(mine("metric")) == {"accuracy", "precision", "recall", "f1", "top_k_accuracy",
                                   "roc_auc", "mae", "rmse", "r2"}
    assert {"zeros", "he_normal", "glorot_uniform", "orthogonal", "sparse"} <= set(
        mine("initializer"))
    assert set(mine("regularizer")) == {"l1", "l2", "elastic"}
    assert set(mine("constraint")) == {"max_norm", "non_neg", "unit_norm"}


def test_signatures_are_read_from_the_functions() -> None:
    assert OPS["leaky_relu"].inputs == ("x",) and OPS["leaky_relu"].hyper["slope"].default == 0.01
    assert OPS["kl_normal"].inputs == ("mu", "logvar")
    assert get("normal", "initializer").positional_names == ("mean", "std")
    max_norm = get("max_norm", "constraint")
    assert max_norm.hyper["axis"].required and max_norm.hyper["c"].required
    assert OPS["mse"].positional_names == () and OPS["hinge"].positional_names == ("margin",)
    assert not OPS["step"].differentiable and not OPS["accuracy"].differentiable


@pytest.mark.parametrize("name", mine("loss", "metric"))
def test_losses_give_a_finite_scalar_on_their_samples(name: str, rng: np.random.Generator) -> None:
    opdef = OPS[name]
    inputs = opdef.sample_inputs(rng)
    assert all(np.asarray(a).dtype in (np.float64, np.int64) for a in inputs)
    out = run(name, *inputs, **opdef.sample_params)
    assert np.shape(out) == () and np.isfinite(out)
    types = [TensorType(np.shape(a), "i64" if np.asarray(a).dtype == np.int64 else "f64")
             for a in inputs]
    assert opdef.output_type(*types) == TensorType((), "f32")


# ---- activations ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_activation_matches_reference(name: str, rng: np.random.Generator) -> None:
    params, ref = ACTIVATIONS[name]
    x = _activation_inputs(rng)
    if name == "lif_rate":
        x = np.abs(x) / 3.0 + np.where(x > 0, 0.7, 0.0)  # rates below, at and above v = 1
    with np.errstate(over="raise", divide="raise", invalid="raise"):
        got = run(name, x, **params)
    assert got.shape == x.shape and np.all(np.isfinite(got))
    np.testing.assert_allclose(got, ref(x), rtol=1e-12, atol=1e-15, err_msg=name)


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_activation_keeps_float32(name: str, rng: np.random.Generator) -> None:
    params = ACTIVATIONS[name][0]
    x = (rng.standard_normal((3, 5)) * 3).astype(np.float32)
    assert run(name, x, **params).dtype == np.float32


def test_tie_rules_at_zero() -> None:
    x = np.array([-2.0, 0.0, 3.0])
    np.testing.assert_array_equal(run("step", x), [0.0, 1.0, 1.0])
    np.testing.assert_array_equal(run("step", x, at_zero=0.0), [0.0, 0.0, 1.0])
    np.testing.assert_array_equal(run("sign", x), [-1.0, 1.0, 1.0])
    np.testing.assert_array_equal(run("sign", x, at_zero=0.0), [-1.0, 0.0, 1.0])
    np.testing.assert_array_equal(run("one_hot", np.zeros((2, 3))), [[1, 0, 0], [1, 0, 0]])


def test_ramp_is_not_the_misprinted_formula() -> None:
    x = np.array([-3.0, -0.5, 0.0, 0.5, 3.0])  # the printed min(-1, max(1, x)) is -1 everywhere
    np.testing.assert_array_equal(run("ramp", x), [-1.0, -0.5, 0.0, 0.5, 1.0])


def test_softmax_rows_sum_to_one_at_extremes() -> None:
    x = np.array([[300.0, -300.0, 0.0], [1000.0, 1000.0, -1000.0]])
    for axis in (-1, 0):
        s = run("softmax", x, axis=axis)
        np.testing.assert_allclose(s.sum(axis=axis), 1.0)
    np.testing.assert_allclose(run("log_softmax", x)[0], [0.0, -600.0, -300.0])


def test_lif_rate_asymptote_and_threshold() -> None:
    got = run("lif_rate", np.array([0.5, 1.0, 1.0 + 1e-12, 1e9]))
    np.testing.assert_allclose(got, [0.0, 0.0, 1 / (0.002 + 0.02 * 27.631), 500.0], rtol=1e-3)


# ---- gradients through the torch table -----------------------------------------------------

def _torch_grad(name: str, x: np.ndarray, **params: Any) -> np.ndarray:
    torch = pytest.importorskip("torch")
    from nndsl.backends.torch.prims import make_torch_prims

    xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    out = lookup(name).compute(make_torch_prims(), xt, **params)
    (grad,) = torch.autograd.grad(out.sum(), xt)
    return grad.numpy()


@pytest.mark.parametrize("name", sorted(n for n in ACTIVATIONS if OPS[n].differentiable))
def test_activation_gradient_is_finite_at_extremes(name: str) -> None:
    x = EXTREMES.reshape(1, -1)
    if name == "lif_rate":
        x = np.concatenate([x, x + 1.5])
    assert np.all(np.isfinite(_torch_grad(name, x, **ACTIVATIONS[name][0]))), name


DERIVATIVES: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "sigmoid": lambda x: _sig(x) * (1 - _sig(x)),
    "tanh": lambda x: 1 / np.cosh(np.clip(x, -350, 350)) ** 2,
    "relu": lambda x: (x > 0) * 1.0,  # 0 at x = 0 (ACT-04)
    "softplus": _sig,
    "ramp": lambda x: ((x > -1) & (x < 1)) * 1.0,  # 𝟙{-1 < x < 1} (ACT-09)
    "elu": lambda x: np.where(x > 0, 1.0, np.exp(np.minimum(x, 0))),
    "arctan": lambda x: 1 / (1 + x**2),
    "silu": lambda x: _sig(x) * (1 + x * (1 - _sig(x))),
    "sine": np.cos,
    "gaussian_rbf": lambda x: -2 * x * np.exp(-(x**2)),
}


@pytest.mark.parametrize("name", sorted(DERIVATIVES))
def test_activation_gradient_matches_derivative(name: str) -> None:
    np.testing.assert_allclose(_torch_grad(name, EXTREMES), DERIVATIVES[name](EXTREMES),
                               rtol=1e-10, atol=1e-15, err_msg=name)


def test_sigmoid_gradient_vanishes_at_extremes() -> None:
    x = np.array([-400.0, -300.0, 300.0, 400.0])
    np.testing.assert_allclose(_torch_grad("sigmoid", x), [math.exp(-400), math.exp(-300), 0, 0],
                               rtol=1e-12, atol=0)


# ---- losses --------------------------------------------------------------------------------

def _onehot(t: np.ndarray, k: int) -> np.ndarray:
    return np.eye(k)[t]


def _probs(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    z = rng.standard_normal((n, k)) * 2
    return np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)


def test_mse_and_sse(rng: np.random.Generator) -> None:
    y, t = rng.standard_normal((5, 3)), rng.standard_normal((5, 3))
    sq = [(a - b) ** 2 for a, b in zip(y.ravel(), t.ravel(), strict=True)]
    assert run("mse", y, t) == pytest.approx(sum(sq) / 15, rel=1e-12)
    assert run("mse", y, t, reduction="sum") == pytest.approx(sum(sq), rel=1e-12)
    assert run("sse", y, t) == pytest.approx(0.5 * sum(sq) / 5, rel=1e-12)
    assert run("sse", y, t, reduction="sum") == pytest.approx(0.5 * sum(sq), rel=1e-12)
    assert run("sse", y[:, 0], t[:, 0]) == pytest.approx(0.5 * np.mean((y - t)[:, 0] ** 2))
    assert run("gaussian_nll", y, t, sigma=2.0) == pytest.approx(sum(sq) / 8 / 5, rel=1e-12)


def test_bce(rng: np.random.Generator) -> None:
    y, t = rng.uniform(0.01, 0.99, (4, 3)), rng.integers(0, 2, (4, 3)) * 1.0
    want = -np.mean([math.log(p) if b else math.log(1 - p) for p, b in zip(y.flat, t.flat,
                                                                             strict=True)])
    assert run("bce", y, t) == pytest.approx(want, rel=1e-12)
    saturated = run("bce", np.array([0.0, 1.0, 0.0]), np.array([0.0, 1.0, 1.0]))
    assert saturated == pytest.approx(-math.log(1e-12) / 3)


def test_bce_logits_is_bce_of_sigmoid(rng: np.random.Generator) -> None:
    z, t = rng.standard_normal((4, 3)) * 3, rng.integers(0, 2, (4, 3)) * 1.0
    want = np.mean(np.logaddexp(0, z) - z * t)
    assert run("bce_logits", z, t) == pytest.approx(want, rel=1e-12)
    assert run("bce_logits", z, t) == pytest.approx(run("bce", _sig(z), t), rel=1e-9)
    z = np.array([300.0, -300.0, 300.0])
    assert run("bce_logits", z, np.array([1.0, 0.0, 0.0])) == pytest.approx(100.0)


def test_cross_entropy_index_onehot_and_soft_targets(rng: np.random.Generator) -> None:
    y, t = _probs(rng, 6, 4), rng.integers(0, 4, 6)
    want = -np.mean([math.log(y[i, c]) for i, c in enumerate(t)])
    assert run("cross_entropy", y, t) == pytest.approx(want, rel=1e-12)
    assert run("cross_entropy", y, _onehot(t, 4)) == pytest.approx(want, rel=1e-12)
    soft = _probs(rng, 6, 4)
    assert run("cross_entropy", y, soft) == pytest.approx(-np.sum(soft * np.log(y)) / 6)
    assert run("cross_entropy", y, t, reduction="sum") == pytest.approx(want * 6, rel=1e-12)


def test_cross_entropy_logits_and_nll(rng: np.random.Generator) -> None:
    z, t = rng.standard_normal((6, 4)) * 3, rng.integers(0, 4, 6)
    lse = [math.log(sum(math.exp(v) for v in row)) for row in z]
    want = np.mean([lse[i] - z[i, c] for i, c in enumerate(t)])
    assert run("cross_entropy_logits", z, t) == pytest.approx(want, rel=1e-12)
    assert run("cross_entropy_logits", z, _onehot(t, 4)) == pytest.approx(want, rel=1e-12)
    logp = z - np.array(lse)[:, None]
    assert run("nll", logp, t) == pytest.approx(want, rel=1e-12)
    assert run("nll", logp, _onehot(t, 4)) == pytest.approx(want, rel=1e-12)
    extreme = np.array([[300.0, -300.0, 0.0], [-300.0, 300.0, 0.0]])
    assert run("cross_entropy_logits", extreme, np.array([0, 0])) == pytest.approx(300.0)


def test_hinge_logistic_max_margin(rng: np.random.Generator) -> None:
    y, c = rng.standard_normal((6, 1)) * 2, rng.choice([-1.0, 1.0], (6, 1))
    assert run("hinge", y, c, margin=0.5) == pytest.approx(
        np.mean([max(0.0, 0.5 - a * b) for a, b in zip(y.flat, c.flat, strict=True)]))
    assert run("logistic", y, c) == pytest.approx(
        np.mean([math.log(1 + math.exp(-a * b)) for a, b in zip(y.flat, c.flat, strict=True)]))
    assert run("logistic", np.array([300.0, -300.0]), np.array([-1.0, -1.0])) == pytest.approx(150)
    z, t = rng.standard_normal((6, 4)), rng.integers(0, 4, 6)
    per = [max(0.0, max(z[i, k] + 1.5 for k in range(4) if k != c) - z[i, c])
           for i, c in enumerate(t)]
    assert run("max_margin", z, t, margin=1.5) == pytest.approx(np.mean(per), rel=1e-12)
    assert run("max_margin", z, _onehot(t, 4), margin=1.5) == pytest.approx(np.mean(per))


def test_kl_normal_golden_and_formula(rng: np.random.Generator) -> None:
    # LOSS-22: mu = 0.5, sigma = 1.3 gives 0.207636 per latent dimension
    assert run("kl_normal", np.array([[0.5]]), np.array([[2 * math.log(1.3)]])) == pytest.approx(
        0.207636, abs=1e-6)
    mu, logvar = rng.standard_normal((4, 3)), rng.standard_normal((4, 3))
    var = np.exp(logvar)
    assert run("kl_normal", mu, logvar) == pytest.approx(
        0.5 * np.sum(var + mu**2 - np.log(var) - 1) / 4, rel=1e-12)


def test_l1_activity(rng: np.random.Generator) -> None:
    h = rng.standard_normal((4, 3))
    assert run("l1_activity", h, strength=0.3) == pytest.approx(0.3 * np.abs(h).sum() / 4)


def test_contractive_is_the_squared_frobenius_norm_of_the_encoder_jacobian(
        rng: np.random.Generator) -> None:
    x, w, b = rng.standard_normal((3, 5)), rng.standard_normal((4, 5)), rng.standard_normal(4)

    def encode(v: np.ndarray) -> np.ndarray:
        return 1 / (1 + np.exp(-(w @ v + b)))

    eps, norms = 1e-6, []
    for v in x:  # central differences, column by column
        jac = np.stack([(encode(v + eps * e) - encode(v - eps * e)) / (2 * eps)
                        for e in np.eye(5)], axis=1)
        norms.append(np.sum(jac**2))
    code = np.stack([encode(v) for v in x])
    assert run("contractive", code, w, strength=0.1) == pytest.approx(0.1 * np.mean(norms),
                                                                      rel=1e-7)


def test_accuracy_and_mae(rng: np.random.Generator) -> None:
    y = np.array([[0.1, 0.7, 0.2], [0.5, 0.2, 0.3], [0.2, 0.3, 0.5], [0.6, 0.3, 0.1]])
    t = np.array([1, 0, 0, 1])
    assert run("accuracy", y, t) == pytest.approx(0.5)
    assert run("accuracy", y, _onehot(t, 3)) == pytest.approx(0.5)
    single = np.array([[0.9], [0.2], [0.5], [0.7]])
    assert run("accuracy", single, np.array([[1.0], [0.0], [1.0], [0.0]])) == pytest.approx(0.5)
    assert run("accuracy", single, np.array([1.0, 0.0, 0.0, 1.0])) == pytest.approx(1.0)
    a, b = rng.standard_normal((4, 3)), rng.standard_normal((4, 3))
    assert run("mae", a, b) == pytest.approx(np.abs(a - b).sum() / 12)


def _loss_grad(name: str, y: np.ndarray, t: np.ndarray, **params: Any) -> np.ndarray:
    torch = pytest.importorskip("torch")
    from nndsl.backends.torch.prims import make_torch_prims

    yt = torch.tensor(y, dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(OPS[name].compute(make_torch_prims(), yt, t, **params), yt)
    return grad.numpy()


def test_loss_gradients_are_finite_at_extremes() -> None:
    z = np.array([[300.0, -300.0, 0.0], [-300.0, 300.0, 0.0]])
    for name, t in [("cross_entropy_logits", np.array([1, 1])), ("max_margin", np.array([0, 2])),
                    ("bce_logits", (z > 0) * 1.0), ("logistic", np.sign(z) - (z == 0))]:
        assert np.all(np.isfinite(_loss_grad(name, z, t))), name
    y = np.array([[0.0, 1.0, 0.5], [1.0, 0.0, 0.5]])
    for name, t in [("bce", np.array([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])),
                    ("cross_entropy", np.array([0, 1]))]:
        assert np.all(np.isfinite(_loss_grad(name, y, t))), name


def test_logits_gradient_is_softmax_minus_target(rng: np.random.Generator) -> None:
    z, t = rng.standard_normal((5, 4)), rng.integers(0, 4, 5)
    soft = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(_loss_grad("cross_entropy_logits", z, t),
                               (soft - _onehot(t, 4)) / 5, rtol=1e-10)


# ---- shape rules of losses -----------------------------------------------------------------

def _type(*shape: int | str, dtype: str = "f32") -> TensorType:
    return TensorType(tuple(shape), dtype)


def test_mse_rejects_mismatched_target_shape() -> None:
    with pytest.raises(NndslError) as err:
        OPS["mse"].output_type(_type("batch", 1), _type("batch", 2))
    want = "mse expects target shape [batch, 1] to match prediction, got [batch, 2]"
    assert str(err.value) == want
    assert err.value.span is None
    with pytest.raises(NndslError, match=r"got \[batch\]$"):
        OPS["mse"].output_type(_type("batch", 1), _type("batch"))
    with pytest.raises(NndslError):
        OPS["bce"].output_type(_type("batch", 1), _type("time", 1))
    assert OPS["mse"].output_type(_type("batch", 3), _type(8, 3)) == _type()


def test_class_losses_accept_indices_or_one_hot() -> None:
    for name in ("cross_entropy", "cross_entropy_logits", "nll", "max_margin", "accuracy"):
        opdef = OPS[name]
        assert opdef.output_type(_type("batch", 10), _type("batch", dtype="i64")) == _type()
        assert opdef.output_type(_type("batch", 10), _type("batch", 10)) == _type()
        with pytest.raises(NndslError, match=f"^{name} expects target shape"):
            opdef.output_type(_type("batch", 10), _type("batch", 3))


def test_two_input_losses_name_their_inputs() -> None:
    with pytest.raises(NndslError, match=r"logvar shape \[batch, 2\] to match mu"):
        OPS["kl_normal"].output_type(_type("batch", 2), _type("batch", 3))
    with pytest.raises(NndslError, match="encoder weight") as err:
        OPS["contractive"].output_type(_type("batch", 3), _type("batch", 5))
    assert "enc.weight" in (err.value.hint or "")
    assert OPS["contractive"].output_type(_type("batch", 3), _type(3, 5)) == _type()


def test_activation_parameters_are_checked() -> None:
    with pytest.raises(NndslError, match="axis 2 is out of range"):
        OPS["softmax"].output_type(_type("batch", 4), axis=2)
    with pytest.raises(NndslError, match="low < high"):
        OPS["hardtanh"].output_type(_type("batch", 4), low=1.0, high=-1.0)
    with pytest.raises(NndslError, match="tau_m"):
        OPS["lif_rate"].output_type(_type("batch", 4), tau_ref=0.002, tau_m=0.0)
    assert OPS["log_softmax"].output_type(_type("batch", 4), axis=0) == _type("batch", 4)


# ---- initializers --------------------------------------------------------------------------

FAN_OUT, FAN_IN = 300, 500
STDS: dict[str, float] = {
    "normal": 1.0, "he_normal": math.sqrt(2 / FAN_IN), "he_uniform": math.sqrt(2 / FAN_IN),
    "glorot_normal": math.sqrt(2 / (FAN_IN + FAN_OUT)),
    "glorot_normal_half": math.sqrt(1 / (FAN_IN + FAN_OUT)),
    "glorot_uniform": math.sqrt(2 / (FAN_IN + FAN_OUT)), "lecun_normal": math.sqrt(1 / FAN_IN),
    "lecun_uniform": math.sqrt(1 / FAN_IN), "torch_default": math.sqrt(1 / (3 * FAN_IN)),
    "uniform": 0.1 / math.sqrt(12),
}
BOUNDS: dict[str, float] = {
    "he_uniform": math.sqrt(6 / FAN_IN), "glorot_uniform": math.sqrt(6 / (FAN_IN + FAN_OUT)),
    "lecun_uniform": math.sqrt(3 / FAN_IN), "torch_default": 1 / math.sqrt(FAN_IN),
    "uniform": 0.05,
}


def init(name: str, shape: tuple[int, ...] = (FAN_OUT, FAN_IN), seed: int = 0,
         fans: tuple[int, int] = (FAN_IN, FAN_OUT), **params: Any) -> np.ndarray:
    fn = get(name, "initializer").compute
    return fn(np.random.default_rng(seed), shape, *fans, **params)


@pytest.mark.parametrize("name", sorted(STDS))
def test_initializer_statistics(name: str) -> None:
    w = init(name)
    assert w.dtype == np.float64 and w.shape == (FAN_OUT, FAN_IN)
    assert abs(w.mean()) < 5 * STDS[name] / math.sqrt(w.size)
    assert w.std() == pytest.approx(STDS[name], rel=0.01)
    if name in BOUNDS:
        assert np.abs(w).max() <= BOUNDS[name] and np.abs(w).max() > 0.99 * BOUNDS[name]


@pytest.mark.parametrize("name", mine("initializer"))
def test_initializers_are_deterministic(name: str) -> None:
    params = {"value": 0.5} if name == "const" else {}
    shape = (6, 6) if name == "identity" else (6, 7)
    a, b = init(name, shape, 7, **params), init(name, shape, 7, **params)
    np.testing.assert_array_equal(a, b)
    assert a.dtype == np.float64 and a.shape == shape
    if name not in ("zeros", "ones", "const", "identity"):
        assert not np.array_equal(a, init(name, shape, 8, **params))


def test_constant_initializers() -> None:
    np.testing.assert_array_equal(init("zeros", (2, 3)), np.zeros((2, 3)))
    np.testing.assert_array_equal(init("ones", (4,)), np.ones(4))
    np.testing.assert_array_equal(init("const", (2, 2), value=0.01), np.full((2, 2), 0.01))
    np.testing.assert_array_equal(init("identity", (2, 3), gain=2.0), [[2, 0, 0], [0, 2, 0]])
    assert init("normal", (4000,), mean=3.0, std=0.5).mean() == pytest.approx(3.0, abs=0.05)
    lo_hi = init("uniform", (4000,), low=2.0, high=3.0)
    assert lo_hi.min() >= 2.0 and lo_hi.max() < 3.0


@pytest.mark.parametrize("shape", [(6, 6), (4, 9), (9, 4), (8, 3, 2, 2)])
def test_orthogonal(shape: tuple[int, ...]) -> None:
    w = init("orthogonal", shape, gain=2.0).reshape(shape[0], -1) / 2.0
    small = min(w.shape)
    gram = w @ w.T if w.shape[0] == small else w.T @ w
    np.testing.assert_allclose(gram, np.eye(small), atol=1e-12)


def test_sparse_gives_each_unit_exactly_k_inputs() -> None:
    w = init("sparse", (200, 50), connections=10, std=2.0)
    np.testing.assert_array_equal((w != 0).sum(axis=1), 10)
    assert w[w != 0].std() == pytest.approx(2.0, rel=0.1)
    conv = init("sparse", (4, 3, 3, 3), connections=5)
    np.testing.assert_array_equal((conv.reshape(4, -1) != 0).sum(axis=1), 5)
    assert np.all(init("sparse", (3, 4), connections=10) != 0)  # fewer inputs: fully connected


def test_initializer_parameters_are_checked() -> None:
    for name, params in [("normal", {"std": -1.0}), ("uniform", {"low": 1.0, "high": 0.0}),
                         ("sparse", {"connections": -1}), ("identity", {})]:
        with pytest.raises(NndslError):
            init(name, (2, 3, 4), **params)


# ---- regularizers and constraints ----------------------------------------------------------

def test_penalties(rng: np.random.Generator) -> None:
    w = rng.standard_normal((5, 4))
    assert run("l1", w, strength=0.3) == pytest.approx(0.3 * sum(abs(v) for v in w.flat))
    assert run("l2", w, strength=0.3) == pytest.approx(0.15 * sum(v * v for v in w.flat))
    assert run("elastic", w, l1=0.2, l2=0.4) == pytest.approx(
        run("l1", w, strength=0.2) + run("l2", w, strength=0.4), rel=1e-12)
    assert np.shape(run("l2", w, strength=1.0)) == ()
    with pytest.raises(NndslError):
        run("l2", w, strength=-1.0)


def test_penalty_gradients_follow_the_lambda_convention() -> None:
    w = np.array([[-2.0, 0.0, 3.0]])
    np.testing.assert_allclose(_torch_grad("l2", w, strength=0.1), 0.1 * w)  # weight_decay=0.1
    np.testing.assert_allclose(_torch_grad("l1", w, strength=0.1), [[-0.1, 0.0, 0.1]])


def test_max_norm(rng: np.random.Generator) -> None:
    w = rng.standard_normal((6, 8)) * np.array([[0.1], [3.0], [0.2], [5.0], [1.0], [0.0]])
    got = run("max_norm", w, c=2.0, axis=1)
    norms = np.sqrt((w**2).sum(axis=1))
    for row, new, n in zip(w, got, norms, strict=True):
        np.testing.assert_allclose(new, row if n <= 2.0 else row * 2.0 / n, rtol=1e-12)
    conv = rng.standard_normal((4, 3, 2, 2)) * 5
    out = run("max_norm", conv, c=1.0, axis=(1, 2, 3))
    np.testing.assert_allclose(np.sqrt((out.reshape(4, -1) ** 2).sum(axis=1)), 1.0)
    with pytest.raises(NndslError):
        run("max_norm", w, c=0.0, axis=1)


def test_non_neg_and_unit_norm(rng: np.random.Generator) -> None:
    w = rng.standard_normal((5, 4))
    np.testing.assert_array_equal(run("non_neg", w), np.where(w > 0, w, 0.0))
    w[:, 2] = 0.0
    out = run("unit_norm", w, axis=0)
    np.testing.assert_allclose(np.sqrt((out**2).sum(axis=0)), [1.0, 1.0, 0.0, 1.0])
    np.testing.assert_allclose(out[:, 0], w[:, 0] / np.linalg.norm(w[:, 0]))
