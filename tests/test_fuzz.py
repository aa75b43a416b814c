"""Mutated specs never crash the checker: every outcome is success or a positioned nndsl error.

Hypothesis mutates every spec we ship (deletions, insertions of grammar tokens and names,
swapped tokens, random unicode) and runs the whole `check` path on the result, in-process.
"""

from __future__ import annotations

import re
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nndsl.check import check_program
from nndsl.errors import ErrorGroup, NndslError, SourceMap
from nndsl.program import load

from .conftest import LANGUAGE_EXAMPLES, SPECS

CORPUS = [(p, p.read_text(encoding="utf-8")) for p in [*SPECS, *LANGUAGE_EXAMPLES]]
TOKENS = ["->", "(", ")", "{", "}", "[", "]", ",", ":", "=", ";", "+", "-", "*", "/", "#",
          '"', "model", "block", "train", "input", "output", "repeat", "phase", "target",
          "defaults", "import", "in", "dense", "relu", "softmax", "conv2d", "lstm", "batch",
          "time", "0", "1", "-1", "3.5", "1e9", "99999999999", "true", "x", "enc", "tied",
          "init", "flatten", "\n", " ", "\t"]
LEXEME = re.compile(r"\s+|[A-Za-z_][A-Za-z0-9_]*|\d+(?:\.\d+)?(?:e-?\d+)?|->|\"[^\"\n]*\"|.",
                    re.S)


def _mutate(data: st.DataObject, text: str) -> str:
    lexemes = LEXEME.findall(text)
    for _ in range(data.draw(st.integers(1, 4))):
        if not lexemes:
            lexemes = [""]
        i = data.draw(st.integers(0, len(lexemes) - 1))
        kind = data.draw(st.sampled_from(["delete", "insert", "swap", "unicode", "dup"]))
        if kind == "delete":
            del lexemes[i: i + data.draw(st.integers(1, 6))]
        elif kind == "insert":
            lexemes.insert(i, data.draw(st.sampled_from(TOKENS)))
        elif kind == "swap":
            j = data.draw(st.integers(0, len(lexemes) - 1))
            lexemes[i], lexemes[j] = lexemes[j], lexemes[i]
        elif kind == "unicode":
            lexemes.insert(i, data.draw(st.text(min_size=1, max_size=3)))
        else:
            lexemes.insert(i, lexemes[i])
    return "".join(lexemes)


def check_text(path: Path, text: str) -> None:
    """The whole check path; only nndsl errors may escape, and they must render."""
    try:
        program, _ = load(path, text)
        check_program(program)
    except NndslError as e:
        errors = e.errors if isinstance(e, ErrorGroup) else [e]
        rendered = e.render(getattr(e, "sources", SourceMap()))
        assert rendered and "Traceback" not in rendered
        for err in errors:
            assert err.message


@settings(max_examples=2000, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.data())
def test_mutated_specs_give_nndsl_errors_or_pass(data: st.DataObject) -> None:
    path, text = data.draw(st.sampled_from(CORPUS))
    check_text(path, _mutate(data, text))


def test_random_text_gives_nndsl_errors() -> None:
    for text in ["", "\x00", "model", "model m {", "}}}", "model m { input x: [", "🙂" * 10,
                 "model m { input x: [batch, 0] output x }", "train t { }"]:
        check_text(Path("fuzz.nn"), text)
