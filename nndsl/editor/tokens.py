"""The one token table behind every editor integration: the Pygments lexer and the TextMate
grammar (VS Code and others) are both generated from `RULES`, so they cannot disagree.

Each rule is a regular expression in the subset that Python's `re` and Oniguruma (TextMate)
read alike: groups, classes, alternation, `\\b` and lookahead. A `Match` names one token kind
per group (or one for the whole match); a `Region` is a string literal, with its escapes
inside. Rules are tried in order at each position; TextMate matches within one line, so a rule
whose `\\s*` would cross a line end (`f(\\n  k=v)`) only applies on one line there.

The keywords and punctuation are those of grammar/nndsl.lark (tests/test_editor.py checks
that they are exactly its literal terminals); op names come from the op registry, by kind.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

NAME = r"[A-Za-z_][A-Za-z0-9_]*"
KEYWORDS = ("import", "block", "model", "train", "input", "output", "defaults", "target",
            "phase", "repeat")
CONSTANTS = ("true", "false")
OPERATORS = ("->", "**", "=", "+", "-", "*", "/")  # "**" before "*": tried in order
PUNCTUATION = ("(", ")", "[", "]", "{", "}", ",", ":", ";")
BRACKETS = (("(", ")"), ("[", "]"), ("{", "}"))
LINE_COMMENT = "#"

# kind -> (Pygments token type, TextMate scope without the `.nndsl` suffix)
KINDS: dict[str, tuple[str, str]] = {
    "comment": ("Comment.Single", "comment.line.number-sign"),
    "string": ("String.Double", "string.quoted.double"),
    "escape": ("String.Escape", "constant.character.escape"),
    "keyword": ("Keyword", "keyword.other"),
    "constant": ("Keyword.Constant", "constant.language.boolean"),
    "dtype": ("Keyword.Type", "storage.type"),
    "model": ("Name.Class", "entity.name.type"),  # the name a model or train block defines
    "block": ("Name.Function", "entity.name.function"),
    "phase": ("Name.Namespace", "entity.name.section"),
    "label": ("Name.Label", "entity.name.label"),
    "parameter": ("Name.Attribute", "variable.parameter"),  # k= in a call or block header
    "variable": ("Name.Variable", "variable.other.definition"),  # a binding's or setting's name
    "layer": ("Name.Builtin", "support.function"),  # layers, activations, losses, metrics
    "config": ("Name.Function.Magic", "support.function.config"),  # optimizers, inits, ...
    "number": ("Number", "constant.numeric"),
    "operator": ("Operator", "keyword.operator"),
    "punctuation": ("Punctuation", "punctuation"),
    "name": ("Name", "variable.other"),
    "whitespace": ("Text.Whitespace", ""),  # TextMate leaves white space unscoped
}


@dataclass(frozen=True)
class Match:
    """A pattern and the kind of each of its groups (one kind: the whole match)."""

    pattern: str
    kinds: tuple[str, ...]


@dataclass(frozen=True)
class Region:
    """A delimited token (a string literal): its kind, delimiters and the rules inside it."""

    name: str
    begin: str
    end: str
    kind: str
    inside: tuple[Match, ...]
    content: str  # what the text between the inner matches is, one line at a time


def words(names: tuple[str, ...] | list[str]) -> str:
    """A pattern for any of `names` as a whole word (longest first, so `lstm` beats `l`)."""
    return r"\b(?:" + "|".join(sorted(names, key=lambda n: (-len(n), n))) + r")\b"


def op_names() -> tuple[list[str], list[str]]:
    """Registered op names: tensor ops (layers, activations, losses, metrics), then the rest."""
    import nndsl.ops  # noqa: F401  (registers every op family)
    from nndsl.ops.registry import KINDS as OP_KINDS
    from nndsl.ops.registry import TENSOR_KINDS, names

    tensor = names(*TENSOR_KINDS)
    config = [n for n in names(*(k for k in OP_KINDS if k not in TENSOR_KINDS))
              if n not in tensor]
    return tensor, config


@cache
def rules() -> tuple[Match | Region, ...]:
    """The token rules, in the order they are tried."""
    from nndsl.ir import DTYPES

    tensor, config = op_names()
    s = r"(\s*)"
    return (
        Match(r"#[^\n]*", ("comment",)),
        Region("string", '"', r'"|$', "string", (Match(r"\\.", ("escape",)),), r'[^"\\\n]+'),
        Match(rf"\b(model|train)\b{s}({NAME})", ("keyword", "whitespace", "model")),
        Match(rf"\b(block)\b{s}({NAME})", ("keyword", "whitespace", "block")),
        Match(rf"\b(phase)\b{s}({NAME})", ("keyword", "whitespace", "phase")),
        Match(rf"(->){s}({NAME}){s}(:)",
              ("operator", "whitespace", "label", "whitespace", "punctuation")),
        Match(rf"(\{{){s}({NAME}){s}(:)",
              ("punctuation", "whitespace", "label", "whitespace", "punctuation")),
        Match(rf"([(,]){s}({NAME}){s}(=)",
              ("punctuation", "whitespace", "parameter", "whitespace", "operator")),
        Match(rf"\b{NAME}\.{NAME}", ("name",)),  # a weight, `label.param` (DOTTED_NAME)
        Match(words(KEYWORDS), ("keyword",)),
        Match(words(CONSTANTS), ("constant",)),
        Match(rf"({NAME}){s}(=)", ("variable", "whitespace", "operator")),
        Match(words(DTYPES) + r"(?=\s*\[)", ("dtype",)),
        Match(words(tensor), ("layer",)),
        Match(words(config), ("config",)),
        Match(NAME, ("name",)),
        Match(r"(?:[0-9]+\.[0-9]*|\.[0-9]+|[0-9]+)(?:[eE][+-]?[0-9]+)?", ("number",)),
        Match("|".join(map(_escape, OPERATORS)), ("operator",)),
        Match("[" + "".join(map(_escape, PUNCTUATION)) + "]", ("punctuation",)),
        Match(r"\s+", ("whitespace",)),
    )


def _escape(symbol: str) -> str:
    """A symbol as a pattern both engines read literally (inside and outside a class)."""
    return "".join("\\" + ch if ch in r"\^$.|?*+()[]{}-/" else ch for ch in symbol)
