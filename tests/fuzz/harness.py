"""One fuzz case: load + check under a time limit, then the backends for a spec that checked.

Every outcome must be success or a positioned nndsl error: any other exception, a rendered
error without its position, source line and caret, an "internal" error, or a case that runs
past its time limit (a hang) fails the test. A spec that checked must also print as IR text,
run forward in NumPy at a second size, export to ONNX (or refuse with an nndsl error) and agree
in onnxruntime, and its train block's loss must differentiate in NumPy.
"""

from __future__ import annotations

import os
import re
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from nndsl.backends.numpy.autodiff import loss_and_grad
from nndsl.backends.numpy.gradcheck import differentiable, synthetic_targets
from nndsl.backends.onnx.runtime import CPU, run_onnx

from nndsl.check import check_program, forward_cost, random_inputs
from nndsl.errors import ErrorGroup, NndslError, SourceMap, Span
from nndsl.export import export_onnx
from nndsl.ir import Graph, Program, format_graph
from nndsl.program import load
from nndsl.verify import initial_weights, numpy_forward

CHECK_SECONDS = float(os.environ.get("NNDSL_FUZZ_SECONDS", "5"))
BACKEND_SECONDS = 3 * CHECK_SECONDS
SIZES = {"batch": 3, "time": 7}  # `check` itself runs batch 2, time 5
MAX_ELEMENTS = 200_000  # larger checked models skip the backend runs (time, not correctness)
ONNX_TOLERANCE = dict(rtol=1e-4, atol=1e-4)
F64_GAP = re.compile(r"Could not find an implementation for \w+\(\d+\)|does not support double")


class CaseTimeout(BaseException):
    """Raised by SIGALRM; a BaseException so that no `except Exception` can swallow it."""


@contextmanager
def time_limit(seconds: float, what: str) -> Iterator[None]:
    """Fail (AssertionError) when the block runs past `seconds` of wall time: a hang."""

    def expire(signum: int, frame: Any) -> None:
        raise CaseTimeout

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    except CaseTimeout:
        raise AssertionError(f"{what} ran past its {seconds:g} s limit (a hang?)") from None
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def assert_positioned(error: NndslError, sources: SourceMap | None = None) -> None:
    """Each error renders as `file:line:col: error:` with its source line and a caret."""
    sources = sources if sources is not None else getattr(error, "sources", SourceMap())
    rendered = error.render(sources)
    assert "Traceback" not in rendered and "internal" not in rendered, rendered
    for e in error.errors if isinstance(error, ErrorGroup) else [error]:
        assert e.message, rendered
        assert e.span is not None, f"an error without a position: {e.render(sources)}"
        lines = e.render(sources).splitlines()
        assert lines[0].startswith(f"{e.span}: error: "), lines[0]
        _assert_shown(e.span, lines[1:3], sources)
        for text, span in e.notes:  # "in block 'b' used here": also a real place
            if span is not None:
                shown = NndslError(text, span).render(sources).splitlines()
                _assert_shown(span, shown[1:3], sources)


def _assert_shown(span: Span, excerpt: list[str], sources: SourceMap) -> None:
    """The span lies in a file that was read, and a non-blank line is shown with a caret."""
    assert span.file in sources, f"{span.file} is not among the files read"
    text_lines = sources[span.file].splitlines() or [""]
    assert 1 <= span.line <= len(text_lines) and span.column >= 1, str(span)
    if text_lines[span.line - 1].strip():
        assert len(excerpt) == 2 and excerpt[1].strip().startswith("^"), "\n".join(excerpt)


def check_case(path: Path, text: str) -> tuple[Program, SourceMap] | None:
    """load + check_program under the time limit: the program, or None for an nndsl error."""
    sources = None
    try:
        with time_limit(CHECK_SECONDS, "load + check"), np.errstate(all="ignore"):
            program, sources = load(path, text)
            check_program(program)
            for graph in program.models:  # the text form `nndsl compile --emit ir` prints
                assert format_graph(graph)
    except NndslError as e:  # load's errors carry their sources; check's need load's
        assert_positioned(e, sources)
        return None
    return program, sources


