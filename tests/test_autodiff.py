"""Reverse-mode gradients of every primitive (backends/numpy/vjps.py) and the tape around them.

Each differentiable primitive runs on seeded float64 inputs (broadcasting, Python numbers,
strides, asymmetric padding, dilation, repeated indices, batched matmul); the scalar
Σ c ⊙ P.prim(...) with a random cotangent c is differentiated by the tape and by central
differences (every element perturbed), and the two must agree within gradcheck's TOLERANCE.
Cases avoid kinks and ties; the tie conventions have their own tests against torch autograd.
Non-differentiable primitives must return plain values even when given Vars.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from nndsl.backends.numpy.autodiff import (
    Var,
    grad,
    leaf,
    make_grad_prims,
    value_and_grad,
    value_of,
)
from nndsl.backends.numpy.gradcheck import (
    TOLERANCE,
    noise_floor,
    numerical_grad,
    relative_error,
)
from nndsl.backends.numpy.prims import make_numpy_prims
from nndsl.backends.numpy.vjps import NOT_DIFFERENTIABLE, VJPS
from nndsl.backends.torch.prims import make_torch_prims

from nndsl.ir import Call, Graph, Node, TensorType, WeightDecl
from nndsl.prims import PRIMS

RNG = np.random.default_rng(2024)  # the cases below are drawn once, in order: seeded


def normal(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape)


def positive(*shape: int) -> np.ndarray:
    return np.abs(normal(*shape)) + 0.5


def apart(*shape: int) -> np.ndarray:
    """Distinct values in [-2, 2], evenly spaced, in random order: no ties for max-likes."""
    return RNG.permutation(np.linspace(-2.0, 2.0, int(np.prod(shape)))).reshape(shape)


Case = tuple[Callable[..., Any], tuple[Any, ...]]


def c(fn: Callable[..., Any], *inputs: Any) -> Case:
    return fn, inputs


CONV_2D = dict(stride=(2, 1), padding=((1, 0), (0, 2)), dilation=(1, 2))

# primitive -> cases (fn(P, *inputs), inputs); the float arrays among the inputs are differentiated
CASES: dict[str, list[Case]] = {
    "add": [c(lambda P, a, b: P.add(a, b), normal(2, 1, 3), normal(4, 3)),
            c(lambda P, a: P.add(2.0, a), normal(3))],
    "sub": [c(lambda P, a, b: P.sub(a, b), normal(2, 3), normal(3)),
            c(lambda P, a: P.sub(1.0, a), normal(2, 3))],
    "mul": [c(lambda P, a, b: P.mul(a, b), normal(3, 1), normal(1, 4)),
            c(lambda P, a: P.mul(a, 0.5), normal(2, 3))],
    "div": [c(lambda P, a, b: P.div(a, b), normal(2, 3), positive(3)),
            c(lambda P, b: P.div(1.0, b), positive(2, 3))],
    "pow": [c(lambda P, a, b: P.pow(a, b), positive(2, 3), normal(2, 3)),
            c(lambda P, a: P.pow(a, 3), normal(2, 3)), c(lambda P, b: P.pow(2.0, b), normal(4))],
    "maximum": [c(lambda P, a, b: P.maximum(a, b), normal(2, 3), normal(3)),
                c(lambda P, a: P.maximum(a, 0.1), normal(3, 4))],
    "minimum": [c(lambda P, a, b: P.minimum(a, b), normal(3, 1), normal(4)),
                c(lambda P, a: P.minimum(-0.1, a), normal(3, 4))],
    "neg": [c(lambda P, x: P.neg(x), normal(2, 3))],
    "exp": [c(lambda P, x: P.exp(x), normal(2, 3))],
    "log": [c(lambda P, x: P.log(x), positive(2, 3))],
    "sqrt": [c(lambda P, x: P.sqrt(x), positive(2, 3))],
    "abs": [c(lambda P, x: P.abs(x), normal(2, 3))],
    "tanh": [c(lambda P, x: P.tanh(x), normal(2, 3) * 2)],
    "sigmoid": [c(lambda P, x: P.sigmoid(x), normal(2, 3) * 3)],
    "atan": [c(lambda P, x: P.atan(x), normal(2, 3) * 2)],
    "sin": [c(lambda P, x: P.sin(x), normal(2, 3) * 2)],
    "cos": [c(lambda P, x: P.cos(x), normal(2, 3) * 2)],
    "erf": [c(lambda P, x: P.erf(x), normal(2, 3))],
    "where": [c(lambda P, a, b: P.where(P.gt(a, 0.0), a, b), normal(2, 3), normal(3)),
              c(lambda P, a, m: P.where(m, 1.0, a), normal(4), normal(3, 1) > 0)],
    "cast": [c(lambda P, x: P.cast(x, "f64"), normal(2, 3))],
    "sum": [c(lambda P, x: P.sum(x), normal(2, 3, 4)),
            c(lambda P, x: P.sum(x, axis=(0, 2), keepdims=True), normal(2, 3, 4)),
            c(lambda P, x: P.sum(x, -1), normal(2, 3))],
    "mean": [c(lambda P, x: P.mean(x, axis=1), normal(2, 3, 4)),
             c(lambda P, x: P.mean(x, (0, 2), True), normal(2, 3, 4))],
    "max": [c(lambda P, x: P.max(x, axis=1), apart(2, 3, 4)), c(lambda P, x: P.max(x), apart(3, 4)),
            c(lambda P, x: P.max(x, axis=(0, 2), keepdims=True), apart(2, 3, 4))],
    "reshape": [c(lambda P, x: P.reshape(x, (None, -1)), normal(2, 3, 4)),
                c(lambda P, x: P.reshape(x, (None, 2, 6)), normal(2, 12))],
    "transpose": [c(lambda P, x: P.transpose(x), normal(2, 3, 4)),
                  c(lambda P, x: P.transpose(x, (-1, 0, 1)), normal(2, 3, 4))],
    "concat": [c(lambda P, a, b, d: P.concat([a, b, d], -1), normal(2, 3), normal(2, 1),
                 normal(2, 2)),
               c(lambda P, a, b: P.concat([a, b, a], 0), normal(2, 3), normal(1, 3))],
    "slice": [c(lambda P, x: P.slice(x, 1, 1, 3), normal(4, 5)),
              c(lambda P, x: P.slice(x, 0, -2, None), normal(4, 5))],
    "flip": [c(lambda P, x: P.flip(x, -1), normal(2, 3, 4))],
    "pad": [c(lambda P, x: P.pad(x, ((1, 0), (2, 1))), normal(2, 3)),
            c(lambda P, x: P.pad(x, ((0, 0), (0, 0), (1, 2)), 0.5), normal(2, 3, 4))],
    "take": [c(lambda P, x, i: P.take(x, i, axis=0), normal(5, 3),
               np.array([[0, 2, 2], [4, 0, 2]])),
             c(lambda P, x, i: P.take(x, i, 1), normal(3, 5), np.array([1, -1, 1, 1]))],
    "matmul": [c(lambda P, a, b: P.matmul(a, b), normal(2, 3), normal(3, 4)),
               c(lambda P, a, b: P.matmul(a, b), normal(2, 1, 2, 3), normal(3, 3, 2)),
               c(lambda P, a, b: P.matmul(a, b), normal(3), normal(2, 3, 4)),
               c(lambda P, a, b: P.matmul(a, b), normal(2, 2, 3), normal(3)),
               c(lambda P, a, b: P.matmul(a, b), normal(3), normal(3))],
    "conv": [c(lambda P, x, w: P.conv(x, w, **CONV_2D), normal(2, 3, 7, 6), normal(4, 3, 3, 2)),
             c(lambda P, x, w: P.conv(x, w, (3,), ((2, 1),), (2,)), normal(2, 2, 11),
               normal(3, 2, 3)),
             c(lambda P, x, w: P.conv(x, w, (1, 1), ((1, 1), (1, 1)), None), normal(1, 2, 5, 5),
               normal(2, 2, 3, 3))],
    "max_pool": [c(lambda P, x: P.max_pool(x, (2, 3), (2, 1), ((0, 1), (1, 1))),
                   apart(2, 3, 7, 6)),
                 c(lambda P, x: P.max_pool(x, (3,), (2,), ((1, 1),)), apart(2, 3, 9))],
    "avg_pool": [c(lambda P, x: P.avg_pool(x, (2, 3), (2, 1), ((0, 1), (1, 1))),
                   normal(2, 3, 7, 6)),
                 c(lambda P, x: P.avg_pool(x, (3,), (2,), ((1, 2),)), normal(2, 3, 9))],
    "kmax": [c(lambda P, x: P.kmax(x, 3, 1), apart(2, 7)), c(lambda P, x: P.kmax(x, 2, 0),
                                                             apart(5, 3))],
}

# non-differentiable primitive -> a call on a float input (which is passed as a Var)
NO_GRADIENT: dict[str, Callable[[Any, Any], Any]] = {
    "gt": lambda P, x: P.gt(x, 0.0), "ge": lambda P, x: P.ge(0.0, x),
    "lt": lambda P, x: P.lt(x, x), "le": lambda P, x: P.le(x, 0.5),
    "eq": lambda P, x: P.eq(x, x), "argmax": lambda P, x: P.argmax(x, -1),
    "shape": lambda P, x: P.shape(x), "one_hot": lambda P, x: P.one_hot(P.argmax(x, 1), 4),
    "zeros_like": lambda P, x: P.zeros_like(x), "ones_like": lambda P, x: P.ones_like(x),
    "constant": lambda P, x: P.constant(P.shape(x), "f64"), "sign": lambda P, x: P.sign(x),
    "random_uniform_like": lambda P, x: P.random_uniform_like(x),
    "random_normal_like": lambda P, x: P.random_normal_like(x),
    "stop_gradient": lambda P, x: P.stop_gradient(x),
}


def check_case(fn: Callable[..., Any], inputs: tuple[Any, ...], what: str) -> None:
    """Tape gradients of Σ c ⊙ fn(P, *inputs) against central differences, per float input."""
    want = fn(make_numpy_prims(), *inputs)
    cot = RNG.standard_normal(np.shape(want))

    def objective(P: Any, *xs: Any) -> Any:
        return P.sum(P.mul(fn(P, *xs), cot))

    P = make_grad_prims()
    out = fn(P, *[leaf(x) for x in inputs])
    np.testing.assert_array_equal(value_of(out), want, err_msg=f"{what}: forward differs")
    value, grads = value_and_grad(objective, *inputs)
    for i, (x, g) in enumerate(zip(inputs, grads, strict=True)):
        if g is None:
            assert x.dtype.kind != "f", f"{what}: float input {i} got no gradient"
            continue
        assert g.shape == x.shape and g.dtype == x.dtype, f"{what}: input {i} gradient shape"
        numeric = numerical_grad(lambda: objective(make_numpy_prims(), *inputs), x,
                                 range(x.size))
        err = relative_error(g.reshape(-1), numeric, noise_floor(value)).max()
        assert err <= TOLERANCE, f"{what}: input {i} relative error {err:.2e}"


def test_every_primitive_has_a_rule_or_is_marked() -> None:
    assert set(VJPS).isdisjoint(NOT_DIFFERENTIABLE)
    assert set(VJPS) | NOT_DIFFERENTIABLE == set(PRIMS)
    assert set(CASES) == set(VJPS) and set(NO_GRADIENT) == NOT_DIFFERENTIABLE


def test_grad_table_has_the_primitive_names() -> None:
    """Every primitive, as the NumPy table has them, and the table's own attributes."""
    P, base = make_grad_prims(training=True, seed=3), make_numpy_prims()
    assert all(callable(getattr(P, name)) for name in PRIMS)
    assert {n for n in vars(base) if callable(getattr(base, n))} - set(PRIMS) == set()
    assert (P.backend, P.training, P.tape.entries) == ("numpy", True, [])
    assert P.rng.random() == np.random.default_rng(3).random()


