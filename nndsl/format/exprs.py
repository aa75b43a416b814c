"""Expressions in their canonical one-line form, with the fewest parentheses that keep the tree.

Parentheses are not in the AST, so they are put back only where the grammar needs them: an
operand that binds looser than its operator (`(a + b) * c`), a right operand of the same
level (`a - (b - c)`: the grammar is left-associative, and `a + (b + c)` is a different tree),
the left operand of `**`, which is right-associative (`(a ** b) ** c`, `(-a) ** 2`),
and a chain used as an operand or as the start of another chain (`(x -> f) -> g`). Numbers and
strings are printed exactly as written (`2e-4` stays `2e-4`).
"""

from __future__ import annotations

from collections.abc import Callable

from nndsl.format.source import Source
from nndsl.grammar import ast

CHAIN, SUM, PRODUCT, UNARY, POWER, ATOM = range(6)  # binding strength, loosest first
# op -> (symbol, its strength, what its left and its right operand need)
OPERATORS = {"add": ("+", SUM, SUM, PRODUCT), "sub": ("-", SUM, SUM, PRODUCT),
             "mul": ("*", PRODUCT, PRODUCT, UNARY), "div": ("/", PRODUCT, PRODUCT, UNARY),
             "pow": ("**", POWER, ATOM, UNARY)}  # right-associative: a ** b ** c, (a ** b) ** c


def strength(e: ast.Expr) -> int:
    """How tightly `e` binds as printed: chains loosest, then + -, * /, unary minus, **, atoms."""
    if isinstance(e, ast.Chain):
        return CHAIN
    if isinstance(e, ast.BinOp):
        return OPERATORS[e.op][1]
    return UNARY if isinstance(e, ast.Neg) else ATOM


class ExprPrinter:
    """Prints expressions of one spec (its source gives the number and string lexemes)."""

    def __init__(self, source: Source) -> None:
        self.source = source
        self.printers: dict[type, Callable[[ast.Expr], str]] = {
            ast.Number: self._lexeme, ast.String: self._lexeme, ast.Name: self._name,
            ast.ListLit: self._list, ast.CallExpr: self._call, ast.BinOp: self._binop,
            ast.Neg: self._neg, ast.Repeat: self._repeat, ast.Chain: self._chain,
        }

    def expr(self, e: ast.Expr, need: int = CHAIN) -> str:
        """`e` printed where the grammar needs at least binding strength `need`."""
        text = self.printers[type(e)](e)
        return f"({text})" if strength(e) < need else text

    def link(self, link: ast.Link) -> str:
        """One chain step: `label: callee`, or the callee alone."""
        callee = self.expr(link.callee, ATOM)
        return f"{link.label}: {callee}" if link.label is not None else callee

    def chain_start(self, chain: ast.Chain) -> str:
        """The value a chain starts from (a chain there keeps its parentheses)."""
        return self.expr(chain.start, SUM)

    def _lexeme(self, e: ast.Expr) -> str:
        return self.source.lexeme(e.span)

    def _name(self, e: ast.Expr) -> str:
        assert isinstance(e, ast.Name)
        return e.id

    def _list(self, e: ast.Expr) -> str:
        assert isinstance(e, ast.ListLit)
        return "[" + ", ".join(self.expr(item) for item in e.items) + "]"

    def _call(self, e: ast.Expr) -> str:
        assert isinstance(e, ast.CallExpr)
        args = [self.expr(a) for a in e.args]
        args += [f"{k.name}={self.expr(k.value)}" for k in e.kwargs]
        return f"{e.name}({', '.join(args)})"

    def _binop(self, e: ast.Expr) -> str:
        assert isinstance(e, ast.BinOp)
        symbol, _, left, right = OPERATORS[e.op]
        return f"{self.expr(e.left, left)} {symbol} {self.expr(e.right, right)}"

    def _neg(self, e: ast.Expr) -> str:
        assert isinstance(e, ast.Neg)
        operand = self.expr(e.operand, UNARY)
        return ("- " if operand.startswith("-") else "-") + operand  # `- -x`, not `--x`

    def _repeat(self, e: ast.Expr) -> str:
        assert isinstance(e, ast.Repeat)
        body = " -> ".join(self.link(link) for link in e.body)
        return f"repeat({self.expr(e.count)}) {{ {body} }}"

    def _chain(self, e: ast.Expr) -> str:
        assert isinstance(e, ast.Chain)
        return " -> ".join([self.chain_start(e), *(self.link(link) for link in e.links)])
