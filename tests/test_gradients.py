"""Gradients of every differentiable tensor op and of every spec, by the NumPy tape.

Per op (the samples the parity tests use: `samples` shapes filled with seeded normals, or
`sample_inputs`, seeded weights of the shapes its `weights` rule gives), in float64: the
gradient of Σ c ⊙ op(...) with a random cotangent c w.r.t. every float input and every weight
must match torch autograd through the torch table (the op's native torch form where it has one)
and central differences (up to 32 sampled entries per tensor). Ops that behave differently in
training mode are also checked there, against central differences with the random draws
replayed (the same seed for every evaluation), and against torch when the NumPy result does
not depend on the seed (batch statistics).

Per spec: `gradient_check` (training mode, draws replayed; and inference mode) on every
differentiable model. Tied weights must get the sum of both paths; frozen weights none.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from nndsl.backends.numpy.autodiff import loss_and_grad, run_loss, value_and_grad
from nndsl.backends.numpy.gradcheck import (
    TOLERANCE,
    format_report,
    gradient_check,
    noise_floor,
    numerical_grad,
    relative_error,
    sample_indices,
    surrogate_op,
    worst_by_layer,
)
from nndsl.backends.numpy.prims import make_numpy_prims
from nndsl.backends.torch.prims import make_torch_prims

import nndsl.ops  # noqa: F401  (registers every op family)
from nndsl.initialize import initialize
from nndsl.ir import WeightDecl
from nndsl.ops.registry import OPS, TENSOR_KINDS, OpDef, WithUpdates
from nndsl.program import load

from .test_parity_ops import make_cases

ROOT = Path(__file__).resolve().parent.parent
SPECS = sorted((ROOT / "specs").glob("*.nn"))
IR_DTYPE = {"float64": "f64", "int64": "i64", "bool": "bool"}
TORCH_TOLERANCE = dict(rtol=1e-7, atol=1e-10)
MAX_ELEMENTS = 32  # central differences per tensor (a seeded sample beyond that)


def make_case(opdef: OpDef) -> tuple[list[np.ndarray], dict[str, np.ndarray]]:
    """The first of tests/test_parity_ops.py's cases for the op, with floats in float64."""
    case = make_cases(opdef)[0]
    inputs = [a.astype(np.float64) if a.dtype.kind == "f" else a for a in case.inputs]
    return inputs, dict(case.weights)


class OpObjective:
    """J(P, *arrays) = Σ c ⊙ op(inputs; weights): inputs then weights, one flat argument list."""

    def __init__(self, opdef: OpDef, backend: str) -> None:
        self.opdef = opdef
        self.inputs, self.weights = make_case(opdef)
        self.arrays = [*self.inputs, *self.weights.values()]
        self.fn = opdef.native.get(backend, opdef.compute)
        want = self.output(make_numpy_prims(), *self.arrays)
        self.cotangent = np.random.default_rng(7).standard_normal(np.shape(want))

    def output(self, P: Any, *arrays: Any) -> Any:
        n = len(self.inputs)
        out = self.fn(P, *arrays[:n], **self.opdef.sample_params,
                      **dict(zip(self.weights, arrays[n:], strict=True)))
        return out.value if isinstance(out, WithUpdates) else out

    def __call__(self, P: Any, *arrays: Any) -> Any:
        return P.sum(P.mul(self.output(P, *arrays), self.cotangent))

    def names(self) -> list[str]:
        return [f"input {i}" for i in range(len(self.inputs))] + list(self.weights)


def torch_gradients(opdef: OpDef, training: bool) -> list[np.ndarray | None]:
    objective = OpObjective(opdef, "torch")
    tensors = [torch.tensor(a, requires_grad=a.dtype.kind == "f") for a in objective.arrays]
    P = make_torch_prims(training=training, generator=torch.Generator().manual_seed(0))
    objective(P, *tensors).backward()
    return [None if not t.requires_grad else
            np.zeros(t.shape) if t.grad is None else t.grad.numpy() for t in tensors]