@pytest.mark.parametrize("prim", sorted(CASES))
def test_vjp_matches_central_differences(prim: str) -> None:
    for i, (fn, inputs) in enumerate(CASES[prim]):
        check_case(fn, inputs, f"{prim} case {i}")


@pytest.mark.parametrize("prim", sorted(NO_GRADIENT))
def test_non_differentiable_primitives_return_plain_values(prim: str) -> None:
    P = make_grad_prims(training=True)
    x = leaf(normal(3, 4))
    out = NO_GRADIENT[prim](P, x)
    assert not isinstance(out, Var), f"{prim} returned a Var"
    assert not P.tape.entries


# ---- tie and kink conventions (finite differences are meaningless there: torch decides) -----


def torch_grads(fn: Callable[..., Any], *arrays: np.ndarray) -> list[np.ndarray]:
    """Gradients of Σ fn(P, *xs) through the torch table (float64 autograd)."""
    ts = [torch.tensor(a, requires_grad=True) for a in arrays]
    fn(make_torch_prims(), *ts).sum().backward()
    return [t.grad.numpy() for t in ts]


TIES: dict[str, tuple[Callable[..., Any], tuple[np.ndarray, ...]]] = {
    "max splits evenly (amax)": (lambda P, x: P.max(x, axis=-1),
                                 (np.array([[1.0, 3.0, 3.0], [2.0, 2.0, 2.0]]),)),
    "max over all splits evenly": (lambda P, x: P.max(x), (np.array([[4.0, 1.0], [4.0, 4.0]]),)),
    "maximum gives half each": (lambda P, a, b: P.maximum(a, b),
                                (np.array([1.0, 2.0, 3.0]), np.array([1.0, 0.0, 3.0]))),
    "minimum gives half each": (lambda P, a, b: P.minimum(a, b),
                                (np.array([1.0, 2.0, 3.0]), np.array([1.0, 5.0, 3.0]))),
    "max_pool routes to the first maximum": (
        lambda P, x: P.max_pool(x, (2, 2), (1, 1), ((0, 1), (1, 0))),
        (np.round(np.random.default_rng(5).standard_normal((1, 2, 4, 4))),)),
    "kmax routes to the lower index": (lambda P, x: P.kmax(x, 2, -1),
                                       (np.array([[1.0, 2.0, 2.0, 2.0], [0.0, 5.0, 0.0, 5.0]]),)),
    "abs has slope 0 at 0": (lambda P, x: P.abs(x), (np.array([-1.0, 0.0, 2.0]),)),
    "sqrt has slope inf at 0": (lambda P, x: P.sqrt(x), (np.array([0.0, 4.0]),)),
}


