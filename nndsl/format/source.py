"""The spec's text as the formatter reads it: offsets from the AST's spans, and its comments.

The grammar drops comments (`%ignore COMMENT`), so they are found again here by position. In a
spec that parses, a `#` outside a string literal always starts a comment, and string literals
never span lines, so one pass over the text that skips strings finds every comment exactly.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass

from nndsl.errors import Span

STRING_OR_COMMENT = re.compile(r'("(?:[^"\\\n]|\\.)*")|#[^\n]*')  # group 1: a string
BLANK_LINE = re.compile(r"\n[ \t\r\f\v]*\n")


@dataclass(frozen=True, slots=True)
class Comment:
    """One `# ...` comment: where it starts, its text, and whether code precedes it on its line."""

    pos: int
    line: int  # 1-based
    column: int  # 1-based
    text: str  # trailing white space removed
    own_line: bool


def scan_comments(text: str) -> list[Comment]:
    """Every comment of `text`, in order. Strings are matched too, so `"#"` is not one."""
    line_starts = [0] + [m.end() for m in re.finditer("\n", text)]
    comments: list[Comment] = []
    for m in STRING_OR_COMMENT.finditer(text):
        if m.group(1) is None:
            line = bisect.bisect_right(line_starts, m.start())
            start = line_starts[line - 1]
            own = not text[start:m.start()].strip()
            column = m.start() - start + 1
            comments.append(Comment(m.start(), line, column, m.group().rstrip(), own))
    return comments


class Source:
    """The text, its line starts, its comments, and `code`: the text with comments blanked."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.line_starts = [0] + [m.end() for m in re.finditer("\n", text)]
        self.comments = scan_comments(text)
        self.comment_starts = [c.pos for c in self.comments]
        self.code = STRING_OR_COMMENT.sub(lambda m: m.group(1) or " " * len(m.group()), text)

    def offset(self, line: int, column: int) -> int:
        return self.line_starts[line - 1] + column - 1

    def range(self, span: Span) -> tuple[int, int]:
        """[start, end) offsets of a span."""
        return self.offset(span.line, span.column), self.offset(span.end_line, span.end_column)

    def lexeme(self, span: Span) -> str:
        """The text of a one-token span (a number or a string literal), exactly as written."""
        start, end = self.range(span)
        return self.text[start:end]

    def skip(self, pos: int, *tokens: str) -> int:
        """The offset after `tokens`, expected in order from `pos` with only blanks (or comments)
        between: the punctuation the AST does not keep (`)`, `{`) is located this way."""
        for token in tokens:
            pos = self._after_blanks(pos)
            if not self.code.startswith(token, pos):
                raise AssertionError(f"expected {token!r} at {pos}: {self.code[pos:pos + 20]!r}")
            pos += len(token)
        return pos

    def skip_optional(self, pos: int, token: str) -> int:
        """The offset after `token` when it comes next (a trailing comma), else `pos`."""
        after = self._after_blanks(pos)
        return after + len(token) if self.code.startswith(token, after) else pos

    def _after_blanks(self, pos: int) -> int:
        while pos < len(self.code) and self.code[pos].isspace():
            pos += 1
        return pos

    def comments_in(self, start: int, end: int) -> list[Comment]:
        """The comments that start in [start, end)."""
        lo = bisect.bisect_left(self.comment_starts, start)
        hi = bisect.bisect_left(self.comment_starts, end)
        return self.comments[lo:hi]

    def blank_between(self, start: int, end: int) -> bool:
        """Whether a blank line lies between two offsets."""
        return start < end and BLANK_LINE.search(self.text, start, end) is not None
