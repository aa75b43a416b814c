"""Text -> AST, with positioned, friendly syntax errors (never a Lark traceback)."""

from __future__ import annotations

from functools import cache

from lark import Lark, Token, UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken
from lark.exceptions import VisitError

from nndsl.grammar.ast import RESERVED, Module, ToAst
from nndsl.errors import NndslError, Span

# label -> (snippets that fail the same way, hint); lark's match_examples picks the label
SYNTAX_EXAMPLES: dict[str, tuple[list[str], str]] = {
    "missing ',' between arguments": (
        ["model m { h = x -> dense(2 init=he_normal) }", "model m { h = add(a b) }"],
        "separate arguments with ','",
    ),
    "missing '=' in a binding": (
        ["model m { h x -> dense(2) }"],
        "bind a value with `name = expression`",
    ),
    "missing '->' between layers": (
        ["model m { h = x dense(2) }", "model m { h = x -> dense(2) relu }"],
        "chain layers with '->': `x -> dense(2) -> relu`",
    ),
    "missing ':' after the input name": (
        ["model m { input x [batch, 2] }"],
        "declare inputs as `input x: [batch, 2]`",
    ),
    "unclosed '(' in a call": (
        ["model m { h = x -> dense(2 }", "model m { h = x -> dense(2, init=normal(0, 1) }"],
        "add the missing ')'",
    ),
    "missing '{' after the model name": (
        ["model m input x: [batch, 2] }", "train t data = builtin(\"xor\") }"],
        "a model's body is written in braces: `model NAME { ... }`",
    ),
}

PUNCTUATION = {
    "LPAR": "'('", "RPAR": "')'", "LBRACE": "'{'", "RBRACE": "'}'", "LSQB": "'['",
    "RSQB": "']'", "COMMA": "','", "COLON": "':'", "SEMICOLON": "';'", "EQUAL": "'='",
    "PLUS": "'+'", "MINUS": "'-'", "STAR": "'*'", "SLASH": "'/'", "__ANON_0": "'->'",
    "NAME": "a name", "NUMBER": "a number", "INT": "an integer", "STRING": "a string",
    "$END": "end of the file",
}


@cache
def _lark() -> Lark:
    return Lark.open("nndsl.lark", rel_to=__file__, parser="lalr", propagate_positions=True,
                     maybe_placeholders=True)


def _describe_expected(expected: set[str]) -> str:
    names = sorted({PUNCTUATION.get(t, f"'{t.lower()}'" if t.isupper() else t) for t in expected})
    if len(names) > 8:
        names = names[:8] + ["..."]
    return ", ".join(names)


def _found(tok: Token | None) -> str:
    if tok is None or tok.type == "$END":
        return "end of the file"
    return f"'{tok}'"


def _syntax_error(u: UnexpectedInput, text: str, file: str) -> NndslError:
    label = None
    try:
        parse = _lark().parse
        examples = {k: v[0] for k, v in SYNTAX_EXAMPLES.items()}
        label = u.match_examples(parse, examples, use_accepts=True)
    except Exception:  # match_examples re-parses; any failure there just means "no label"
        label = None
    line, column = max(u.line, 1), max(u.column, 1)
    if isinstance(u, UnexpectedEOF) or u.line < 0:
        lines = text.rstrip().splitlines() or [""]
        line, column = len(lines), len(lines[-1]) + 1
    width = 1
    if isinstance(u, UnexpectedToken):
        found, expected = _found(u.token), _describe_expected(u.accepts or u.expected)
        if u.token.type != "$END":
            width = max(1, len(str(u.token)))
        message = f"unexpected {found}"
        if isinstance(u.token, Token) and str(u.token) in RESERVED and u.token.type != "NAME":
            message = f"'{u.token}' is a keyword and cannot be used here"
    elif isinstance(u, UnexpectedCharacters):
        found = repr(u.char) if u.char.isprintable() else f"character U+{ord(u.char):04X}"
        message, expected = f"unexpected character {found}", _describe_expected(u.allowed)
    else:
        message, expected = "unexpected end of the file", _describe_expected(u.expected)
    hint = None
    if label is not None:
        message, hint = label, SYNTAX_EXAMPLES[label][1]
    span = Span(file, line, column, line, column + width)
    return NndslError(message, span, expected=expected or None, hint=hint)


def parse(text: str, file: str = "<spec>") -> Module:
    """Parse one spec's text; raise a positioned NndslError on any syntax error."""
    try:
        tree = _lark().parse(text)
    except UnexpectedInput as u:
        raise _syntax_error(u, text, file) from None
    try:
        return ToAst(file).transform(tree)
    except VisitError as e:
        if isinstance(e.orig_exc, NndslError):
            raise e.orig_exc from None
        raise