def check_against_differences(objective: OpObjective, grads: list[Any], training: bool,
                              what: str) -> float:
    """Central differences (draws replayed with seed 0) for every float array; worst error."""
    rng = np.random.default_rng(0)
    floor = noise_floor(objective(make_numpy_prims(training, 0), *objective.arrays))
    worst = 0.0
    for name, x, g in zip(objective.names(), objective.arrays, grads, strict=True):
        if g is None:
            continue
        idx = sample_indices(x.size, MAX_ELEMENTS, rng)
        numeric = numerical_grad(lambda: objective(make_numpy_prims(training, 0),
                                                   *objective.arrays), x, idx)
        err = float(relative_error(g.reshape(-1)[idx], numeric, floor).max(initial=0.0))
        assert err <= TOLERANCE, f"{what}, {name}: relative error {err:.2e}"
        worst = max(worst, err)
    return worst


def _seed_independent(opdef: OpDef) -> bool:
    """Whether the op's NumPy training-mode value is the same for two seeds."""
    objective = OpObjective(opdef, "numpy")
    a, b = (objective.output(make_numpy_prims(True, s), *objective.arrays) for s in (0, 1))
    return np.array_equal(a, b)


def _trains_differently(opdef: OpDef) -> bool:
    """Whether the op's NumPy value changes in training mode (dropout, noise, batch stats)."""
    objective = OpObjective(opdef, "numpy")
    eval_out = objective.opdef.compute(make_numpy_prims(), *objective.inputs,
                                       **opdef.sample_params, **objective.weights)
    train_out = objective.opdef.compute(make_numpy_prims(True, 0), *objective.inputs,
                                        **opdef.sample_params, **objective.weights)
    return isinstance(train_out, WithUpdates) or not np.array_equal(eval_out, train_out)


DIFFERENTIABLE = sorted(n for n, d in OPS.items() if d.kind in TENSOR_KINDS and d.differentiable)
NOT_DIFFERENTIABLE = sorted(n for n, d in OPS.items()
                            if d.kind in TENSOR_KINDS and not d.differentiable)
TRAINING = [n for n in DIFFERENTIABLE if _trains_differently(OPS[n])]
MODES = [pytest.param(n, False, id=f"{n}-inference") for n in DIFFERENTIABLE] + [
    pytest.param(n, True, id=f"{n}-training") for n in TRAINING]


@pytest.mark.parametrize(("name", "training"), MODES)
def test_op_gradients(name: str, training: bool) -> None:
    opdef = OPS[name]
    objective = OpObjective(opdef, "numpy")
    if not any(a.dtype.kind == "f" for a in objective.arrays):
        pytest.skip(f"{name} has no float input or weight")
    value, grads = value_and_grad(objective, *objective.arrays, training=training, seed=0)
    np.testing.assert_array_equal(value, objective(make_numpy_prims(training, 0),
                                                   *objective.arrays))
    what = f"{name} ({'training' if training else 'inference'})"
    if not opdef.surrogate:  # a surrogate gradient is checked against torch's alone (and by
        check_against_differences(objective, grads, training, what)  # the op's own tests)
    if training and not _seed_independent(opdef):
        return  # torch draws other random numbers: central differences are the reference
    for label, got, want in zip(objective.names(), grads, torch_gradients(opdef, training),
                                strict=True):
        assert (got is None) == (want is None), f"{what}, {label}: float-ness differs"
        if got is not None:
            np.testing.assert_allclose(got, want, **TORCH_TOLERANCE,
                                       err_msg=f"{what}, {label}: NumPy vs torch")


@pytest.mark.parametrize("name", NOT_DIFFERENTIABLE)
def test_non_differentiable_ops_have_zero_gradients(name: str) -> None:
    """Ops marked differentiable=False (hard thresholds, argmax) pass no gradient back."""
    objective = OpObjective(OPS[name], "numpy")
    _, grads = value_and_grad(objective, *objective.arrays)
    for label, g in zip(objective.names(), grads, strict=True):
        assert g is None or not g.any(), f"{name}: {label} got a gradient"


# ---- whole specs ----------------------------------------------------------------------------

@pytest.mark.parametrize("training", [True, False], ids=["training", "inference"])
@pytest.mark.parametrize("spec", SPECS, ids=lambda p: p.stem)
def test_spec_gradient_check(spec: Path, training: bool) -> None:
    program, _ = load(spec)
    rows = gradient_check(program, training=training)
    with_loss = [t for t in program.trains if t.loss is not None
                 and surrogate_op(program.model(t.model)) is None]
    if with_loss:
        checked = {r.model for r in rows}
        assert {t.model for t in with_loss} <= checked, "a model with a loss was not checked"
    failing = [r for r in rows if r.max_rel_error > TOLERANCE]
    assert not failing, "\n" + format_report(rows)


