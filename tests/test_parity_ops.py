"""Every tensor op (activation, layer, loss, metric) on torch and onnxruntime against NumPy.

The op's own samples (`samples` shapes filled with seeded normals, or `sample_inputs`) and
`sample_params`, with seeded weights of the shapes its `weights` rule gives, run through the
NumPy table (the reference), then:

- torch, in float32 and float64, at inference, and in training mode where the NumPy result
  does not depend on the seed (batch statistics, not dropout masks);
- a one-node nndsl graph exported by `export_graph` (symbolic batch dimension, weights as
  initializers) and run in onnxruntime, in float32. Training-only ops must be the identity at
  inference and leave nothing but Identity nodes in the export.

Tolerances: float32 rtol 1e-5, atol 1e-5; float64 rtol 1e-9, atol 1e-12; integer and boolean
outputs exactly. A float32 case must also stay float32 in NumPy (no float64 leaking in through
a constant). `test_torch_gradients` runs torch.autograd.gradcheck (float64) per differentiable op.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pytest
import torch
from nndsl.backends.numpy.prims import make_numpy_prims
from nndsl.backends.onnx.emitter import export_graph
from nndsl.backends.onnx.runtime import run_onnx
from nndsl.backends.torch.prims import make_torch_prims

import nndsl.ops  # noqa: F401  (registers every op family)
from nndsl.errors import NndslError
from nndsl.ir import Call, Graph, Node, TensorType, WeightDecl
from nndsl.ops.registry import OPS, TENSOR_KINDS, OpDef, WithUpdates

from .conftest import assert_arrays_match

TENSOR_OPS = sorted(name for name, d in OPS.items() if d.kind in TENSOR_KINDS)
TOLERANCE = {"f32": dict(rtol=1e-5, atol=1e-5), "f64": dict(rtol=1e-9, atol=1e-12)}
FLOAT = {"f32": np.float32, "f64": np.float64}
IR_DTYPE = {"float32": "f32", "float64": "f64", "int64": "i64", "bool": "bool"}


@dataclass(frozen=True)
class OpCase:
    """One sample of an op: tensor inputs, hyper-parameters, weight arrays and their roles."""

    inputs: tuple[np.ndarray, ...]
    params: dict[str, Any]
    weights: dict[str, np.ndarray]
    roles: dict[str, str]

    def astype(self, dtype: str) -> OpCase:
        """Float arrays in `dtype`; integer and boolean arrays unchanged."""
        def cast(a: np.ndarray) -> np.ndarray:
            return a.astype(FLOAT[dtype]) if a.dtype.kind == "f" else a

        return replace(self, inputs=tuple(cast(a) for a in self.inputs),
                       weights={k: cast(v) for k, v in self.weights.items()})


def _input_array(value: Any) -> np.ndarray:
    array = np.asarray(value)
    return array.astype(np.int64) if array.dtype.kind in "iu" else array


def make_cases(opdef: OpDef) -> list[OpCase]:
    """The op's samples with seeded weights (buffers positive: they may be variances)."""
    rng = np.random.default_rng(zlib.crc32(opdef.name.encode()))
    if opdef.sample_inputs is not None:
        input_sets = [tuple(_input_array(a) for a in opdef.sample_inputs(rng))]
    else:
        input_sets = [tuple(rng.standard_normal(shape) for shape in shapes)
                      for shapes in opdef.samples]
    cases = []
    for inputs in input_sets:
        types = [TensorType(a.shape, IR_DTYPE[a.dtype.name]) for a in inputs]
        specs = opdef.weights(*types, **opdef.sample_params) if opdef.weights else {}
        weights = {}
        for name, spec in specs.items():
            w = rng.standard_normal(spec.shape)
            weights[name] = np.abs(w) + 0.5 if spec.role == "buffer" else w
        cases.append(OpCase(inputs, dict(opdef.sample_params), weights,
                            {k: s.role for k, s in specs.items()}))
    return cases


def run_numpy(opdef: OpDef, case: OpCase, training: bool = False, seed: int = 0) -> Any:
    P = make_numpy_prims(training=training, seed=seed)
    return opdef.compute(P, *case.inputs, **case.params, **case.weights)


def run_torch(opdef: OpDef, case: OpCase, training: bool = False) -> Any:
    P = make_torch_prims(training=training, generator=torch.Generator().manual_seed(0))
    fn = opdef.native.get("torch", opdef.compute)
    tensors = [torch.tensor(a) for a in case.inputs]
    out = fn(P, *tensors, **case.params, **{k: torch.tensor(v) for k, v in case.weights.items()})
    return _to_numpy(out)


