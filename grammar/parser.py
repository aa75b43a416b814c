"""Text -> AST, with positioned, friendly syntax errors (never a Lark traceback)."""

from __future__ import annotations

from functools import cache

from lark import Lark, Token, Tree, UnexpectedCharacters, UnexpectedInput, UnexpectedToken
from lark.exceptions import VisitError
from nndsl.grammar.ast import RESERVED, Module, ToAst

from nndsl.errors import NndslError, Span
from nndsl.files import cache_dir

PUNCTUATION = {
    "LPAR": "'('", "RPAR": "')'", "LBRACE": "'{'", "RBRACE": "'}'", "LSQB": "'['",
    "RSQB": "']'", "COMMA": "','", "COLON": "':'", "SEMICOLON": "';'", "EQUAL": "'='",
    "PLUS": "'+'", "MINUS": "'-'", "STAR": "'*'", "SLASH": "'/'", "__ANON_0": "'->'",
    "NAME": "a name", "DOTTED_NAME": "a weight name", "NUMBER": "a number",
    "INT": "an integer", "STRING": "a string",
    "$END": "end of the file",
}


@cache
def _lark() -> Lark:
    return Lark.open("nndsl.lark", rel_to=__file__, parser="lalr", propagate_positions=True,
                     maybe_placeholders=True, cache=_cache_file())


def _cache_file() -> str | bool:
    """Where Lark keeps the grammar's LALR tables between processes: building them costs every
    command ~55 ms, loading them ~5. Lark stamps the file with a hash of the grammar, its
    options and the Lark and Python versions, and builds afresh (rewriting it) on any mismatch
    or unreadable file. In nndsl's own cache folder, not the shared temporary one, since the
    file is a pickle; False (no cache) where that folder cannot be made."""
    folder = cache_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return str(folder / "grammar.lark-cache")


def _describe_expected(expected: set[str]) -> str:
    names = sorted({PUNCTUATION.get(t, f"'{t.lower()}'" if t.isupper() else t) for t in expected})
    if len(names) > 8:
        names = names[:8] + ["..."]
    return ", ".join(names)


def _found(tok: Token | None) -> str:
    if tok is None or tok.type == "$END":
        return "end of the file"
    return f"'{tok}'"


MAX_DEPTH = 100  # nesting of the parse tree: far beyond hand-written specs, within Python's stack
KEYWORD_TOKENS = frozenset(t.upper() for t in RESERVED)
CLOSERS = {"(": ")", "[": "]", "{": "}"}


def _after_previous_token(text: str, pos: int) -> int:
    """The offset just after the last non-blank character before `pos`."""
    while pos > 0 and text[pos - 1].isspace():
        pos -= 1
    return pos


def _unclosed(text: str, upto: int) -> tuple[str, int] | None:
    """The innermost bracket still open at offset `upto` (comments and strings skipped)."""
    stack: list[tuple[str, int]] = []
    i = 0
    while i < upto:
        ch = text[i]
        if ch == "#":
            i = text.find("\n", i)
            i = upto if i < 0 else i
            continue
        if ch == '"':
            end = text.find('"', i + 1)
            i = upto if end < 0 else end + 1
            continue
        if ch in CLOSERS:
            stack.append((ch, i))
        elif ch in CLOSERS.values() and stack and CLOSERS[stack[-1][0]] == ch:
            stack.pop()
        i += 1
    return stack[-1] if stack else None


def _position(text: str, offset: int) -> tuple[int, int]:
    line = text.count("\n", 0, offset) + 1
    return line, offset - (text.rfind("\n", 0, offset) + 1) + 1


