"""Lines plus comments -> text: comments back at their statements, blank lines, alignment.

A comment is placed by its source offset among the lines' source ranges:

- inside a line's range (a comment within a statement that is now printed on one line): on its
  own line just before that line;
- after code on its source line: trailing the last line whose range ends before it;
- on a line of its own: before the first line that starts after it, at that line's indent (a
  `}` gives the indent of the body it closes); an own-line comment right below a trailing one,
  in the same column, continues it and stays in its column.

Trailing comments of consecutive lines are aligned one column (two spaces after the longest
line); a line without one ends the run.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

from nndsl.format.layout import CLOSE, FIRST, FORCE, KEEP, NEVER, Line
from nndsl.format.source import Comment, Source

FIRST_COMMENT = {FORCE: FORCE, KEEP: KEEP, FIRST: NEVER, NEVER: NEVER, CLOSE: KEEP}
AFTER_COMMENTS = {FORCE: KEEP, KEEP: KEEP, FIRST: KEEP, NEVER: NEVER, CLOSE: NEVER}
GAP = 2  # spaces between the longest line of a run and its trailing comments


@dataclass(slots=True)
class Placement:
    """Where each comment goes: before line i, trailing line i (then continuing), or at the end."""

    before: dict[int, list[Comment]] = field(default_factory=dict)
    trailing: dict[int, list[Comment]] = field(default_factory=dict)
    tail: list[Comment] = field(default_factory=list)


@dataclass(slots=True)
class Row:
    """One output row: code (with its trailing comment), a comment, or a blank line."""

    indent: int
    text: str
    comment: str | None = None
    continuation: bool = False  # a comment row in the trailing comments' column
    code: bool = True  # False: a comment on its own line


def place(lines: list[Line], comments: list[Comment]) -> Placement:
    """Assign every comment to a line (see the module docstring)."""
    starts = [line.start for line in lines]
    placement = Placement()
    previous: tuple[int, Comment] | None = None  # the last trailing comment and its line
    for c in comments:
        i = bisect.bisect_right(starts, c.pos) - 1
        if i >= 0 and c.pos < lines[i].end:
            placement.before.setdefault(i, []).append(c)
        elif i >= 0 and (not c.own_line or _continues(c, previous, i)):
            placement.trailing.setdefault(i, []).append(c)
            previous = (i, c)
            continue
        elif i + 1 < len(lines):
            placement.before.setdefault(i + 1, []).append(c)
        else:
            placement.tail.append(c)
        previous = None
    return placement


def _continues(c: Comment, previous: tuple[int, Comment] | None, i: int) -> bool:
    return (previous is not None and previous[0] == i and c.line == previous[1].line + 1
            and c.column == previous[1].column)


def render(lines: list[Line], source: Source) -> str:
    """The formatted text: rows built with blank lines, then trailing comments aligned."""
    placement = place(lines, source.comments)
    rows: list[Row | None] = []  # None: a blank line
    last_end = 0

    def add(row: Row, mode: str, start: int, end: int) -> None:
        nonlocal last_end
        last = rows[-1] if rows else None
        after_header = last is not None and last.code and last.text.endswith("{")
        if rows and not after_header and (mode == FORCE or mode == KEEP
                                          and source.blank_between(last_end, start)):
            rows.append(None)
        rows.append(row)
        last_end = end

    for i, line in enumerate(lines):
        mode = line.blank
        for k, c in enumerate(placement.before.get(i, ())):
            indent = line.indent if line.comment_indent is None else line.comment_indent
            comment_mode = FIRST_COMMENT[mode] if k == 0 else NEVER if mode == NEVER else KEEP
            add(Row(indent, c.text, code=False), comment_mode, *_extent(c, line))
        if i in placement.before:
            mode = AFTER_COMMENTS[mode]
        trailing = placement.trailing.get(i, [])
        add(Row(line.indent, line.text, trailing[0].text if trailing else None), mode,
            line.start, line.end)
        rows += [Row(0, c.text, continuation=True, code=False) for c in trailing[1:]]
    for c in placement.tail:
        add(Row(0, c.text, code=False), KEEP, c.pos, c.pos + len(c.text))
    text = "\n".join(_aligned(rows))
    return text + "\n" if text else ""


def _extent(c: Comment, line: Line) -> tuple[int, int]:
    """Where a comment put before `line` counts as being when blank lines are looked for: a
    comment from within the line's statement counts as at its start, since blank lines inside
    a statement are not blank lines between statements."""
    return (line.start, line.start) if c.pos > line.start else (c.pos, c.pos + len(c.text))


def _aligned(rows: list[Row | None]) -> list[str]:
    """Rows as text; the trailing comments of each run of consecutive rows share a column."""
    out: list[str] = []
    i = 0
    while i < len(rows):
        row = rows[i]
        if row is None or row.comment is None:
            out.append("" if row is None else " " * row.indent + row.text)
            i += 1
            continue
        j = i + 1
        while j < len(rows) and rows[j] is not None and (rows[j].comment is not None
                                                         or rows[j].continuation):
            j += 1
        run = [r for r in rows[i:j] if r is not None]
        column = max(r.indent + len(r.text) for r in run if not r.continuation) + GAP
        for r in run:
            code = "" if r.continuation else " " * r.indent + r.text
            out.append(code.ljust(column) + (r.text if r.continuation else r.comment or ""))
        i = j
    return out