def _to_numpy(out: Any) -> Any:
    if isinstance(out, WithUpdates):
        return WithUpdates(_to_numpy(out.value), {k: _to_numpy(v) for k, v in out.updates.items()})
    return out.detach().numpy() if isinstance(out, torch.Tensor) else np.asarray(out)


def one_node_graph(opdef: OpDef, case: OpCase) -> Graph:
    """`y = op(x0, x1, ...)` with the leading (batch) size symbolic, as in a real export."""
    batch = case.inputs[0].shape[0] if case.inputs and case.inputs[0].ndim else None
    inputs = []
    for i, a in enumerate(case.inputs):
        shape = tuple("batch" if (j == 0 and d == batch) else d for j, d in enumerate(a.shape))
        inputs.append((f"x{i}", TensorType(shape, IR_DTYPE[a.dtype.name])))
    try:
        out_type = opdef.output_type(*(t for _, t in inputs), **case.params)
    except NndslError:  # the shape rule is tested elsewhere; here only the values matter
        out_type = None
    decls = tuple(WeightDecl(f"op.{k}", tuple(v.shape), Call("const"), role=case.roles[k])
                  for k, v in case.weights.items())
    node = Node("y", opdef.name, tuple(name for name, _ in inputs),
                params=tuple(case.params.items()),
                weights=tuple((k, f"op.{k}") for k in case.weights), type=out_type)
    return Graph(f"parity_{opdef.name}", tuple(inputs), (node,), ("y",), decls)


def export_case(opdef: OpDef, case: OpCase) -> Any:
    return export_graph(one_node_graph(opdef, case),
                        {f"op.{k}": v for k, v in case.weights.items()})


def run_onnxruntime(opdef: OpDef, case: OpCase) -> np.ndarray:
    feeds = {f"x{i}": a for i, a in enumerate(case.inputs)}
    return run_onnx(export_case(opdef, case), feeds)[0]


def assert_same(got: Any, want: Any, dtype: str, what: str) -> None:
    if isinstance(want, WithUpdates):
        assert isinstance(got, WithUpdates), f"{what}: no buffer updates"
        assert set(got.updates) == set(want.updates), f"{what}: updated buffers differ"
        assert_same(got.value, want.value, dtype, what)
        for k in want.updates:
            assert_same(got.updates[k], want.updates[k], dtype, f"{what}, update of {k}")
        return
    assert_arrays_match(got, want, TOLERANCE[dtype], what)


def _float_leaves(value: Any) -> list[np.ndarray]:
    if isinstance(value, WithUpdates):
        return [*_float_leaves(value.value), *(np.asarray(v) for v in value.updates.values())]
    return [np.asarray(value)]


def assert_keeps_float32(want: Any, what: str) -> None:
    for leaf in _float_leaves(want):
        assert leaf.dtype.kind != "f" or leaf.dtype == np.float32, (
            f"{what}: float32 inputs give {leaf.dtype} in NumPy (a constant leaks float64)")


def _deterministic_training(opdef: OpDef, case: OpCase) -> Any | None:
    """The NumPy training-mode result when it does not depend on the seed, else None."""
    try:
        first, second = (run_numpy(opdef, case, training=True, seed=s) for s in (0, 1))
    except (NndslError, ValueError):
        return None
    a, b = _float_leaves(first), _float_leaves(second)
    if len(a) == len(b) and all(x.shape == y.shape and np.array_equal(x, y, equal_nan=True)
                                for x, y in zip(a, b, strict=True)):
        return first
    return None


def check_torch(opdef: OpDef, case: OpCase, what: str) -> None:
    for dtype in ("f32", "f64"):
        typed = case.astype(dtype)
        want = run_numpy(opdef, typed)
        if dtype == "f32":
            assert_keeps_float32(want, what)
        assert_same(run_torch(opdef, typed), want, dtype, f"{what} on torch ({dtype})")
        want = _deterministic_training(opdef, typed)
        if want is not None:
            got = run_torch(opdef, typed, training=True)
            assert_same(got, want, dtype, f"{what} on torch ({dtype}, training)")


