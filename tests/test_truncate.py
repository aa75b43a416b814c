"""Truncated backpropagation through time (`truncate = K`, nndsl/training/truncate.py) and the
recurrent layers' initial state (`initial_state = learned`, nndsl/ops/recurrent.py)."""

from __future__ import annotations

import importlib.util
import re
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from nndsl.cli import main
from nndsl.initialize import initialize
from nndsl.program import load

from .conftest import ROOT
from .trained import train_run

torch = pytest.importorskip("torch")

SPEC = ROOT / "specs" / "sine_truncated.nn"
SMALL_RNN = """model m {
  input x: [batch, time, 1]
  h = x -> r: rnn(3)
  out = h -> o: dense(1)
  output out
}

train m {
  data      = builtin("long_sine", n=4, length=8)
  target y: [batch, time, 1]
  loss      = mse(out, y)
  optimizer = sgd(lr=0.1)
  truncate  = 3
  batch     = 4
  epochs    = 1
  shuffle   = false
}
"""


def variant(tmp_path: Path, name: str, *, n: int = 8, length: int = 30, batch: int = 4,
            epochs: int = 2, truncate: int | None = 10, text: str | None = None) -> Path:
    """specs/sine_truncated.nn on `n` waves of `length` steps (truncate None: full BPTT)."""
    text = (text or SPEC.read_text(encoding="utf-8")).replace(
        'builtin("long_sine")', f'builtin("long_sine", n={n}, length={length})')
    text = re.sub(r"batch\s*= \d+", f"batch = {batch}", text)
    text = re.sub(r"epochs\s*= \d+", f"epochs = {epochs}", text)
    text = re.sub(r"truncate\s*= \d+", "" if truncate is None else f"truncate = {truncate}",
                  text)
    path = tmp_path / f"{name}.nn"
    path.write_text(text, encoding="utf-8")
    return path


def train(spec: Path, run: Path, backend: str = "numpy",
          *extra: str) -> tuple[dict[str, np.ndarray], list[float]]:
    return train_run(spec, run, "--backend", backend, *extra)


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_a_chunk_as_long_as_the_sequence_is_full_bptt_exactly(tmp_path: Path,
                                                             backend: str) -> None:
    full = train(variant(tmp_path, "full", truncate=None), tmp_path / "full", backend)
    for k in (30, 100):
        chunked = train(variant(tmp_path, f"k{k}", truncate=k), tmp_path / f"k{k}", backend)
        assert chunked[1] == full[1]
        for name, array in full[0].items():
            np.testing.assert_array_equal(chunked[0][name], array, err_msg=name)


def _bptt_chunk(w: dict[str, np.ndarray], x: np.ndarray, y: np.ndarray,
                h0: np.ndarray) -> tuple[float, dict[str, np.ndarray], np.ndarray]:
    """mse and its gradient over one chunk of an Elman rnn + dense, written out by hand: the
    backward pass stops at h0, a constant. Returns (loss, gradients, last h)."""
    wih, whh, bih, bhh = (w[f"r.{k}"] for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))
    wo, bo = w["o.weight"], w["o.bias"]
    hs = [h0]
    for t in range(x.shape[1]):
        hs.append(np.tanh(x[:, t] @ wih.T + bih + hs[-1] @ whh.T + bhh))
    outs = [h @ wo.T + bo for h in hs[1:]]
    count = y.size
    loss = sum(float(((o - y[:, t]) ** 2).sum()) for t, o in enumerate(outs)) / count
    g = {k: np.zeros_like(v) for k, v in w.items()}
    carry = np.zeros_like(h0)
    for t in reversed(range(x.shape[1])):
        d_out = 2 * (outs[t] - y[:, t]) / count
        g["o.weight"] += d_out.T @ hs[t + 1]
        g["o.bias"] += d_out.sum(0)
        d_a = (d_out @ wo + carry) * (1 - hs[t + 1] ** 2)
        g["r.weight_ih"] += d_a.T @ x[:, t]
        g["r.bias_ih"] += d_a.sum(0)
        g["r.weight_hh"] += d_a.T @ hs[t]
        g["r.bias_hh"] += d_a.sum(0)
        carry = d_a @ whh
    return loss, g, hs[-1]