def _classify(u: UnexpectedToken, text: str) -> tuple[str, str | None, int | None]:
    """A friendly (message, hint, caret offset) for the common LALR failures."""
    accepts, kind = set(u.accepts or u.expected), u.token.type
    at_end = kind in ("$END", "RBRACE", "SEMICOLON") or kind in KEYWORD_TOKENS
    start = u.token.start_pos if kind != "$END" else len(text)
    prev = _after_previous_token(text, start if start is not None else len(text))
    opened = _unclosed(text, prev)
    if "RPAR" in accepts and at_end and opened and opened[0] == "(":
        line, col = _position(text, opened[1])
        return "unclosed '(' in a call", f"add the ')' that closes the '(' at {line}:{col}", prev
    if {"COMMA", "RPAR"} <= accepts and kind in ("NAME", "NUMBER", "STRING", "LSQB", "LPAR"):
        return "missing ',' between arguments", "separate arguments with ','", None
    if {"COMMA", "RSQB"} <= accepts and kind in ("NAME", "NUMBER", "STRING", "LSQB", "LPAR"):
        return "missing ',' between list items", "separate items with ','", None
    if "RSQB" in accepts and at_end and opened and opened[0] == "[":
        line, col = _position(text, opened[1])
        return "unclosed '['", f"add the ']' that closes the '[' at {line}:{col}", prev
    if accepts == {"COLON"}:
        return "missing ':' after the name", "declare it as `x: [batch, 2]`", None
    if kind == "$END" and "RBRACE" in accepts and opened and opened[0] == "{":
        line, col = _position(text, opened[1])
        return "unclosed '{'", f"add the '}}' that closes the '{{' at {line}:{col}", prev
    if "LBRACE" in accepts and len(accepts) <= 2:
        return "missing '{'", "a body is written in braces: `model NAME { ... }`", None
    if str(u.token) in RESERVED and kind != "NAME":
        return f"'{u.token}' is a keyword and cannot be used here", None, None
    return f"unexpected {_found(u.token)}", None, None


def _syntax_error(u: UnexpectedInput, text: str, file: str) -> NndslError:
    line, column, width, hint = max(u.line, 1), max(u.column, 1), 1, None
    if isinstance(u, UnexpectedToken):
        message, hint, caret = _classify(u, text)
        expected = _describe_expected(u.accepts or u.expected)
        if caret is not None:
            line, column = _position(text, caret)
        elif u.token.type != "$END":
            width = max(1, len(str(u.token)))
        else:
            line, column = _position(text, _after_previous_token(text, len(text)))
    elif isinstance(u, UnexpectedCharacters):
        found = repr(u.char) if u.char.isprintable() else f"character U+{ord(u.char):04X}"
        message, expected = f"unexpected character {found}", _describe_expected(u.allowed)
    else:
        line, column = _position(text, _after_previous_token(text, len(text)))
        message, expected = "unexpected end of the file", _describe_expected(u.expected)
    span = Span(file, line, column, line, column + width)
    return NndslError(message, span, expected=expected or None, hint=hint)


def _too_deep(tree: Tree, file: str) -> NndslError | None:
    """An error at the statement holding a part nested deeper than MAX_DEPTH, found without
    recursion: the AST transform and the checker recurse, and would overflow Python's stack."""
    stack: list[tuple[Tree, int, Tree]] = [(tree, 1, tree)]
    while stack:
        node, depth, statement = stack.pop()
        if depth > MAX_DEPTH:
            meta = statement.meta
            return NndslError(f"expression nested more than {MAX_DEPTH} levels deep",
                              Span(file, meta.line, meta.column, meta.end_line, meta.end_column),
                              hint="give the inner parts names (`h = ...`) and use those")
        statement = node if depth == 3 else statement  # start > model > statement
        stack.extend((c, depth + 1, statement) for c in node.children if isinstance(c, Tree))
    return None


def parse(text: str, file: str = "<spec>") -> Module:
    """Parse one spec's text; raise a positioned NndslError on any syntax error."""
    try:
        tree = _lark().parse(text)
    except UnexpectedInput as u:
        raise _syntax_error(u, text, file) from None
    deep = _too_deep(tree, file)
    if deep is not None:
        raise deep
    try:
        return ToAst(file).transform(tree)
    except VisitError as e:
        if isinstance(e.orig_exc, NndslError):
            raise e.orig_exc from None
        raise