@pytest.mark.parametrize("name", sorted(TIES))
def test_tie_conventions_match_torch(name: str) -> None:
    fn, arrays = TIES[name]
    _, ours = value_and_grad(lambda P, *xs: P.sum(fn(P, *xs)), *arrays)
    for got, want in zip(ours, torch_grads(fn, *arrays), strict=True):
        np.testing.assert_array_equal(got, want, err_msg=name)


def test_pow_exponent_gradient_is_zero_for_non_positive_bases() -> None:
    a, b = np.array([-2.0, 0.0, 3.0]), np.array([2.0, 1.5, 0.5])
    _, (ga, gb) = value_and_grad(lambda P, a, b: P.sum(P.pow(a, b)), a, b)
    np.testing.assert_allclose(gb, [0.0, 0.0, 3.0 ** 0.5 * np.log(3.0)])
    np.testing.assert_allclose(ga, [-4.0, 0.0, 0.5 / 3.0 ** 0.5])
    _, (ga,) = value_and_grad(lambda P, a: P.sum(P.pow(a, 0)), np.array([0.0, 2.0]))
    np.testing.assert_array_equal(ga, [0.0, 0.0])  # x^0 is constant, even at 0


def test_where_relu_is_zero_at_the_kink() -> None:
    x = np.array([-1.0, 0.0, 2.0])
    _, (g,) = value_and_grad(lambda P, x: P.sum(P.where(P.gt(x, 0.0), x, P.zeros_like(x))), x)
    np.testing.assert_array_equal(g, [0.0, 0.0, 1.0])


