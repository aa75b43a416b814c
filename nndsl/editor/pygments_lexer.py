"""A Pygments lexer for nndsl specs, built from the shared token table (nndsl/editor/tokens.py).

Registered through the `pygments.lexers` entry point (pyproject.toml), so once nndsl is
installed `pygmentize -l nndsl spec.nn`, Sphinx and MkDocs code blocks marked `nndsl` (or `nn`)
and `pygments.lexers.get_lexer_for_filename("x.nn")` all find it.
"""

from __future__ import annotations

from typing import Any

from pygments.lexer import RegexLexer, bygroups
from pygments.token import _TokenType, string_to_tokentype

from nndsl.editor.tokens import KINDS, Match, Region, rules

__all__ = ["NndslLexer"]


def token(kind: str) -> _TokenType:
    return string_to_tokentype(KINDS[kind][0])


def _action(rule: Match) -> Any:
    if len(rule.kinds) == 1:
        return token(rule.kinds[0])
    return bygroups(*(token(kind) for kind in rule.kinds))


def pygments_states() -> dict[str, list[Any]]:
    """RegexLexer states: `root`, and one per region (entered at its start, left at its end)."""
    states: dict[str, list[Any]] = {"root": []}
    for rule in rules():
        if isinstance(rule, Region):
            states["root"].append((rule.begin, token(rule.kind), rule.name))
            states[rule.name] = [*((m.pattern, _action(m)) for m in rule.inside),
                                 (rule.content, token(rule.kind)),
                                 (rule.end, token(rule.kind), "#pop")]
        else:
            states["root"].append((rule.pattern, _action(rule)))
    return states


class NndslLexer(RegexLexer):
    """nndsl network specs (`.nn`): keywords, op names from the registry, labels, literals."""

    name = "nndsl"
    aliases = ["nndsl", "nn"]
    filenames = ["*.nn"]
    mimetypes = ["text/x-nndsl"]
    tokens = pygments_states()
