"""Statements and definitions as output lines, each tied to the source range it came from.

Every `Line` records the [start, end) offsets of the source it prints, so the comments (which
the AST does not hold) can be put back by position afterwards (nndsl/format/emit.py), and a
`blank` mode that says whether a blank line may or must come before it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from nndsl.format.exprs import ExprPrinter
from nndsl.format.source import Source
from nndsl.grammar import ast

INDENT = 2  # per nesting level
CONTINUATION = 4  # extra indent of the `-> layer` lines of a chain that does not fit
WIDTH = 100  # a chain longer than this is written one layer per line

# blank-line modes: FORCE always, KEEP when the source had one, FIRST never (first statement of a
# body: after `{`), NEVER (a chain's continuation line), CLOSE never (a `}`; comments before it
# keep their own blank lines)
FORCE, KEEP, FIRST, NEVER, CLOSE = "force", "keep", "first", "never", "close"


@dataclass(slots=True)
class Line:
    """One output line: indent, code, the source range it prints, its blank-line mode, and
    the indent of comments put before it (a `}` takes the body's)."""

    indent: int
    text: str
    start: int
    end: int
    blank: str = KEEP
    comment_indent: int | None = None


Item = ast.Import | ast.BlockDef | ast.ModelDef | ast.TrainDef
Body = Sequence[ast.Stmt | ast.Setting | ast.TargetDecl | ast.PhaseDef]


class Layout:
    """Turns one parsed spec into lines (comments are placed afterwards)."""

    def __init__(self, source: Source) -> None:
        self.src = source
        self.exprs = ExprPrinter(source)
        self.items: dict[type, Callable[[Item], list[Line]]] = {
            ast.Import: self._import, ast.BlockDef: self._block,
            ast.ModelDef: self._model, ast.TrainDef: self._train,
        }
        self.statements: dict[type, Callable[[object, int, str], list[Line]]] = {
            ast.InputDecl: self._typed, ast.TargetDecl: self._typed,
            ast.OutputDecl: self._output, ast.Binding: self._assign, ast.Setting: self._assign,
            ast.ExprStmt: self._assign, ast.Defaults: self._defaults, ast.PhaseDef: self._phase,
        }

    def module(self, module: ast.Module) -> list[Line]:
        """Top-level items; a blank line between two of them unless both are imports."""
        lines: list[Line] = []
        previous: Item | None = None
        for item in module.items:
            item_lines = self.items[type(item)](item)
            both_imports = isinstance(item, ast.Import) and isinstance(previous, ast.Import)
            item_lines[0].blank = FIRST if previous is None else KEEP if both_imports else FORCE
            lines += item_lines
            previous = item
        return lines

    # ------------------------------------------------------------ top-level items

    def _import(self, item: Item) -> list[Line]:
        assert isinstance(item, ast.Import)
        start, end = self.src.range(item.span)
        path = self.src.code[self.src.skip(start, "import"): end].strip()  # comments blanked
        return [Line(0, f"import {path}", start, end)]

    def _block(self, item: Item) -> list[Line]:
        assert isinstance(item, ast.BlockDef)
        start, end = self.src.range(item.span)
        params = [p.name if p.default is None else f"{p.name}={self.exprs.expr(p.default)}"
                  for p in item.params]
        if item.params:
            after = self.src.skip_optional(self.src.range(item.params[-1].span)[1], ",")
        else:
            after = self.src.skip(start, "block", item.name, "(")
        open_ = self.src.skip(after, ")", "{") - 1
        head = f"block {item.name}({', '.join(params)})"
        return self.braced(head, start, open_, end - 1, item.body, 0, join_exprs=False)

    def _model(self, item: Item) -> list[Line]:
        assert isinstance(item, ast.ModelDef)
        return self._named("model", item, 0, join_exprs=True)

    def _train(self, item: Item) -> list[Line]:
        assert isinstance(item, ast.TrainDef)
        return self._named("train", item, 0)

    def _named(self, keyword: str, item: ast.ModelDef | ast.TrainDef | ast.PhaseDef,
               indent: int, join_exprs: bool = False, one_line: bool = False) -> list[Line]:
        start, end = self.src.range(item.span)
        open_ = self.src.skip(start, keyword, item.name, "{") - 1
        return self.braced(f"{keyword} {item.name}", start, open_, end - 1, item.body, indent,
                           join_exprs=join_exprs, one_line=one_line)

    # ------------------------------------------------------------ bodies

    def braced(self, head: str, start: int, open_: int, close: int, body: Body, indent: int,
               join_exprs: bool = False, one_line: bool = False) -> list[Line]:
        """`head { ... }`: `{}` when empty, one line when allowed and it fits without comments,
        else one statement per line and the `}` on its own."""
        inner = indent + INDENT
        commented = bool(self.src.comments_in(open_, close))
        if not body and not commented:
            return [Line(indent, f"{head} {{}}", start, close + 1)]
        if one_line and not commented and all(isinstance(s, ast.Setting | ast.TargetDecl)
                                              for s in body):
            text = f"{head} {{ {'; '.join(self._flat(s) for s in body)} }}"
            if indent + len(text) <= WIDTH:
                return [Line(indent, text, start, close + 1)]
        return [Line(indent, f"{head} {{", start, open_ + 1),
                *self._body(body, inner, join_exprs),
                Line(indent, "}", close, close + 1, CLOSE, comment_indent=inner)]

    def _flat(self, stmt: object) -> str:
        """A setting or target declaration on one line, for a one-line body."""
        if isinstance(stmt, ast.Setting):
            return f"{stmt.name} = {self.exprs.expr(stmt.value)}"
        return self._typed(stmt, 0, "")[0].text

    def _body(self, body: Body, indent: int, join_exprs: bool) -> list[Line]:
        """One statement per line; the `=` of each run of settings not broken by a blank line
        are aligned (bindings are not: renaming one would re-indent its neighbours). In a
        model, an expression statement (always an error there: a missing `=` or `->`) stays
        on the line of the statement before it, so `nndsl check` still names the mistake."""
        widths = self._alignment(body)
        lines: list[Line] = []
        for i, stmt in enumerate(body):
            if join_exprs and i and _same_line_expr(stmt, body[i - 1]):
                self._join(lines[-1], stmt)
                continue
            assigned = isinstance(stmt, ast.Binding | ast.Setting)
            name = stmt.name.ljust(widths[i]) if assigned else ""  # type: ignore[union-attr]
            stmt_lines = self.statements[type(stmt)](stmt, indent, name)
            if i and stmt_lines[0].text[:1] in ("-", "("):
                lines[-1].text += ";"  # else it would continue the statement before it
            stmt_lines[0].blank = KEEP if i else FIRST
            lines += stmt_lines
        return lines

    def _alignment(self, body: Body) -> list[int]:
        """The width the name of each statement is padded to: for a setting, the longest setting
        name of its run (statements not separated by a blank line); 0 for the rest."""
        runs: list[list[int]] = []
        for i, stmt in enumerate(body):
            gap = i and self.src.blank_between(self.src.range(body[i - 1].span)[1],
                                               self.src.range(stmt.span)[0])
            if not runs or gap:
                runs.append([])
            runs[-1].append(i)
        widths = [0] * len(body)
        for run in runs:
            settings = [i for i in run if isinstance(body[i], ast.Setting)]
            width = max((len(body[i].name) for i in settings), default=0)  # type: ignore[union-attr]
            for i in settings:
                widths[i] = width
        return widths

    def _join(self, line: Line, stmt: ast.Stmt) -> None:
        assert isinstance(stmt, ast.ExprStmt)
        text = self.exprs.expr(stmt.value)
        line.text += ("; " if text[:1] in ("-", "(") else " ") + text
        line.end = self.src.range(stmt.span)[1]

    # ------------------------------------------------------------ statements

    def _typed(self, stmt: object, indent: int, _: str) -> list[Line]:
        assert isinstance(stmt, ast.InputDecl | ast.TargetDecl)
        keyword = "input" if isinstance(stmt, ast.InputDecl) else "target"
        items = ", ".join(f"{t.name}: {t.type.dtype or ''}[{', '.join(map(str, t.type.dims))}]"
                          for t in stmt.items)
        return [Line(indent, f"{keyword} {items}", *self.src.range(stmt.span))]

    def _output(self, stmt: object, indent: int, _: str) -> list[Line]:
        assert isinstance(stmt, ast.OutputDecl)
        names = ", ".join(name for name, _span in stmt.names)
        return [Line(indent, f"output {names}", *self.src.range(stmt.span))]

    def _defaults(self, stmt: object, indent: int, _: str) -> list[Line]:
        assert isinstance(stmt, ast.Defaults)
        start, end = self.src.range(stmt.span)
        open_ = self.src.skip(start, "defaults", "{") - 1
        return self.braced("defaults", start, open_, end - 1, stmt.settings, indent,
                           one_line=True)

    def _phase(self, stmt: object, indent: int, _: str) -> list[Line]:
        assert isinstance(stmt, ast.PhaseDef)
        return self._named("phase", stmt, indent, one_line=True)

    def _assign(self, stmt: object, indent: int, name: str) -> list[Line]:
        """`name = value` (or a bare expression); a chain that is too long, or that has
        comments between its layers, is written one `-> layer` per line."""
        assert isinstance(stmt, ast.Binding | ast.Setting | ast.ExprStmt)
        prefix = f"{name} = " if name else ""
        start, end = self.src.range(stmt.span)
        value = stmt.value
        text = prefix + self.exprs.expr(value)
        if not isinstance(value, ast.Chain) or (indent + len(text) <= WIDTH
                                                and not self._commented_links(value)):
            return [Line(indent, text, start, end)]
        first_end = self.src.range(value.start.span)[1]
        lines = [Line(indent, prefix + self.exprs.chain_start(value), start, first_end)]
        for link in value.links:
            lines.append(Line(indent + CONTINUATION, f"-> {self.exprs.link(link)}",
                              *self.src.range(link.span), NEVER))
        return lines

    def _commented_links(self, chain: ast.Chain) -> bool:
        """Whether a comment lies between two parts of the chain (its start and its links)."""
        parts = [self.src.range(p.span) for p in (chain.start, *chain.links)]
        return any(self.src.comments_in(a[1], b[0]) for a, b in zip(parts, parts[1:], strict=False))


def _same_line_expr(stmt: object, previous: object) -> bool:
    return isinstance(stmt, ast.ExprStmt) and \
        stmt.span.line == previous.span.end_line  # type: ignore[attr-defined]
