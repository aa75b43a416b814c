"""NTM addressing (content, interpolation, shift, sharpening) against loops written from the
formulas and torch's cosine similarity; positioned errors; the export as one `nndsl` function
node per stage; and specs/ntm_addressing.nn, whose head learns to read the row a task asks for.
(The parity and gradient suites run every op on NumPy, torch and onnxruntime as well.)"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
from nndsl.backends.numpy.prims import make_numpy_prims

from nndsl.errors import NndslError
from nndsl.ops.registry import OPS
from nndsl.program import load

from .conftest import ROOT

torch = pytest.importorskip("torch")


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(479)


def run(name: str, *inputs: np.ndarray, **params: object) -> np.ndarray:
    return OPS[name].compute(make_numpy_prims(), *inputs, **params)


def test_cosine_similarity_is_torchs(rng: np.random.Generator) -> None:
    x, y = rng.standard_normal((4, 5, 6)), rng.standard_normal((4, 1, 6))
    y[0, 0] = 0.0  # a zero vector: 0, not NaN
    x[1, 2] = 1e-10  # a norm below eps is taken as eps
    for axis in (-1, 0):
        want = torch.nn.functional.cosine_similarity(torch.tensor(x), torch.tensor(y), dim=axis,
                                                     eps=1e-8).numpy()
        np.testing.assert_allclose(run("cosine_similarity", x, y, axis=axis), want, rtol=1e-12)


def test_content_address_is_a_softmax_of_scaled_cosines(rng: np.random.Generator) -> None:
    key, memory, beta = rng.standard_normal((2, 4)), rng.standard_normal((2, 5, 4)), \
        np.array([[0.5], [8.0]])
    want = np.zeros((2, 5))
    for b in range(2):
        sims = [key[b] @ m / (np.linalg.norm(key[b]) * np.linalg.norm(m)) for m in memory[b]]
        e = np.exp(beta[b, 0] * np.array(sims))
        want[b] = e / e.sum()
    np.testing.assert_allclose(run("content_address", key, memory, beta), want, rtol=1e-12)
    memory[:, 3] = 2.5 * key  # a row parallel to the key wins when the key is strong
    sharp = run("content_address", key, memory, np.array([[50.0], [50.0]]))
    assert (sharp.argmax(axis=1) == 3).all() and (sharp[:, 3] > 0.99).all()


def test_interpolation_gate(rng: np.random.Generator) -> None:
    wc, wp, g = rng.dirichlet(np.ones(5), 3), rng.dirichlet(np.ones(5), 3), rng.random((3, 1))
    got = run("interpolation_gate", wc, wp, g)
    np.testing.assert_allclose(got, g * wc + (1 - g) * wp, rtol=1e-12)
    np.testing.assert_allclose(got.sum(axis=1), 1.0)  # a mix of two weightings is one


def test_circular_shift_is_the_modular_convolution(rng: np.random.Generator) -> None:
    w, s = rng.dirichlet(np.ones(7), 3), rng.dirichlet(np.ones(5), 3)  # shifts -2 .. 2
    def shift(i: int, j: int) -> int:  # i - j modulo 7, as a shift in -3 .. 3
        return (i - j + 3) % 7 - 3

    want = np.array([[sum(w[b, j] * s[b, shift(i, j) + 2] for j in range(7)
                          if abs(shift(i, j)) <= 2) for i in range(7)] for b in range(3)])
    np.testing.assert_allclose(run("circular_shift", w, s), want, rtol=1e-12)
    point = np.eye(6)[[0, 3]]  # the lecture's example: [0.1, 0.8, 0.1] blurs a point
    blurred = run("circular_shift", point, np.array([[0.1, 0.8, 0.1]] * 2))
    np.testing.assert_allclose(blurred[0], [0.8, 0.1, 0, 0, 0, 0.1], atol=1e-15)  # wraps
    np.testing.assert_allclose(blurred[1], [0, 0, 0.1, 0.8, 0.1, 0], atol=1e-15)
    moved = run("circular_shift", point, np.array([[0.0, 0.0, 1.0]] * 2))  # shift +1
    np.testing.assert_array_equal(moved, np.eye(6)[[1, 4]])


def test_sharpen(rng: np.random.Generator) -> None:
    w, gamma = rng.dirichlet(np.ones(6), 3), np.array([[1.0], [2.5], [7.0]])
    want = w**gamma / (w**gamma).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(run("sharpen", w, gamma), want, rtol=1e-12)
    blur = np.array([[0.8, 0.1, 0, 0, 0, 0.1]], dtype=np.float32)
    np.testing.assert_allclose(run("sharpen", blur, np.float32([[2.0]])),
                               [[64 / 66, 1 / 66, 0, 0, 0, 1 / 66]], rtol=1e-6)
    tiny = np.full((1, 8), 1 / 8, dtype=np.float32)  # (1/8)^200 underflows float32: w / max
    np.testing.assert_allclose(run("sharpen", tiny, np.float32([[200.0]])), tiny, rtol=1e-6)


SPEC = """model m {{
  input memory: [batch, 8, 12], key: [batch, {key}], w: [batch, 8], s: [batch, {shifts}]
  input beta: [batch, {beta}]
  c = content_address(key, memory, beta)
  y = circular_shift(w, s)
  output c, y
}}
"""


@pytest.mark.parametrize(("sizes", "words"), [
    ({"key": 10}, "disagree on the row width M"),
    ({"shifts": 4}, "odd number of shifts"),
    ({"shifts": 9}, "at most the 8 rows"),
    ({"beta": 3}, "one beta per example"),
])
def test_bad_shapes_are_positioned_errors(sizes: dict[str, int], words: str) -> None:
    text = SPEC.format(**{"key": 12, "shifts": 3, "beta": 1, **sizes})
    with pytest.raises(NndslError) as info:
        load("m.nn", text)
    assert words in info.value.message and info.value.span is not None
    line = text.splitlines()[info.value.span.line - 1]
    assert ("content_address" in line) == ("circular" not in info.value.message), line


def test_each_stage_exports_as_one_function_node(tmp_path: Path) -> None:
    from nndsl.backends.onnx.runtime import run_onnx

    from nndsl.export import export_onnx
    from nndsl.importer import import_model
    from nndsl.initialize import initialize
    from nndsl.interpreter import run as run_graph

    program, sources = load(ROOT / "specs" / "ntm_addressing.nn")
    graph = program.models[0]
    weights = initialize(graph, seed=3)
    model = export_onnx(program, sources, graph, weights)
    stages = [n.op_type for n in model.graph.node if n.domain == "nndsl"]
    assert stages == ["content_address", "interpolation_gate", "circular_shift", "sharpen"]
    assert {f.name for f in model.functions} == set(stages)
    from nndsl.data.builtin import builtin

    data = builtin(Path("."), name="key_lookup", n=16, seed=5)
    feeds = {name: data[name] for name, _ in graph.inputs}
    (got,) = run_onnx(model, feeds)
    want = run_graph(graph, make_numpy_prims(), feeds, weights).env["w"]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    spec = import_model(model, "m", "m.npz").spec
    assert "content_address(" in spec and "sharpen(" in spec, spec


def test_the_head_learns_to_read_the_asked_row(tmp_path: Path) -> None:
    """Trained for its 10 epochs on the NumPy engine (about 5 s; 100% of the held-out rows),
    the exported model reads the right row of fresh memories (another seed of the generator)
    at least 95% of the time in onnxruntime."""
    from nndsl.backends.onnx.runtime import run_onnx

    from nndsl.cli import main
    from nndsl.data.builtin import builtin
    from nndsl.export import load_onnx

    spec = ROOT / "specs" / "ntm_addressing.nn"
    assert main(["train", str(spec), "--backend", "numpy", "--run-dir", str(tmp_path),
                 "--quiet"]) == 0
    with (tmp_path / "metrics.csv").open(encoding="utf-8") as f:
        last = [r for r in csv.DictReader(f) if r["kind"] == "epoch"][-1]
    assert float(last["val_accuracy"]) >= 0.95, last
    fresh = builtin(Path("."), name="key_lookup", n=1000, seed=12345)
    model = load_onnx(tmp_path / "model.onnx")
    names = [i.name for i in model.graph.input]
    (w,) = run_onnx(model, {k: fresh[k] for k in names})
    accuracy = float((w.argmax(axis=1) == fresh["y"]).mean())
    assert accuracy >= 0.95 and math.isclose(float(w.sum(axis=1).mean()), 1.0, rel_tol=1e-4)
