"""Editor support: the Pygments lexer and the TextMate grammar share one token table, which
covers exactly the grammar's keywords and punctuation; the committed grammar is fresh; and the
TextMate patterns (run here with Python's `re`, which reads this subset as Oniguruma does)
colour every shipped spec exactly as the Pygments lexer does."""

from __future__ import annotations

import io
import json
import re
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from lark.lexer import PatternStr
from nndsl.grammar.ast import RESERVED
from nndsl.grammar.parser import _lark
from pygments import lex
from pygments.lexers import get_lexer_by_name, get_lexer_for_filename

from nndsl.editor import textmate
from nndsl.editor.pygments_lexer import NndslLexer, token
from nndsl.editor.tokens import CONSTANTS, KEYWORDS, KINDS, NAME, OPERATORS, PUNCTUATION, rules

from .conftest import LANGUAGE_EXAMPLES, ROOT, SPECS

SAMPLE = '''# every kind of token
import "lib/blocks.nn"

block stack(units, rate=0.5) {
  dense(units) -> relu -> dropout(rate=rate)
}

model m {
  input x: f64[batch, 2], ids: i64[batch]
  defaults { init = he_normal; bias_init = const(0.01) }
  h = x -> enc: dense(4, trainable=true) -> repeat(2) { inner: stack(4) } -> tanh
  y = 0.5 * h ** 2 + -1e-3 / 2.
  output y  # the end
}

train m {
  data = csv("a \\"b\\".csv", target="label")
  phase warm { epochs = 3 }
}
'''
EXPECTED = [  # (text around the token, the token, its kind)
    ("# every", "#", "comment"), ("import", "import", "keyword"),
    ('"lib/blocks.nn"', '"lib/blocks.nn"', "string"), ("block stack", "stack", "block"),
    ("(units,", "units", "name"), ("rate=0.5", "rate", "parameter"), ("=0.5", "0.5", "number"),
    ("dense(units)", "dense", "layer"), ("-> relu", "->", "operator"), ("model m", "m", "model"),
    ("f64[", "f64", "dtype"), ("i64[", "i64", "dtype"), ("ids:", "ids", "name"),
    ("he_normal", "he_normal", "config"), ("const(", "const", "config"),
    ("enc:", "enc", "label"), ("inner:", "inner", "label"), ("trainable", "trainable", "parameter"),
    ("true", "true", "constant"), ("repeat", "repeat", "keyword"), ("y = 0", "y", "variable"),
    ("1e-3", "1e-3", "number"), ("2.\n", "2.", "number"), ("* h", "*", "operator"),
    ("h ** 2", "**", "operator"),
    ("{ init", "{", "punctuation"), ('\\"b', '\\"', "escape"), ("csv(", "csv", "config"),
    ("phase warm", "warm", "phase"), ("epochs", "epochs", "variable"),
    ("train m", "train", "keyword"), ("phase warm", "phase", "keyword"),
    ("; bias", ";", "punctuation"), ("x:", ":", "punctuation"),
]


def test_the_token_table_covers_exactly_the_grammars_literals() -> None:
    literals = {t.pattern.value for t in _lark().terminals if isinstance(t.pattern, PatternStr)}
    assert {w for w in literals if w.isidentifier()} == set(KEYWORDS)
    assert {s for s in literals if not s.isidentifier()} == set(OPERATORS) | set(PUNCTUATION)
    assert RESERVED == set(KEYWORDS) | set(CONSTANTS)
    name = next(t for t in _lark().terminals if t.name == "NAME")
    assert name.pattern.value == NAME


def test_numbers_are_the_grammars_numbers() -> None:
    ours = next(r for r in rules() if getattr(r, "kinds", None) == ("number",)).pattern
    theirs = next(t for t in _lark().terminals if t.name == "NUMBER").pattern.to_regexp()
    for text in ("0", "12", "1.", "2.50", ".5", "1e-4", "3E+2", "1.5e3", "e3", "1e", ".", "1.e"):
        assert bool(re.fullmatch(ours, text)) == bool(re.fullmatch(theirs, text)), text


def test_committed_editor_files_are_fresh() -> None:
    for path, text in textmate.files().items():
        assert (ROOT / path).read_text(encoding="utf-8") == text, \
            f"{path} is stale: run `python -m nndsl.editor.textmate` (or `make docs`)"
    package = json.loads((ROOT / "editors" / "vscode" / "package.json").read_text())
    (grammar,) = package["contributes"]["grammars"]
    assert (ROOT / "editors" / "vscode" / grammar["path"]).resolve() == \
        (ROOT / textmate.GRAMMARS[1]).resolve()
    assert package["contributes"]["languages"][0]["extensions"] == [".nn"]


