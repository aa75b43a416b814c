"""Mutations of real specs: lexeme edits, and AST-aware edits made at the parsed spans.

Why: the shipped specs are where users start, so edits near them are the mistakes users make.
Lexeme edits (delete, insert a grammar token, swap, duplicate, random unicode) mostly break the
syntax; AST-aware edits keep it and break the meaning: another op's name, an edge-case number,
a dropped or unknown argument, a reused label, another name, a duplicated, dropped or swapped
statement, another type, another setting value.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache

from hypothesis import strategies as st
from nndsl.grammar import ast
from nndsl.grammar.parser import parse

from nndsl.errors import NndslError, Span
from nndsl.ops.registry import names

from .values import BAD_VALUES, PARAM_NAMES, Drawer

TOKENS = ("->", "(", ")", "{", "}", "[", "]", ",", ":", "=", ";", "+", "-", "*", "/", "**", "#",
          '"',
          "model", "block", "train", "input", "output", "repeat", "phase", "target", "defaults",
          "import", "in", "dense", "relu", "softmax", "conv2d", "lstm", "batch", "time", "0", "1",
          "-1", "3.5", "1e9", "99999999999", "true", "x", "enc", "tied", "init", "flatten", "\n",
          " ", "\t", "\\", '"\\x"', "f64", "i64")
LEXEME = re.compile(r"\s+|[A-Za-z_][A-Za-z0-9_]*|\d+(?:\.\d+)?(?:e-?\d+)?|->|\*\*|\"[^\"\n]*\"|.",
                    re.S)
NUMBERS = ("0", "-1", "1000000", "99999999999", "10001", "0.0", "-0.5", "1e308", "1e-320",
           "2.5", "3", "1")
TYPES = ("[batch, 0]", "i64[batch, 3]", "f64[batch]", "[]", "f16[batch, 2]", "[batch, time, 2]",
         "[3, 3, 3, 3, 3, 3]", "[batch, 1, 8, 8]", "[batch, batch]", "[time, batch, 4]")
OP_NAMES = (*names(), "denze", "nosuch")


def lexeme_edit(d: Drawer, text: str) -> str:
    """One to four lexeme-level edits."""
    lexemes = LEXEME.findall(text)
    for _ in range(d.int(1, 4)):
        if not lexemes:
            lexemes = [""]
        i = d.int(0, len(lexemes) - 1)
        kind = d.pick(("delete", "insert", "swap", "unicode", "dup"))
        if kind == "delete":
            del lexemes[i: i + d.int(1, 6)]
        elif kind == "insert":
            lexemes.insert(i, d.pick(TOKENS))
        elif kind == "swap":
            j = d.int(0, len(lexemes) - 1)
            lexemes[i], lexemes[j] = lexemes[j], lexemes[i]
        elif kind == "unicode":
            lexemes.insert(i, d.draw(st.text(min_size=1, max_size=3)))
        else:
            lexemes.insert(i, lexemes[i])
    return "".join(lexemes)


@dataclass(frozen=True)
class Site:
    """A place in the text an AST-aware edit can change: [start, end) and what is there."""

    kind: str  # op | number | arg | call | link | name | stmt | type | value
    start: int
    end: int


def _nodes(value: object) -> Iterator[object]:
    """Every AST node under `value` (dataclasses and tuples of them), value included."""
    if isinstance(value, tuple):
        for item in value:
            yield from _nodes(item)
    elif dataclasses.is_dataclass(value) and not isinstance(value, Span):
        yield value
        for f in dataclasses.fields(value):
            yield from _nodes(getattr(value, f.name))


def _site_spans(node: object) -> Iterator[tuple[str, Span]]:
    match node:
        case ast.CallExpr(name_span=name_span, span=span, args=args, kwargs=kwargs):
            yield "op", name_span
            yield "call", span
            for arg in (*args, *kwargs):
                yield "arg", arg.span
        case ast.Number(span=span):
            yield "number", span
        case ast.Name(span=span):
            yield "name", span
        case ast.Link(callee=callee):
            yield "link", callee.span
        case ast.Binding(span=span) | ast.ExprStmt(span=span) | ast.OutputDecl(span=span):
            yield "stmt", span
        case ast.InputDecl(span=span) | ast.Setting(span=span) | ast.Defaults(span=span):
            yield "stmt", span
        case ast.TypeExpr(span=span):
            yield "type", span
    if isinstance(node, ast.Setting):
        yield "value", node.value.span


@lru_cache(maxsize=512)
def sites(text: str) -> tuple[tuple[Site, ...], tuple[str, ...]]:
    """The edit sites of a spec that parses, and the names it uses (for renaming)."""
    try:
        module = parse(text, "mutant.nn")
    except NndslError:
        return (), ()
    starts = [0] + [m.end() for m in re.finditer("\n", text)]
    found, used = [], set()
    for node in _nodes(module.items):
        for kind, span in _site_spans(node):
            start = starts[span.line - 1] + span.column - 1
            end = starts[span.end_line - 1] + span.end_column - 1
            found.append(Site(kind, start, end))
        if isinstance(node, ast.Name):
            used.add(node.id)
        if isinstance(node, ast.Link) and node.label:
            used.add(node.label)
    return tuple(found), tuple(sorted(used))


def ast_edit(d: Drawer, text: str) -> str:
    """One AST-aware edit at a parsed site (the text unchanged when it does not parse)."""
    found, used = sites(text)
    if not found:
        return text
    site = d.pick(found)
    before, here, after = text[:site.start], text[site.start:site.end], text[site.end:]
    match site.kind:
        case "op":
            here = d.pick(OP_NAMES)
        case "number":
            here = d.pick(NUMBERS)
        case "arg":
            return _drop_argument(before, after)
        case "call" if here.endswith(")"):
            sep = ", " if not here.endswith("()") else ""
            here = f"{here[:-1]}{sep}{d.pick(PARAM_NAMES)}={d.pick(BAD_VALUES)})"
        case "link":
            here = f"{d.pick((*used, 'enc', 'in'))}: {here}"
        case "name" if d.chance(10):  # nesting deep enough to strain recursive code
            depth = d.pick((30, 150, 1500))
            here = d.pick(("-" * depth + here, " + ".join([here] * depth),
                           "[" * depth + here + "]" * depth))
        case "name":
            here = d.pick((*used, "in", "nosuch", "batch", "true"))
        case "stmt":
            other = d.pick([s for s in found if s.kind == "stmt"])
            choice = d.pick(("dup", "drop", "swap"))
            if choice == "swap" and (other.end <= site.start or other.start >= site.end):
                return _swap(text, site, other)
            here = "" if choice == "drop" else f"{here}; {here}"
        case "type":
            here = d.pick(TYPES)
        case "value":
            here = d.pick((*BAD_VALUES, "relu", "adam", "[enc]", "[accuracy, mse]"))
    return before + here + after


def _drop_argument(before: str, after: str) -> str:
    """Text without an argument and one comma next to it."""
    if after.lstrip().startswith(","):
        return before + after.lstrip()[1:]
    stripped = before.rstrip()
    return (stripped[:-1] if stripped.endswith(",") else before) + after


def _swap(text: str, a: Site, b: Site) -> str:
    first, second = sorted((a, b), key=lambda s: s.start)
    return (text[:first.start] + text[second.start:second.end] + text[first.end:second.start]
            + text[first.start:first.end] + text[second.end:])


def mutate(d: Drawer, text: str) -> str:
    """One or two AST-aware edits and/or lexeme edits (drawn)."""
    kind = d.pick(("ast", "ast", "ast+lexeme", "lexeme"))
    if kind.startswith("ast"):
        for _ in range(d.int(1, 2)):
            text = ast_edit(d, text)
    if kind.endswith("lexeme"):
        text = lexeme_edit(d, text)
    return text
