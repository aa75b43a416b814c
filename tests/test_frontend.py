"""The language front end: every example of language.md and specs/ parses, checks and runs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from nndsl.grammar.parser import parse

from nndsl.check import check_program
from nndsl.ir import format_graph
from nndsl.passes.verify import verify
from nndsl.program import load

from .conftest import LANGUAGE_EXAMPLES, ROOT, SPECS

LANGUAGE_MD = ROOT.parent / "shared" / "language.md"


def test_language_examples_are_kept_as_test_inputs() -> None:
    """Each complete example program of language.md is one of tests/language_examples."""
    if not LANGUAGE_MD.exists():
        pytest.skip("shared/language.md is not beside the checkout")
    blocks = re.findall(r"```\n(.*?)```", LANGUAGE_MD.read_text(encoding="utf-8"), re.S)
    programs = [b for b in blocks if re.match(r"\s*(model|block|train)\s+\w+\s*[({]", b)
                and "..." not in b]
    kept = "\n".join(p.read_text(encoding="utf-8") for p in LANGUAGE_EXAMPLES)
    squash = lambda s: re.sub(r"\s+", " ", re.sub(r"#[^\n]*", "", s)).strip()  # noqa: E731
    for program in programs:
        for line in program.strip().splitlines():
            code = squash(line)
            if code:
                assert code in squash(kept), f"language.md line not covered: {line!r}"


@pytest.mark.parametrize("path", LANGUAGE_EXAMPLES + SPECS, ids=lambda p: p.name)
def test_spec_checks_and_runs_forward(path: Path) -> None:
    program, _ = load(path)
    for graph in program.models:
        verify(graph)
    reports = check_program(program)
    assert reports and all(r.params >= 0 for r in reports)


@pytest.mark.parametrize("path", LANGUAGE_EXAMPLES + SPECS, ids=lambda p: p.name)
def test_ir_text_is_stable(path: Path) -> None:
    """Loading twice gives equal IR (names, params, types) and the same printed form."""
    first, _ = load(path)
    second, _ = load(path)
    assert first.models == second.models
    assert [format_graph(g) for g in first.models] == [format_graph(g) for g in second.models]


def test_every_node_carries_its_source_position() -> None:
    program, _ = load(ROOT / "tests" / "language_examples" / "blocks.nn")
    graph = program.models[0]
    assert all(n.span is not None for n in graph.nodes)
    conv = graph.nodes[0]
    assert conv.op == "conv2d" and conv.span.line == 2  # inside the block...
    assert conv.via and conv.via[0].line == 12  # ...reached from the model's line 12


def test_dense_literal_weight_convention(write_spec) -> None:  # type: ignore[no-untyped-def]
    """weight=[[a, b], [c, d]] gives h1 = a*x1 + b*x2 (weights stored [out, in])."""
    import numpy as np
    from nndsl.backends.numpy.prims import make_numpy_prims

    from nndsl.initialize import initialize
    from nndsl.interpreter import run

    path = write_spec("""
model m {
  input x: [batch, 2]
  h = x -> dense(2, weight=[[0.15, 0.20], [0.25, 0.30]], bias=0.35)
  output h
}""")
    program, _ = load(path)
    graph = program.models[0]
    weights = initialize(graph)
    x = np.array([[0.05, 0.10]], dtype=np.float32)
    h = run(graph, make_numpy_prims(), {"x": x}, weights).outputs(graph)[0]
    np.testing.assert_allclose(h, [[0.15 * 0.05 + 0.20 * 0.10 + 0.35,
                                    0.25 * 0.05 + 0.30 * 0.10 + 0.35]], rtol=1e-6)


def test_tied_decoder_uses_the_encoder_weight(write_spec) -> None:  # type: ignore[no-untyped-def]
    program, _ = load(ROOT / "tests" / "language_examples" / "autoencoder.nn")
    graph = program.models[0]
    decoder = graph.nodes[2]
    assert dict(decoder.weights)["weight"] == "enc.weight"
    assert "dense_1.weight" not in {w.name for w in graph.weights}
    assert graph.param_count() == 8 * 3 + 3 + 8


def test_imports_resolve_relative_to_the_importing_file(write_spec) -> None:  # type: ignore[no-untyped-def]
    write_spec("block mlp(units) { dense(units) -> relu }", "lib.nn")
    path = write_spec('import "lib.nn"\nmodel m { input x: [batch, 4]\n y = x -> mlp(3)\n'
                      ' output y }')
    program, _ = load(path)
    assert [n.op for n in program.models[0].nodes] == ["dense", "relu"]


def test_repeat_and_arithmetic(write_spec) -> None:  # type: ignore[no-untyped-def]
    path = write_spec("""
model m {
  input a: [batch, 4]
  input b: [batch, 4]
  h = a -> repeat(3) { dense(4) -> relu }
  y = 0.5 * h + b - 1
  output y
}""")
    program, _ = load(path)
    graph = program.models[0]
    assert [n.op for n in graph.nodes].count("dense") == 3
    assert len({w.name for w in graph.weights}) == 6  # three distinct layers
    assert graph.types()["y"].shape == ("batch", 4)


def test_cross_entropy_after_softmax_is_fused(write_spec) -> None:  # type: ignore[no-untyped-def]
    path = write_spec("""
model m { input x: [batch, 4]
  y = x -> dense(3) -> softmax
  output y }
train m { target t: [batch]; loss = cross_entropy(y, t); optimizer = sgd(lr=0.1) }
""")
    program, _ = load(path)
    loss = program.trains[0].loss
    assert loss is not None and loss.nodes[-1].op == "cross_entropy_logits"
    assert loss.nodes[-1].inputs[0] != "y"  # the logits, not the probabilities


def test_parse_positions_are_one_based() -> None:
    module = parse("model m {\n  input x: [batch, 2]\n}\n", "p.nn")
    decl = module.items[0].body[0]
    assert (decl.span.line, decl.span.column) == (2, 3)