# ---- the tape and the entry points ----------------------------------------------------------


def test_gradients_keep_the_operand_dtype() -> None:
    x32 = normal(2, 3).astype(np.float32)
    value, (g,) = value_and_grad(lambda P, x: P.sum(P.mul(P.cast(x, "f64"), 2.0)), x32)
    assert g.dtype == np.float32 and np.asarray(value).dtype == np.float64
    np.testing.assert_array_equal(g, np.full((2, 3), 2.0, np.float32))


def test_unused_inputs_get_zeros_and_non_floats_none() -> None:
    x, y, idx = normal(3), normal(2), np.array([0, 2])
    _, (gx, gy, gi) = value_and_grad(lambda P, x, y, i: P.sum(P.take(x, i)), x, y, idx)
    np.testing.assert_array_equal(gx, [1.0, 0.0, 1.0])
    np.testing.assert_array_equal(gy, np.zeros(2))
    assert gi is None


def test_a_value_used_twice_accumulates() -> None:
    x = normal(4)
    _, (g,) = value_and_grad(lambda P, x: P.sum(P.add(P.mul(x, x), P.sin(x))), x)
    np.testing.assert_allclose(g, 2 * x + np.cos(x), rtol=1e-14)


def test_a_non_scalar_output_needs_a_cotangent() -> None:
    x = normal(2, 3)
    with pytest.raises(ValueError, match="cotangent"):
        value_and_grad(lambda P, x: P.exp(x), x)
    cot = normal(2, 3)
    _, (g,) = value_and_grad(lambda P, x: P.exp(x), x, cotangent=cot)
    np.testing.assert_allclose(g, cot * np.exp(x), rtol=1e-14)