def test_each_chunk_is_one_update_from_the_carried_state(tmp_path: Path) -> None:
    """Chunks of 3, 3 and 2 steps, each an SGD step whose forward pass starts from the state
    the previous chunk ended with (under the weights before its update) and whose gradient
    stops there: the run (float32) equals the same written out by hand (float64)."""
    from nndsl.data.builtin import builtin

    spec = tmp_path / "m.nn"
    spec.write_text(SMALL_RNN, encoding="utf-8")
    got, losses = train(spec, tmp_path / "run")
    data = builtin(tmp_path, name="long_sine", n=4, length=8)
    x, y = data["x"].astype(np.float64), data["y"].astype(np.float64)
    w = {k: v.astype(np.float64) for k, v in initialize(load(spec)[0].models[0], 0).items()}
    h, total = np.zeros((4, 3)), 0.0
    for start in (0, 3, 6):
        loss, g, h = _bptt_chunk(w, x[:, start:start + 3], y[:, start:start + 3], h)
        w = {k: v - 0.1 * g[k] for k, v in w.items()}
        total += loss * min(3, 8 - start)
    assert losses == [pytest.approx(total / 8, rel=1e-6)]
    for name, array in w.items():
        np.testing.assert_allclose(got[name], array, atol=2e-7, err_msg=name)


def test_the_loss_falls_on_long_sequences(tmp_path: Path) -> None:
    _, losses = train(variant(tmp_path, "long", n=16, length=400, batch=8, epochs=3),
                      tmp_path / "run", "torch")
    assert losses[-1] < 0.1 * losses[0], losses


def _peak_mib(spec: Path) -> float:
    from nndsl.backend import make_engine
    from nndsl.data.dataset import load_dataset
    from nndsl.training.run import pick_train, train_in_memory

    program, _ = load(spec)
    block = pick_train(program, None)
    graph = program.model(block.model)
    data = load_dataset({**dict(graph.inputs), **dict(block.targets)}, [graph], block,
                        spec.parent)
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        train_in_memory(program, block, make_engine("numpy", "cpu"), data,
                        {graph.name: initialize(graph, 0)})
        return tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


def test_memory_is_bounded_by_the_chunk_not_the_sequence(tmp_path: Path) -> None:
    """NumPy's tape holds a step's values: 8x the steps cost truncated training little more
    memory, full BPTT about 8x (tracemalloc counts exactly; bench case 10 measures 100 and
    1,000 steps)."""
    peaks = {(length, k): _peak_mib(variant(tmp_path, f"m{length}_{k}", length=length,
                                            batch=8, epochs=1, truncate=k))
             for length in (50, 400) for k in (10, None)}
    assert peaks[400, 10] < 1.5 * peaks[50, 10], peaks
    assert peaks[400, None] > 4 * peaks[50, None], peaks


def test_a_stopped_truncated_run_resumes_exactly(tmp_path: Path) -> None:
    spec = variant(tmp_path, "resume", epochs=2)
    whole = train(spec, tmp_path / "whole")
    train(variant(tmp_path, "first", epochs=1), tmp_path / "part")
    assert main(["train", "--resume", str(tmp_path / "part"), "--extend", "--epochs", "2",
                 "--quiet"]) == 0
    with np.load(tmp_path / "part" / "weights.npz") as archive:
        for name, array in whole[0].items():
            np.testing.assert_array_equal(archive[name], array, err_msg=name)