def check_onnxruntime(opdef: OpDef, case: OpCase, what: str) -> None:
    typed = case.astype("f32")
    want = run_numpy(opdef, typed)
    if opdef.training_only:
        np.testing.assert_array_equal(want, typed.inputs[0], err_msg=f"{what}: not the identity")
        kept = {n.op_type for n in export_case(opdef, typed).graph.node} - {"Identity"}
        assert not kept, f"{what}: a training-only op leaves {sorted(kept)} in the export"
    assert_same(run_onnxruntime(opdef, typed), want, "f32", f"{what} on onnxruntime")


CHECKS: dict[str, Callable[[OpDef, OpCase, str], None]] = {
    "torch": check_torch, "onnxruntime": check_onnxruntime,
}


@pytest.mark.parametrize("backend", sorted(CHECKS))
@pytest.mark.parametrize("name", TENSOR_OPS)
def test_op_matches_numpy_reference(name: str, backend: str) -> None:
    opdef = OPS[name]
    for i, case in enumerate(make_cases(opdef)):
        CHECKS[backend](opdef, case, f"{name} sample {i}")


# op -> why finite differences cannot agree on its samples (strict: a fixed sample must say so)
GRADCHECK_XFAIL: dict[str, str] = {}


@pytest.mark.parametrize("name", [
    pytest.param(n, marks=pytest.mark.xfail(reason=GRADCHECK_XFAIL[n], strict=True))
    if n in GRADCHECK_XFAIL else n
    for n in TENSOR_OPS if OPS[n].differentiable and not OPS[n].surrogate  # a surrogate is not
])                                                       # the slope finite differences measure
def test_torch_gradients(name: str) -> None:
    """float64 autograd through the torch table against torch's finite differences."""
    opdef = OPS[name]
    fn = opdef.native.get("torch", opdef.compute)
    P = make_torch_prims()
    for case in make_cases(opdef):
        case = case.astype("f64")
        inputs = [torch.tensor(a, requires_grad=a.dtype.kind == "f") for a in case.inputs]
        weights = {k: torch.tensor(v, requires_grad=case.roles[k] != "buffer")
                   for k, v in case.weights.items()}
        leaves = [t for t in (*inputs, *weights.values()) if t.requires_grad]
        if not leaves:
            continue

        def forward(*xs: torch.Tensor, case: OpCase = case, inputs: list[torch.Tensor] = inputs,
                    weights: dict[str, torch.Tensor] = weights) -> torch.Tensor:
            given = iter(xs)  # gradcheck's leaves, in the order of `leaves`
            args = [next(given) if t.requires_grad else t for t in inputs]
            kwargs = {k: next(given) if t.requires_grad else t for k, t in weights.items()}
            return fn(P, *args, **case.params, **kwargs)

        assert torch.autograd.gradcheck(forward, tuple(leaves)), name


def test_export_keeps_ir_names() -> None:
    """Inputs, outputs and weights keep their IR names; the batch stays a dim_param."""
    x = TensorType(("batch", 4))
    h, y = TensorType(("batch", 3)), TensorType(("batch", 3))
    graph = Graph("mlp", (("x", x),), (
        Node("h", "dense", ("x",), params=(("units", 3),),
             weights=(("weight", "d.weight"), ("bias", "d.bias")), type=h),
        Node("y", "relu", ("h",), type=y),
        Node("z", "dropout", ("y",), params=(("rate", 0.5),), type=y),
    ), ("h", "z"), (WeightDecl("d.weight", (3, 4), Call("normal")),
                    WeightDecl("d.bias", (3,), Call("zeros"), role="bias")))
    rng = np.random.default_rng(0)
    weights = {"d.weight": rng.standard_normal((3, 4)), "d.bias": rng.standard_normal(3)}
    model = export_graph(graph, weights)
    dims = [[d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
            for v in (*model.graph.input, *model.graph.output)]
    assert [v.name for v in model.graph.input] == ["x"] and dims == [["batch", 4]] + [
        ["batch", 3]] * 2
    assert [v.name for v in model.graph.output] == ["h", "z"]
    assert {t.name: t.data_type for t in model.graph.initializer if t.name.startswith("d.")} == {
        "d.weight": 1, "d.bias": 1}  # float32, as declared
    data = rng.standard_normal((5, 4)).astype(np.float32)
    got_h, got_z = run_onnx(model, {"x": data})
    want_h = data @ weights["d.weight"].T.astype(np.float32) + weights["d.bias"].astype(np.float32)
    np.testing.assert_allclose(got_h, want_h, **TOLERANCE["f32"])
    np.testing.assert_allclose(got_z, np.maximum(want_h, 0), **TOLERANCE["f32"])
