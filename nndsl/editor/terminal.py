"""Syntax colour for the spec lines that error messages quote, on a terminal only.

An error shows the offending source line with a caret line under it (nndsl/errors.py); when
stderr is a terminal (and NO_COLOR is unset, TERM is not `dumb`) that line is coloured with
the nndsl Pygments lexer. Anything else, a pipe or a file or a test's capture, gets the plain
text unchanged, so error messages stay exactly comparable.
"""

from __future__ import annotations

import os
import re
from typing import TextIO

CARET_LINE = re.compile(r" {4,}\^+")
QUOTE = "    "  # the indent errors quote source lines with


def wants_colour(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty()) and not os.environ.get("NO_COLOR") \
        and os.environ.get("TERM") != "dumb"


def highlight_quoted_lines(rendered: str) -> str:
    """`rendered` with each quoted source line (the line above a caret line) coloured."""
    from pygments import highlight
    from pygments.formatters import TerminalFormatter

    from nndsl.editor.pygments_lexer import NndslLexer

    lines = rendered.split("\n")
    for i, (line, below) in enumerate(zip(lines, lines[1:], strict=False)):
        if line.startswith(QUOTE) and CARET_LINE.fullmatch(below):
            coloured = highlight(line[len(QUOTE):], NndslLexer(), TerminalFormatter())
            lines[i] = QUOTE + coloured.rstrip("\n")
    return "\n".join(lines)