@pytest.mark.parametrize(("edit", "words"), [
    (("lstm(16)", "lstm(16, bidirectional=true)"), ["lstm 'lstm_1' cannot carry its state",
                                                   "bidirectional", "truncate is set here"]),
    (("h = x -> lstm(16)", "h = x -> lstm(16, sequences=false) -> reshape([1, 16])"),
     ["sequences=false"]),
    (("h = x -> lstm(16)", "h = x -> dense(16)"), ["this model has none"]),
    (("target y: [batch, time, 1]", "target y: [batch, 1, 1]"),
     ["target 'y' has no `time` axis"]),
    (("  truncate  = 10", "  truncate  = 10\n  trainer   = evolve"),
     ["trainer 'evolve' does not use 'truncate'"]),
])
def test_a_model_that_cannot_be_truncated_is_a_positioned_error(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], edit: tuple[str, str],
        words: list[str]) -> None:
    text = SPEC.read_text(encoding="utf-8")
    assert edit[0] in text
    spec = tmp_path / "bad.nn"
    spec.write_text(text.replace(edit[0], edit[1]), encoding="utf-8")
    assert main(["check", str(spec)]) == 1
    err = capsys.readouterr().err
    assert re.search(r"bad\.nn:\d+:\d+: error", err), err
    for word in words:
        assert word in err, err


# ---- initial state -------------------------------------------------------------------------

LEARNED = """model m {
  input x: [batch, time, 3]
  a = x -> l: lstm(4, initial_state=learned)
  b = a -> g: gru(3, bidirectional=true, initial_state=learned)
  c = b -> r: rnn(2, activation=relu, sequences=false, initial_state=learned)
  output c
}
"""


def _learned(tmp_path: Path) -> tuple[Any, Any, Any, dict[str, np.ndarray]]:
    spec = tmp_path / "learned.nn"
    spec.write_text(LEARNED, encoding="utf-8")
    program, sources = load(spec)
    graph = program.models[0]
    rng = np.random.default_rng(1)
    weights = {k: (v + 0.5 * rng.standard_normal(v.shape)).astype(np.float32)
               if ".initial_" in k else v for k, v in initialize(graph, 0).items()}
    return program, sources, graph, weights


def test_a_learned_initial_state_is_a_vector_per_direction(tmp_path: Path) -> None:
    _, _, graph, _ = _learned(tmp_path)
    shapes = {w.name: w.shape for w in graph.weights if ".initial_" in w.name}
    assert shapes == {"l.initial_h": (4,), "l.initial_c": (4,), "g.initial_h": (3,),
                      "g.initial_h_reverse": (3,), "r.initial_h": (2,)}
    assert all(w.trainable and not initialize(graph)[w.name].any()  # they start at zeros
               for w in graph.weights if ".initial_" in w.name)


def test_a_learned_initial_state_verifies_on_every_backend(tmp_path: Path) -> None:
    """NumPy, torch and onnxruntime (the ONNX nodes' initial_h / initial_c inputs) agree, and
    so do the gradients, the initial states' included."""
    pytest.importorskip("onnxruntime")
    from nndsl.export import export_onnx
    from nndsl.verify import verify_program

    program, sources, graph, weights = _learned(tmp_path)
    rows = verify_program(program, sources, weights=weights)
    assert rows and all(r.ok for r in rows), [r for r in rows if not r.ok]
    assert {r.name for r in rows} >= {"l.initial_h", "l.initial_c", "g.initial_h_reverse"}
    nodes = {n.op_type: n for n in export_onnx(program, sources, graph, weights).graph.node}
    assert len(nodes["LSTM"].input) >= 7 and nodes["LSTM"].input[5] and nodes["LSTM"].input[6]
    assert nodes["GRU"].input[5]