def test_array_keywords_are_refused() -> None:
    with pytest.raises(TypeError, match="positionally"):
        make_grad_prims().where(np.array([True]), x=leaf(normal(1)), y=0.0)


def test_training_randomness_replays_with_the_seed() -> None:
    x = normal(5)
    draws = [value_of(make_grad_prims(True, seed=3).random_uniform_like(leaf(x))) for _ in "ab"]
    np.testing.assert_array_equal(draws[0], draws[1])
    np.testing.assert_array_equal(draws[0], make_numpy_prims(True, seed=3).random_uniform_like(x))


def _dense_graph() -> Graph:
    """h = tanh(x Wᵀ + b); y = dense(h) reusing W's transpose (tied); z = sum-free output."""
    x, h = TensorType(("batch", 3)), TensorType(("batch", 2))
    return Graph("g", (("x", x),), (
        Node("h0", "dense", ("x",), (("units", 2),), (("weight", "a.weight"), ("bias", "a.bias")),
             h, "a"),
        Node("h", "tanh", ("h0",), type=h),
        Node("y", "dense", ("h",), (("units", 3), ("tied", "a")), (("weight", "a.weight"),),
             x, "b"),
    ), ("y",), (WeightDecl("a.weight", (2, 3), Call("normal")),
                WeightDecl("a.bias", (2,), Call("zeros"), role="bias")))


def test_grad_of_a_graph_output_with_tied_and_frozen_weights() -> None:
    graph, x = _dense_graph(), normal(4, 3)
    weights = {"a.weight": normal(2, 3), "a.bias": normal(2)}
    cot = normal(4, 3)
    got = grad(graph, {"x": x}, weights, cotangent=cot, inputs=["x"])
    tensors = {k: torch.tensor(v, requires_grad=True) for k, v in {"x": x, **weights}.items()}
    w = tensors["a.weight"]
    y = torch.tanh(tensors["x"] @ w.T + tensors["a.bias"]) @ w
    (y * torch.tensor(cot)).sum().backward()
    np.testing.assert_allclose(got.outputs["y"], y.detach().numpy(), rtol=1e-12)
    for name in ("a.weight", "a.bias"):
        np.testing.assert_allclose(got.weights[name], tensors[name].grad.numpy(), rtol=1e-10)
    np.testing.assert_allclose(got.inputs["x"], tensors["x"].grad.numpy(), rtol=1e-10)
    frozen = grad(graph, {"x": x}, weights, cotangent=cot, frozen={"a.bias"})
    assert set(frozen.weights) == {"a.weight"}
    np.testing.assert_array_equal(frozen.weights["a.weight"], got.weights["a.weight"])
    assert set(grad(graph, {"x": x}, weights, cotangent=cot, frozen={"a"}).weights) == set()
