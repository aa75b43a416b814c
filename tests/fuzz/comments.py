"""Comments sprinkled into a spec where a user might write them, for the formatter's fuzzing.

Why: the AST has no comments, so the formatter puts them back by position; every kind of
place must keep them: after a statement, on a line of their own (at any indent), and in the
middle of a statement (after `(`, `,`, `{`, `=` or `->`, which ends the line there).
"""

from __future__ import annotations

import re

from .values import Drawer

STRING_OR_COMMENT = re.compile(r'"(?:[^"\\\n]|\\.)*"|#[^\n]*')
BREAKS = re.compile(r"->|[(,{=]")


def _outside_strings(text: str) -> list[bool]:
    """For each offset: whether it lies outside every string literal and comment."""
    free = [True] * (len(text) + 1)
    for m in STRING_OR_COMMENT.finditer(text):
        free[m.start() + 1: m.end()] = [False] * (m.end() - m.start() - 1)
    return free


def sites(text: str) -> list[tuple[str, int]]:
    """Where a comment may go: line ends, line starts and just after a breaking token."""
    free = _outside_strings(text)
    ends = [("end", m.start()) for m in re.finditer("\n", text) if free[m.start()]]
    starts = [("own", 0)] + [("own", m.end()) for m in re.finditer("\n", text)]
    inner = [("inner", m.end()) for m in BREAKS.finditer(text) if free[m.start()]]
    return ends + starts + inner


def add_comments(d: Drawer, text: str, count: int) -> str:
    """`text` with `count` numbered comments at drawn sites (applied from the end backwards)."""
    found = sites(text)
    if not found:
        return text
    chosen = sorted({d.pick(found) for _ in range(count)}, key=lambda s: s[1], reverse=True)
    for n, (kind, pos) in enumerate(chosen):
        if kind == "end":
            comment = f"{' ' * d.int(0, 3)}# trailing {n}"
        elif kind == "own":
            comment = f"{' ' * d.int(0, 6)}# own line {n}\n"
        else:
            comment = f" # inside {n}\n"
        text = text[:pos] + comment + text[pos:]
    return text