def test_report_table() -> None:
    program, _ = load(ROOT / "specs" / "xor.nn")
    rows = gradient_check(program, max_elements=2)
    assert [r.weight for r in rows] == ["dense_1.weight", "dense_1.bias", "dense_2.weight",
                                        "dense_2.bias"]
    assert [r.checked for r in rows] == [2, 2, 2, 1] and rows[0].shape == (2, 2)
    assert set(worst_by_layer(rows)) == {"dense_1", "dense_2"}
    text = format_report(rows)
    assert text.splitlines()[0].split() == ["model", "layer", "weight", "shape", "checked",
                                            "max", "abs", "err", "max", "rel", "err"]
    assert text.count(" ok") == 4


def _tied() -> tuple[Any, Any, dict[str, np.ndarray], dict[str, np.ndarray]]:
    program, _ = load(ROOT / "specs" / "tied_autoencoder.nn")
    model, train = program.models[0], program.trains[0]
    weights = initialize(model, 0, "f64")
    rng = np.random.default_rng(1)
    return model, train, weights, {"x": rng.uniform(0.05, 0.95, (5, 8))}


def test_tied_weights_get_both_paths() -> None:
    model, train, weights, feeds = _tied()
    got = loss_and_grad(model, train, feeds, weights)
    assert set(got.weights) == {"enc.weight", "enc.bias", "dense_1.bias"}
    tensors = {k: torch.tensor(v, requires_grad=True) for k, v in weights.items()}
    loss, _ = run_loss(make_torch_prims(), model, train.loss,
                       {"x": torch.tensor(feeds["x"])}, tensors)
    loss.backward()
    np.testing.assert_allclose(got.value, loss.item(), rtol=1e-12)
    for name, g in got.weights.items():
        np.testing.assert_allclose(g, tensors[name].grad.numpy(), **TORCH_TOLERANCE,
                                   err_msg=name)
    # untie: the decoder reads a copy of the array under its own name; the paths then split
    node = next(n for n in model.nodes if n.param("tied") == "enc")
    untied = replace(model, nodes=tuple(
        replace(n, weights=(("weight", "copy.weight"),)) if n is node else n
        for n in model.nodes), weights=(*model.weights, WeightDecl(
            "copy.weight", weights["enc.weight"].shape, model.weight("enc.weight").init)))
    split = loss_and_grad(untied, train, feeds, {**weights, "copy.weight": weights["enc.weight"]})
    np.testing.assert_allclose(split.value, got.value, rtol=1e-14)
    np.testing.assert_allclose(split.weights["enc.weight"] + split.weights["copy.weight"],
                               got.weights["enc.weight"], rtol=1e-12)
    assert np.abs(split.weights["copy.weight"]).max() > 1e-6  # both paths really contribute


def test_frozen_weights_get_no_gradient() -> None:
    model, train, weights, feeds = _tied()
    full = loss_and_grad(model, train, feeds, weights)
    partial = loss_and_grad(model, train, feeds, weights, frozen={"enc"})
    assert set(partial.weights) == {"dense_1.bias"}
    np.testing.assert_array_equal(partial.weights["dense_1.bias"], full.weights["dense_1.bias"])
    by_block = replace(train, settings=(*train.settings, ("freeze", ("dense_1",))))
    assert set(loss_and_grad(model, by_block, feeds, weights).weights) == {"enc.weight",
                                                                           "enc.bias"}
    one = loss_and_grad(model, train, feeds, weights, frozen={"enc.bias"})
    assert set(one.weights) == {"enc.weight", "dense_1.bias"}


def test_training_loss_reports_outputs_and_buffer_updates() -> None:
    program, _ = load(ROOT / "specs" / "residual_mlp.nn")
    model, train = program.models[0], program.trains[0]
    weights = initialize(model, 0, "f64")
    rng = np.random.default_rng(2)
    feeds = {"x": rng.standard_normal((6, 2)), "y": rng.integers(0, 2, (6, 1)).astype(float)}
    got = loss_and_grad(model, train, feeds, weights)
    assert set(got.outputs) == {"p"} and got.outputs["p"].shape == (6, 1)
    buffers = {w.name for w in model.weights if w.role == "buffer"}
    assert set(got.updates) == buffers and not buffers & set(got.weights)
    assert all(isinstance(v, np.ndarray) for v in got.updates.values())
    value, _ = run_loss(make_numpy_prims(True, 0), model, train.loss, feeds, weights)
    np.testing.assert_array_equal(got.value, value)