def test_a_learned_initial_state_is_written_into_the_torch_module(tmp_path: Path) -> None:
    from nndsl.backends.numpy.engine import NumpyEngine
    from nndsl.backends.torch.source import class_name

    _, _, graph, weights = _learned(tmp_path)
    out = tmp_path / "m.py"
    assert main(["compile", str(tmp_path / "learned.nn"), "-o", str(out)]) == 0
    found = importlib.util.spec_from_file_location("generated_learned", out)
    module = importlib.util.module_from_spec(found)
    found.loader.exec_module(module)
    np.savez(tmp_path / "w.npz", **weights)
    net = getattr(module, class_name("m"))().load_nndsl_weights(str(tmp_path / "w.npz")).eval()
    x = np.random.default_rng(2).standard_normal((2, 5, 3)).astype(np.float32)
    with torch.no_grad():
        got = net(torch.as_tensor(x)).numpy()
    want = NumpyEngine().predict(graph, {"x": x}, weights)["c"]
    np.testing.assert_allclose(got, want, atol=1e-5)


@pytest.mark.parametrize("name", ["lstm", "gru", "rnn"])
def test_a_carried_state_runs_natively_as_in_the_decomposition(name: str) -> None:
    """state_h (and state_c) start the torch kernel as they start the unrolled loop; the
    reported final state and every gradient agree."""
    from nndsl.backends.torch.prims import make_torch_prims

    from nndsl.ir import TensorType
    from nndsl.ops.registry import OPS

    opdef, rng = OPS[name], np.random.default_rng(3)
    specs = opdef.weights(TensorType((3, 5, 2), "f64"), units=4, bidirectional=False,
                          initial_state="zeros", **({"activation": "tanh"} if name == "rnn"
                                                    else {}))
    leaves = {k: torch.tensor(rng.standard_normal(s.shape), requires_grad=True)
              for k, s in specs.items()}
    states = ("state_h", "state_c") if name == "lstm" else ("state_h",)
    leaves.update({k: torch.tensor(rng.standard_normal((3, 4)), requires_grad=True)
                   for k in states})
    x = torch.tensor(rng.standard_normal((3, 5, 2)))
    results = []
    for fn in (opdef.native["torch"], opdef.compute):
        out = fn(make_torch_prims(training=True), x, units=4, **leaves)
        roots = [out.value, *(out.updates[k] for k in states)]
        total = sum((r * torch.linspace(-1, 1, r.numel(), dtype=r.dtype).reshape(r.shape))
                    .sum() for r in roots)
        grads = torch.autograd.grad(total, list(leaves.values()))
        results.append([r.detach().numpy() for r in roots] + [g.numpy() for g in grads])
    for got, want in zip(*results, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


def test_a_carried_state_gets_no_gradient_and_the_initial_state_learns_from_it_only_first(
        tmp_path: Path) -> None:
    """The truncation graph binds the carry slots: given a state, the loss does not reach the
    learned initial state; given none (the first chunk), it does."""
    from nndsl.backends.numpy.autodiff import loss_and_grad

    from nndsl.training.truncate import carrying

    spec = variant(tmp_path, "learned", text=SPEC.read_text(encoding="utf-8").replace(
        "lstm(16)", "lstm(16, initial_state=learned)"))
    program, _ = load(spec)
    model, block = program.models[0], program.trains[0]
    graph, slots = carrying(model)
    assert slots == ("lstm_1.state_h", "lstm_1.state_c")
    rng = np.random.default_rng(0)
    feeds = {"x": rng.standard_normal((2, 6, 1)), "y": rng.standard_normal((2, 6, 1))}
    weights = initialize(model, 0)
    first = loss_and_grad(graph, block, feeds, {**weights, **dict.fromkeys(slots)})
    later = loss_and_grad(graph, block, feeds, {**weights, **{s: np.ones((2, 16))
                                                              for s in slots}})
    assert np.abs(first.weights["lstm_1.initial_h"]).max() > 0
    assert not later.weights["lstm_1.initial_h"].any()
    assert set(first.updates) == set(slots)  # the final state, to carry into the next chunk
    assert first.updates["lstm_1.state_h"].shape == (2, 16)
