"""`nndsl fmt`'s formatter: one canonical layout for every spec, comments kept.

The spec is parsed (a syntax error is the usual positioned NndslError), printed from its AST
(nndsl/format/layout.py, exprs.py) and its comments are put back by position (emit.py). The
result is parsed again and must give the same AST, spans aside: the formatter never changes
what a spec means, and says so rather than write a file that would. The rules are in
docs/language.md, "Formatting".
"""

from __future__ import annotations

import dataclasses
from typing import Any

from nndsl.errors import NndslError, Span
from nndsl.format.emit import render
from nndsl.format.layout import Layout
from nndsl.format.source import Source
from nndsl.grammar.parser import parse

__all__ = ["format_text", "shape"]


def format_text(text: str, file: str = "<stdin>") -> str:
    """The canonical form of a spec's text (line ends become `\\n`)."""
    text = text.replace("\r\n", "\n")
    module = parse(text, file)
    source = Source(text)
    formatted = render(Layout(source).module(module), source)
    again = parse(formatted, file)
    if shape(again) != shape(module):
        raise NndslError(f"formatting {file} would change its meaning; it was left as it is",
                         hint="this is a bug in `nndsl fmt`: please report it with the spec")
    return formatted


def shape(node: Any) -> Any:
    """An AST as nested tuples without positions, to compare two parses of one spec."""
    if isinstance(node, tuple | list):
        return tuple(shape(item) for item in node)
    if isinstance(node, Span):
        return None
    if dataclasses.is_dataclass(node) and not isinstance(node, type):
        return (type(node).__name__,
                *(shape(getattr(node, f.name)) for f in dataclasses.fields(node)
                  if f.name not in ("span", "name_span", "file")))
    return node


