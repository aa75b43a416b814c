"""Valid specs the spec fuzzer (tests/test_fuzz.py) found mishandled, pinned one per bug.

Malformed specs it found are pinned with their rendered errors in tests/errors/ (43 onwards).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from nndsl.check import check_program, concrete, random_inputs
from nndsl.errors import ExecutionError, NndslError
from nndsl.initialize import initialize
from nndsl.program import load
from nndsl.verify import numpy_forward


def test_concat_over_symbolic_sizes_checks(write_spec: Callable[[str], Path]) -> None:
    """concat along `time` gives the size "time+time"; the trial forward must agree with it."""
    program, _ = load(write_spec("model m {\n  input a: [batch, time, 2]\n"
                                 "  c = concat(a, a, axis=1)\n  d = concat(a, a, axis=0)\n"
                                 "  output c, d\n}\n"))
    check_program(program)
    types = program.models[0].types()
    assert types["c"].shape == ("batch", "time+time", 2)
    assert concrete(types["c"].shape) == (2, 10, 2) and concrete(types["d"].shape) == (4, 5, 2)


def test_kmaxpool_over_a_short_symbolic_axis_says_why(write_spec: Callable[[str], Path]) -> None:
    program, _ = load(write_spec("model m {\n  input x: [batch, time]\n  y = x -> kmaxpool(3)\n"
                                 "  output y\n}\n"))
    graph = program.models[0]
    feeds = random_inputs(graph, np.random.default_rng(0), {"batch": 2, "time": 2})
    with pytest.raises(ExecutionError, match=r"kmaxpool failed: k=3 is more than the 2 values"):
        numpy_forward(graph, feeds, initialize(graph))


def test_indices_reach_every_embedding_in_range(write_spec: Callable[[str], Path]) -> None:
    """check's random token ids fit the smallest vocabulary they reach, also through identity."""
    program, _ = load(write_spec("model m {\n  input ids: i64[batch, 4]\n"
                                 "  a = ids -> embedding(40, 2)\n"
                                 "  b = ids -> identity -> reshape([-1]) -> embedding(3, 2)\n"
                                 "  output a, b\n}\n"))
    feeds = random_inputs(program.models[0], np.random.default_rng(0), {"batch": 50})
    assert feeds["ids"].max() == 2
    check_program(program)


@pytest.mark.parametrize("expr", ["x" + " + x" * 3000,
                                  "x -> reshape(" + "[" * 500 + "2" + "]" * 500 + ")"])
def test_deep_nesting_is_an_error_not_a_stack_overflow(expr: str) -> None:
    with pytest.raises(NndslError, match="nested more than 100 levels deep"):
        load("deep.nn", f"model m {{\n  input x: [batch, 2]\n  y = {expr}\n  output y\n}}\n")


def test_blocks_nested_past_the_limit_are_an_error() -> None:
    blocks = "".join(f"block b{i}(u) {{\n  b{i + 1}(u)\n}}\n" for i in range(80))
    text = blocks + "block b80(u) {\n  dense(u)\n}\nmodel m {\n  input x: [batch, 2]\n" \
        "  y = x -> b0(2)\n  output y\n}\n"
    with pytest.raises(NndslError, match="blocks nested more than 50 deep"):
        load("deep.nn", text)


def test_shared_prelu_on_a_scalar_is_refused(write_spec: Callable[[str], Path]) -> None:
    """A shared α is an array [1]: on a scalar it made a [1] where the checker said []."""
    spec = write_spec("model m {\n  input x: [batch, 3]\n  s = mse(x, x)\n"
                      "  y = s -> prelu(shared=true)\n  output y\n}\n")
    with pytest.raises(NndslError, match="prelu expects an input with at least 1 axes") as e:
        load(spec)
    assert e.value.span is not None and e.value.span.line == 4
