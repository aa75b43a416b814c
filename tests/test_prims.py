"""Every primitive on every backend against the NumPy table (the reference meaning).

Each case runs one primitive on seeded inputs: in torch (float32 and float64), and as a
one-primitive ONNX model in onnxruntime and in onnx's reference evaluator. Outputs must have
NumPy's dtype and match within rtol 1e-5 / atol 1e-6 (float32) or 1e-10 / 1e-12 (float64);
integer and boolean outputs match exactly.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from nndsl.backends.numpy.prims import make_numpy_prims
from nndsl.backends.onnx.emitter import OnnxEmitter, SymbolicDim, make_onnx_prims
from nndsl.backends.onnx.runtime import run_onnx
from nndsl.backends.torch.prims import make_torch_prims
from onnx.reference import ReferenceEvaluator

from nndsl.prims import PRIMS

from .conftest import assert_arrays_match

META = {"backend", "training", "rng"}
TOLERANCE = {"f32": dict(rtol=1e-5, atol=1e-6), "f64": dict(rtol=1e-10, atol=1e-12)}
FLOAT = {"f32": np.float32, "f64": np.float64}
# onnxruntime 1.31 CPU kernels that exist for float32 only: the float64 models are valid ONNX
# (the reference evaluator runs them) but onnxruntime cannot load them.
ORT_NO_FLOAT64 = {"atan", "erf", "conv", "avg_pool"}
# onnx's reference evaluator computes these in float32 even for float64 inputs
REFERENCE_FLOAT32_MATH = {"erf"}


RNG = np.random.default_rng(1234)  # the cases below are drawn once, in order: seeded


def normal(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape)


def positive(*shape: int) -> np.ndarray:
    return np.abs(normal(*shape)) + 0.25


def ints(high: int, *shape: int, low: int = 0) -> np.ndarray:
    return RNG.integers(low, high, size=shape, dtype=np.int64)


def mask(*shape: int) -> np.ndarray:
    return RNG.random(shape) > 0.5


def with_ties(*shape: int) -> np.ndarray:
    """Values from a small set, so maxima and comparisons hit equal elements."""
    return np.round(normal(*shape)) / 2


Case = tuple[tuple[Any, ...], dict[str, Any]]


def c(*args: Any, **kwargs: Any) -> Case:
    return args, kwargs


def _binary_cases() -> list[Case]:
    return [c(normal(2, 3), normal(2, 3) + 3.0), c(normal(2, 3), 1.5), c(2.0, normal(3)),
            c(normal(2, 1, 3), normal(4, 3) + 2.0), c(normal(2, 3), ints(5, 3, low=1))]


SIGMOID_EXTREMES = np.array([-300.0, -100.0, -88.0, -20.0, -1e-3, 0.0, 1e-3, 20.0, 88.0, 300.0])
WINDOW_2D = dict(kernel=(2, 3), stride=(2, 1), padding=((0, 1), (1, 1)))

# primitive -> its cases; the first case of a differentiable primitive is smooth (no ties, no
# kinks), so it doubles as the gradcheck input.
CASES: dict[str, list[Case]] = {
    "add": _binary_cases(),
    "sub": _binary_cases(),
    "mul": _binary_cases() + [c(mask(2, 3), 2.0)],
    "div": [c(normal(2, 3), positive(2, 3)), c(normal(2, 3), 4.0), c(1.0, positive(3)),
            c(ints(9, 2, 3), ints(4, 2, 3, low=1))],
    "pow": [c(positive(2, 3), normal(2, 3)), c(normal(2, 3), 2), c(positive(2, 3), 0.5),
            c(2.0, normal(3))],
    "maximum": [c(normal(2, 3), normal(2, 3)), c(normal(2, 3), 0.0), c(normal(3, 1), normal(4))],
    "minimum": [c(normal(2, 3), normal(2, 3)), c(normal(2, 3), 0.0), c(-1.0, normal(4))],
    "neg": [c(normal(2, 3)), c(ints(5, 4))],
    "exp": [c(normal(2, 3)), c(np.array([-100.0, 0.0, 80.0])), c(ints(5, 3))],
    "log": [c(positive(2, 3)), c(ints(5, 3, low=1))],
    "sqrt": [c(positive(2, 3))],
    "abs": [c(normal(2, 3)), c(ints(5, 4, low=-5))],
    "sign": [c(normal(2, 3)), c(np.array([-2.0, -0.0, 0.0, 3.0])), c(ints(3, 4, low=-3))],
    "tanh": [c(normal(2, 3) * 3), c(np.array([-300.0, -20.0, 0.0, 20.0, 300.0]))],
    "sigmoid": [c(normal(2, 3) * 3), c(SIGMOID_EXTREMES)],
    "atan": [c(normal(2, 3) * 3), c(np.array([-1e6, 0.0, 1e6]))],
    "sin": [c(normal(2, 3) * 3)],
    "cos": [c(normal(2, 3) * 3)],
    "erf": [c(normal(2, 3) * 2), c(np.array([-10.0, -1e-4, 0.0, 1e-4, 10.0]))],
    "stop_gradient": [c(normal(2, 3)), c(ints(3, 4))],
    "gt": [c(normal(2, 3), normal(2, 3)), c(with_ties(3, 4), 0.0), c(ints(4, 5), 2)],
    "ge": [c(with_ties(3, 4), with_ties(3, 4)), c(with_ties(3, 4), 0.0)],
    "lt": [c(normal(2, 3), normal(3)), c(0.0, with_ties(3, 4))],
    "le": [c(with_ties(3, 4), with_ties(3, 4)), c(with_ties(3, 4), 0.5)],
    "eq": [c(with_ties(3, 4), with_ties(3, 4)), c(ints(3, 6), 1), c(with_ties(4), 0.0)],
    "where": [c(mask(2, 3), normal(2, 3), normal(2, 3)), c(mask(2, 3), normal(2, 3), 0.0),
              c(mask(3, 1), 1.0, normal(4)), c(normal(2, 3), normal(2, 3), -1.0)],
    "cast": [c(normal(2, 3), "f64"), c(normal(2, 3), "f32"), c(normal(2, 3) * 4, "i64"),
             c(ints(9, 4), "f32"), c(mask(2, 3), "f32")],
    "sum": [c(normal(2, 3, 4)), c(normal(2, 3, 4), axis=1, keepdims=True),
            c(normal(2, 3, 4), axis=(0, 2)), c(normal(2, 3), axis=-1), c(mask(3, 4), axis=0),
            c(normal(2, 3), axis=None, keepdims=True)],
    "mean": [c(normal(2, 3, 4), axis=-1), c(normal(2, 3, 4)), c(normal(2, 3, 4), (1, 2), True),
             c(ints(9, 3, 4), axis=1)],
    "max": [c(normal(2, 3, 4), axis=1), c(normal(2, 3, 4)), c(normal(2, 3, 4), (0, 2), True),
            c(with_ties(3, 4), axis=-1)],
    "argmax": [c(normal(2, 5), 1), c(with_ties(3, 6), -1, True), c(with_ties(4, 3), 0),
               c(normal(2, 3), None)],
    "shape": [c(normal(2, 3, 4)), c(normal(5))],
    "reshape": [c(normal(2, 3, 4), (None, -1)), c(normal(2, 3, 4), (6, 4)),
                c(normal(2, 3, 4), (-1,)), c(normal(2, 3, 4), (None, 3, 2, 2)),
                c(normal(2, 12), (None, -1, 3))],
    "transpose": [c(normal(2, 3, 4)), c(normal(2, 3, 4), (0, 2, 1)),
                  c(normal(2, 3, 4), (-1, 0, 1))],
    "concat": [c([normal(2, 3), normal(2, 5)], 1), c([normal(2, 3), normal(1, 3)], 0),
               c([normal(2, 3), normal(2, 3), normal(2, 3)], -1)],
    "slice": [c(normal(4, 5), 1, 1, 3), c(normal(4, 5), 0, -2, None),
              c(normal(4, 5), -1, None, 2), c(normal(4, 5), 1, 2, 99)],
    "flip": [c(normal(3, 4), 0), c(normal(2, 3, 4), -1)],
    "pad": [c(normal(2, 3), ((1, 0), (2, 1))), c(normal(2, 3, 4), ((0, 0), (0, 0), (1, 2)), 0.5),
            c(normal(2, 3), ((0, 0), (1, 1)), -math.inf)],
    "take": [c(normal(5, 3), ints(5, 2, 4)), c(normal(3, 5), ints(5, 2), axis=1),
             c(normal(5, 3), np.array([-1, 0, 4]))],
    "one_hot": [c(ints(4, 2, 3), 4), c(np.array([-1, 0, 3, 7]), 4, "f64"),
                c(ints(5, 6), 5, "i64")],
    "zeros_like": [c(normal(2, 3)), c(ints(5, 4))],
    "ones_like": [c(normal(2, 3)), c(mask(2, 2))],
    "constant": [c([[1, 2], [3, 4]], "f32"), c(0.5, "f64"), c([1, 2], "i64"), c(-1.25)],
    "matmul": [c(normal(2, 3), normal(3, 4)), c(normal(5, 2, 3), normal(3, 4)),
               c(normal(3), normal(3, 4)), c(normal(2, 3), normal(3)), c(normal(3), normal(3)),
               c(normal(2, 1, 2, 3), normal(3, 3, 2))],
    "conv": [c(normal(2, 3, 7, 6), normal(4, 3, 3, 2), (2, 1), ((1, 0), (0, 1)), (1, 2)),
             c(normal(2, 3, 9), normal(4, 3, 3), (1,), ((1, 1),), (1,)),
             c(normal(2, 2, 9), normal(3, 2, 2), (2,), ((2, 0),), (2,)),
             c(normal(1, 2, 5, 5), normal(2, 2, 3, 3), (1, 1), ((1, 1), (1, 1)), None)],
    "max_pool": [c(normal(2, 3, 7, 6), **WINDOW_2D),
                 c(normal(2, 3, 9), (3,), (2,), ((1, 1),)),
                 c(with_ties(1, 2, 4, 4), (2, 2), (2, 2), ((0, 0), (0, 0)))],
    "avg_pool": [c(normal(2, 3, 7, 6), **WINDOW_2D),
                 c(normal(2, 3, 9), (3,), (2,), ((1, 1),))],
    "kmax": [c(normal(2, 7), 3, 1), c(with_ties(3, 6), 2, -1), c(normal(5, 3), 2, 0)],
}
RANDOM = {"random_uniform_like", "random_normal_like"}
NOT_DIFFERENTIABLE = {"gt", "ge", "lt", "le", "eq", "argmax", "shape", "one_hot", "zeros_like",
                      "ones_like", "constant", "sign", "stop_gradient", *RANDOM}


def _floats(value: Any, dtype: str) -> Any:
    """Float arrays in the dtype under test; everything else (ints, bools, numbers) as is."""
    if isinstance(value, list):
        return [_floats(v, dtype) for v in value]
    if isinstance(value, np.ndarray | np.generic) and value.dtype.kind == "f":
        return np.asarray(value, dtype=FLOAT[dtype])
    return value


def _case(case: Case, dtype: str) -> Case:
    args, kwargs = case
    return tuple(_floats(a, dtype) for a in args), {k: _floats(v, dtype) for k, v in kwargs.items()}


def _map_arrays(value: Any, fn: Callable[[np.ndarray], Any]) -> Any:
    if isinstance(value, list):
        return [_map_arrays(v, fn) for v in value]
    if isinstance(value, np.ndarray | np.generic):
        return fn(np.asarray(value))
    return value


def run_torch(prim: str, case: Case) -> Any:
    P = make_torch_prims()
    args, kwargs = case
    out = getattr(P, prim)(*_map_arrays(list(args), torch.tensor),
                           **{k: _map_arrays(v, torch.tensor) for k, v in kwargs.items()})
    return out.detach().numpy() if isinstance(out, torch.Tensor) else out


def one_primitive_model(prim: str, case: Case) -> tuple[Any, dict[str, np.ndarray]]:
    """An ONNX model computing `prim` on `case` (arrays become graph inputs), and its feeds."""
    em = OnnxEmitter()
    feeds: dict[str, np.ndarray] = {}

    def as_input(array: np.ndarray) -> str:
        name = f"in{len(feeds)}"
        feeds[name] = array
        return em.add_input(name, array.dtype, array.shape)

    args, kwargs = case
    out = getattr(make_onnx_prims(em), prim)(
        *_map_arrays(list(args), as_input),
        **{k: _map_arrays(v, as_input) for k, v in kwargs.items()})
    if isinstance(out, tuple):  # shape(): answered while building, nothing to run
        return out, feeds
    return em.build_model([(out, "out")], name=prim), feeds


def run_onnxruntime(prim: str, case: Case) -> Any:
    model, feeds = one_primitive_model(prim, case)
    return model if isinstance(model, tuple) else run_onnx(model, feeds)[0]


def run_reference(prim: str, case: Case) -> Any:
    model, feeds = one_primitive_model(prim, case)
    if isinstance(model, tuple):
        return model
    with np.errstate(all="ignore"):  # its Sigmoid evaluates both branches: exp(300) overflows
        return ReferenceEvaluator(model).run(None, feeds)[0]


RUNNERS = {"torch": run_torch, "onnxruntime": run_onnxruntime, "onnx-reference": run_reference}


def assert_same(got: Any, want: Any, dtype: str, what: str, tolerance: str | None = None) -> None:
    if isinstance(want, tuple):  # shape()
        assert tuple(got) == want, what
        return
    assert_arrays_match(got, want, TOLERANCE[tolerance or dtype], what)


def test_backends_cover_the_same_primitives() -> None:
    numpy_table = set(vars(make_numpy_prims())) - META
    torch_table = set(vars(make_torch_prims())) - META
    onnx_table = set(vars(make_onnx_prims(OnnxEmitter()))) - META
    assert numpy_table == torch_table == onnx_table == set(PRIMS)


def test_every_deterministic_primitive_has_cases() -> None:
    assert set(CASES) == set(PRIMS) - RANDOM


@pytest.mark.parametrize("dtype", ["f32", "f64"])
@pytest.mark.parametrize("backend", sorted(RUNNERS))
@pytest.mark.parametrize("prim", sorted(CASES))
def test_primitive_matches_numpy(prim: str, backend: str, dtype: str) -> None:
    if backend == "onnxruntime" and dtype == "f64" and prim in ORT_NO_FLOAT64:
        pytest.skip(f"onnxruntime has no float64 kernel for {prim}")
    loose = backend == "onnx-reference" and prim in REFERENCE_FLOAT32_MATH
    P = make_numpy_prims()
    for i, case in enumerate(CASES[prim]):
        case = _case(case, dtype)
        args, kwargs = case
        want = getattr(P, prim)(*args, **kwargs)
        got = RUNNERS[backend](prim, case)
        assert_same(got, want, dtype, f"{prim} case {i} on {backend} ({dtype})",
                    "f32" if loose else None)


@pytest.mark.parametrize("prim", sorted(set(CASES) - NOT_DIFFERENTIABLE))
def test_torch_primitive_gradients(prim: str) -> None:
    """float64 autograd against finite differences on the first (smooth) case."""
    args, kwargs = _case(CASES[prim][0], "f64")
    leaves: list[torch.Tensor] = []

    def leaf(array: np.ndarray) -> torch.Tensor:
        t = torch.tensor(array)
        if t.dtype.is_floating_point:
            t.requires_grad_(True)
            leaves.append(t)
        return t

    targs = _map_arrays(list(args), leaf)
    P = make_torch_prims()

    def fn(*_: torch.Tensor) -> torch.Tensor:
        return getattr(P, prim)(*targs, **kwargs)

    assert leaves, f"{prim}: the first case has no float input"
    assert torch.autograd.gradcheck(fn, tuple(leaves))


def test_random_primitives() -> None:
    """torch: seeded by the generator, shaped and typed like x; ONNX: refused (training only)."""
    x = torch.zeros(1000, 3, dtype=torch.float32)
    for name, check in (("random_uniform_like", lambda u: 0 <= u.min() and u.max() < 1),
                        ("random_normal_like", lambda n: abs(float(n.mean())) < 0.1)):
        draws = [getattr(make_torch_prims(True, torch.Generator().manual_seed(7)), name)(x)
                 for _ in range(2)]
        assert draws[0].shape == x.shape and draws[0].dtype == torch.float32
        assert torch.equal(draws[0], draws[1]) and check(draws[0])
        em = OnnxEmitter()
        with pytest.raises(NotImplementedError, match="training"):
            getattr(make_onnx_prims(em), name)(em.add_input("x", "f32", (2, 3)))


def test_onnx_shape_of_a_symbolic_dim() -> None:
    """Static sizes are ints; a symbolic one only works inside reshape."""
    em = OnnxEmitter()
    P = make_onnx_prims(em)
    x = em.add_input("x", "f32", ("batch", 3, 4))
    batch, three, four = P.shape(x)
    assert isinstance(batch, SymbolicDim) and (three, four) == (3, 4)
    with pytest.raises(NotImplementedError, match="batch"):
        _ = batch * 2
    y = P.reshape(x, (batch, three * four))
    model = em.build_model([(y, "y")])
    assert [d.dim_param or d.dim_value for d in
            model.graph.output[0].type.tensor_type.shape.dim] == ["batch", 12]
    data = normal(5, 3, 4).astype(np.float32)
    np.testing.assert_array_equal(run_onnx(model, {"x": data})[0], data.reshape(5, 12))


def test_python_numbers_keep_float32() -> None:
    """A Python number takes the dtype of the array it meets, on every backend."""
    x32 = normal(3).astype(np.float32)
    assert make_torch_prims().mul(0.5, torch.tensor(x32)).dtype == torch.float32
    assert make_torch_prims().where(torch.tensor(x32) > 0, 1.0, torch.tensor(x32)).dtype == (
        torch.float32)
    em = OnnxEmitter()
    P = make_onnx_prims(em)
    x = em.add_input("x", "f32", (3,))
    assert em.types[P.add(P.mul(0.5, x), 1)].dtype == np.float32