def test_pygments_finds_the_lexer_through_its_entry_point() -> None:
    assert isinstance(get_lexer_by_name("nndsl"), NndslLexer)
    assert isinstance(get_lexer_by_name("nn"), NndslLexer)
    assert isinstance(get_lexer_for_filename("specs/xor.nn"), NndslLexer)


def pygments_kinds(text: str) -> list[str]:
    """The token kind of every character, as the Pygments lexer sees it."""
    by_token = {token(kind): kind for kind in KINDS}
    kinds: list[str] = []
    for token_type, value in lex(text, NndslLexer()):
        assert token_type in by_token, f"{value!r} is a {token_type} token"
        kinds += [by_token[token_type]] * len(value)
    assert len(kinds) == len(text) + (not text.endswith("\n"))  # Pygments adds a final \n
    return kinds[:len(text)]


def test_pygments_colours_every_kind_of_token() -> None:
    kinds = pygments_kinds(SAMPLE)
    for context, lexeme, kind in EXPECTED:
        at = SAMPLE.index(context) + context.rindex(lexeme)
        assert set(kinds[at: at + len(lexeme)]) == {kind}, lexeme
    assert set(kinds) == set(KINDS)  # and the sample has every kind


@cache
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def textmate_scopes(text: str, grammar: dict[str, Any]) -> list[str | None]:
    """The scope of every character under the TextMate grammar, one line at a time: at each
    position the pattern that matches first wins (ties: the earlier pattern; a region's end
    before its inner patterns), as a TextMate engine does."""
    scopes: list[str | None] = []
    for line in text.split("\n"):
        out: list[str | None] = [None] * len(line)
        i, region = 0, None
        while i <= len(line):
            patterns = ([{"match": region["end"], "closes": True}, *region["patterns"]]
                        if region else grammar["patterns"])
            found = [(m.start(), n, m, p) for n, p in enumerate(patterns)
                     if (m := _compiled(p.get("match") or p["begin"]).search(line, i))]
            if not found:
                break
            start, _, m, p = min(found, key=lambda f: (f[0], f[1]))
            if region:
                out[i:start] = [region["name"]] * (start - i)
            _paint(out, m, p.get("name") or (region["name"] if p.get("closes") else None),
                   p.get("captures", {}))
            region = None if p.get("closes") else p if "begin" in p else region
            i = m.end() if m.end() > start or region else start + 1
        scopes += [*out, None]
    return scopes[:len(text)]


def _paint(out: list[str | None], m: re.Match[str], name: str | None,
           captures: dict[str, dict[str, str]]) -> None:
    if name:
        out[m.start():m.end()] = [name] * (m.end() - m.start())
    for group, capture in captures.items():
        if m.start(int(group)) >= 0:
            out[m.start(int(group)):m.end(int(group))] = [capture["name"]] * len(m[int(group)])


@pytest.mark.parametrize("path", [*SPECS, *LANGUAGE_EXAMPLES, Path("SAMPLE")],
                         ids=lambda p: p.name)
def test_textmate_agrees_with_pygments(path: Path) -> None:
    text = SAMPLE if path.name == "SAMPLE" else path.read_text(encoding="utf-8")
    grammar = textmate.grammar()
    want = [KINDS[k][1] + textmate.SUFFIX if KINDS[k][1] else None for k in pygments_kinds(text)]
    got = textmate_scopes(text, grammar)
    for i, (a, b) in enumerate(zip(want, got, strict=True)):
        if not text[i].isspace():
            line = text.count("\n", 0, i) + 1
            assert a == b, f"line {line}: {text.splitlines()[line - 1]!r} at {text[i]!r}"


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


ANSI = re.compile(r"\x1b\[[0-9;]*m")


def test_error_lines_are_coloured_on_a_terminal_only(monkeypatch: pytest.MonkeyPatch) -> None:
    from nndsl.commands._common import print_error
    from nndsl.errors import NndslError, SourceMap, Span

    text = "model m {\n  h = x -> dense(2) # why\n}\n"
    error = NndslError("bad", Span("m.nn", 2, 12, 2, 20), hint="dense(2) -> relu")
    plain = error.render(SourceMap({"m.nn": text})) + "\n"
    for stream, env, coloured in ((io.StringIO(), {}, False), (Terminal(), {}, True),
                                  (Terminal(), {"NO_COLOR": "1"}, False),
                                  (Terminal(), {"TERM": "dumb"}, False)):
        monkeypatch.delenv("NO_COLOR", raising=False)
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        monkeypatch.setattr("sys.stderr", stream)
        print_error(error, SourceMap({"m.nn": text}), "m.nn")
        shown = stream.getvalue()
        assert ANSI.sub("", shown) == plain
        lines = shown.splitlines()
        assert (ANSI.search(lines[1]) is not None) == coloured, env  # the quoted spec line
        assert ANSI.search("\n".join(lines[:1] + lines[2:])) is None  # nothing else
