"""The `**` operator: Python's precedence and associativity, folding of numbers (with positioned
errors where Python would give a complex number, a division by zero or an enormous integer),
and its lowering to the `pow` op on every backend."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from nndsl.backends.numpy.prims import make_numpy_prims

from nndsl.errors import NndslError
from nndsl.interpreter import run
from nndsl.program import load


def model(expr: str, shape: str = "[batch, 3]") -> str:
    return f"model m {{\n  input x: {shape}\n  y = {expr}\n  output y\n}}\n"


def forward(expr: str, x: np.ndarray) -> np.ndarray:
    program, _ = load("m.nn", model(expr))
    graph = program.models[0]
    return run(graph, make_numpy_prims(), {"x": x}, {}).env[graph.outputs[0]]


X = np.array([[0.5, 1.5, 2.0], [3.0, 0.25, 1.0]])


@pytest.mark.parametrize(("expr", "want"), [
    ("x ** 2", X**2),
    ("-x ** 2", -(X**2)),  # ** binds tighter than a minus on its left
    ("x ** -1", 1 / X),
    ("x ** 2 ** 0.5", X ** (2**0.5)),  # right-associative
    ("(x ** 2) ** 0.5", X),
    ("2 * x ** 3 + 1", 2 * X**3 + 1),
    ("x ** x", X**X),
    ("(x -> relu) ** 0.5", np.sqrt(X)),
    ("2 ** x", 2.0**X),
])
def test_precedence_and_values(expr: str, want: np.ndarray) -> None:
    np.testing.assert_allclose(forward(expr, X), want, rtol=1e-6)  # numbers are f32 scalars


def test_number_only_powers_fold_into_one_constant() -> None:
    program, _ = load("m.nn", model("x * 2 ** -1 ** 2 + (-2) ** 3"))
    nodes = program.models[0].nodes
    assert sorted(n.param("value") for n in nodes if n.op == "scalar") == [-8.0, 0.5]
    assert "pow" not in [n.op for n in nodes]


@pytest.mark.parametrize(("expr", "words", "at"), [
    ("x * 0 ** -1", "division by zero", "0 **"),
    ("x * (-8) ** 0.5", "not a real number", "(-8)"),
    ("x * 10 ** 40", "overflows", "10 **"),
    ("x * 2 ** 2 ** 100", "overflows", "2 ** 100"),  # refused before Python computes it
    ("x * 10.0 ** 400", "overflows", "10.0"),
])
def test_folding_errors_are_positioned(expr: str, words: str, at: str) -> None:
    with pytest.raises(NndslError) as info:
        load("m.nn", model(expr))
    err = info.value
    assert words in err.message and err.span is not None
    column = len("  y = ") + expr.index(at) + 1
    assert (err.span.line, err.span.column) == (3, column), err.render({"m.nn": model(expr)})


def test_a_doubled_operator_is_a_syntax_error() -> None:
    with pytest.raises(NndslError) as info:
        load("m.nn", model("x *** 2"))
    assert info.value.span is not None and info.value.span.line == 3


def test_gradient_of_a_power_through_torch_and_numpy() -> None:
    torch = pytest.importorskip("torch")
    from nndsl.backends.numpy.autodiff import value_and_grad
    from nndsl.backends.torch.prims import make_torch_prims

    program, _ = load("m.nn", model("x ** 3 * 2 ** x"))
    graph = program.models[0]

    def objective(P, x):  # type: ignore[no-untyped-def]
        return P.sum(run(graph, P, {"x": x}, {}).env[graph.outputs[0]])

    _, (grad,) = value_and_grad(objective, X)
    want = 3 * X**2 * 2.0**X + X**3 * 2.0**X * np.log(2.0)
    np.testing.assert_allclose(grad, want, rtol=1e-7)  # the numbers are f32 scalars
    xt = torch.tensor(X, requires_grad=True)
    objective(make_torch_prims(), xt).backward()
    np.testing.assert_allclose(xt.grad.numpy(), want, rtol=1e-7)


def test_export_is_an_onnx_pow_and_imports_back_as_the_operator(tmp_path: Path) -> None:
    from nndsl.backends.onnx.runtime import run_onnx

    from nndsl.export import export_onnx
    from nndsl.importer import import_model

    program, sources = load("m.nn", model("(x -> relu) ** 1.5 - 2 ** x"))
    exported = export_onnx(program, sources, program.models[0], {})
    assert "Pow" in [n.op_type for n in exported.graph.node]
    x = X.astype(np.float32)
    (got,) = run_onnx(exported, {"x": x})
    np.testing.assert_allclose(got, X**1.5 - 2.0**X, rtol=1e-5)
    spec = import_model(exported, "m", "m.npz").spec
    assert "** 1.5" in spec and "2.0 ** x" in spec, spec
    again, sources2 = load("m2.nn", spec)
    (back,) = run_onnx(export_onnx(again, sources2, again.models[0], {}), {"x": x})
    np.testing.assert_array_equal(back, got)