def run_backends(program: Program, sources: SourceMap, seed: int = 0) -> None:
    """NumPy forward, ONNX export + onnxruntime, and NumPy loss + gradient, under a limit."""
    with time_limit(BACKEND_SECONDS, "backends"), np.errstate(all="ignore"):
        rng = np.random.default_rng(seed)
        for graph in program.models:
            if forward_cost(graph) > MAX_ELEMENTS:
                continue
            weights = initial_weights(program, graph)
            feeds = random_inputs(graph, rng, SIZES)
            ref = numpy_forward(graph, feeds, weights)
            _onnx_agrees(program, sources, graph, weights, feeds, ref)
            _losses_differentiate(program, sources, graph, weights, feeds, rng)


def _computes_f64(model: Any) -> bool:
    """Whether float64 values flow through an exported graph: they start at a graph input, an
    initializer or a Cast (a loss on integer inputs promotes them to float64, as NumPy does)."""
    from onnx import TensorProto

    graph = model.graph
    return (any(v.type.tensor_type.elem_type == TensorProto.DOUBLE for v in graph.input)
            or any(t.data_type == TensorProto.DOUBLE for t in graph.initializer)
            or any(n.op_type == "Cast" and any(a.name == "to" and a.i == TensorProto.DOUBLE
                                               for a in n.attribute) for n in graph.node))


def _onnx_agrees(program: Program, sources: SourceMap, graph: Graph,
                 weights: dict[str, np.ndarray], feeds: dict[str, np.ndarray],
                 ref: dict[str, np.ndarray]) -> None:
    try:
        model = export_onnx(program, sources, graph, weights)
    except NndslError as e:  # not exportable: a positioned refusal is fine
        assert_positioned(e, sources)
        return
    try:
        got = run_onnx(model, feeds, CPU)  # CUDA kernels may round differently (TF32)
    except Exception as e:  # onnxruntime's own error types
        if F64_GAP.search(str(e)) and _computes_f64(model):
            return  # onnxruntime has float kernels only for some ops (backends/onnx/recurrent.py)
        raise
    for name, value in zip(graph.outputs, got, strict=True):
        want = np.asarray(ref[name])
        assert value.shape == want.shape, f"{name}: onnxruntime {value.shape}, NumPy {want.shape}"
        if not differentiable(graph):  # a step, sign or argmax turns 1-ulp differences into 1s
            continue
        finite = np.isfinite(want) & np.isfinite(value)  # onnxruntime flushes denormals to 0,
        # so tiny / tiny is NaN there and finite in NumPy: only values both have are compared
        np.testing.assert_allclose(value[finite], want[finite], **ONNX_TOLERANCE,
                                   err_msg=f"output {name}: onnxruntime vs NumPy")


def _losses_differentiate(program: Program, sources: SourceMap, graph: Graph,
                          weights: dict[str, np.ndarray], feeds: dict[str, np.ndarray],
                          rng: np.random.Generator) -> None:
    if not differentiable(graph):
        return
    for train in (t for t in program.trains if t.model == graph.name):
        losses = [train.loss, *(p.loss for p in train.phases)]
        for loss in (g for g in losses if g is not None):
            batch = {**feeds, **synthetic_targets(loss, train.targets, rng, SIZES)}
            try:
                grads = loss_and_grad(graph, loss, batch, weights, frozen=train.get("freeze", ()))
            except NndslError as e:  # training mode can fail on data (batchnorm on one value)
                assert_positioned(e, sources)
                continue
            assert np.shape(grads.value) == (), "the loss is not a scalar"
            for name, g in grads.weights.items():
                assert np.shape(g) == np.shape(weights[name]), f"gradient of {name}"
