"""Positioned errors: every mistake a user can make is reported as `file:line:col` with a caret.

One error type, `NndslError`, carries a `Span`, a message, what was expected and what was
received, a hint, and the call sites it was reached through (block expansions). `ErrorGroup`
bundles several so one run can report them all.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Span:
    """Where a piece of source text lives: 1-based line and column, end exclusive."""

    file: str
    line: int
    column: int
    end_line: int
    end_column: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


class NndslError(Exception):
    """A user-facing error with a source position; rendered, never shown as a traceback."""

    def __init__(
        self,
        message: str,
        span: Span | None = None,
        *,
        hint: str | None = None,
        expected: str | None = None,
        received: str | None = None,
        notes: Iterable[tuple[str, Span | None]] = (),
    ) -> None:
        super().__init__(message)
        self.message = message
        self.span = span
        self.hint = hint
        self.expected = expected
        self.received = received
        self.notes: list[tuple[str, Span | None]] = list(notes)

    def with_note(self, text: str, span: Span | None) -> NndslError:
        """Add a 'note:' line (e.g. 'in block conv_pool used here') and return self."""
        self.notes.append((text, span))
        return self

    def render(self, sources: SourceMap | None = None) -> str:
        """`file:line:col: error: msg`, the source line, a caret, expected/received, hint."""
        lines = [f"{self.span}: error: {self.message}" if self.span else f"error: {self.message}"]
        lines += _excerpt(self.span, sources)
        if self.expected is not None:
            lines.append(f"  expected: {self.expected}")
        if self.received is not None:
            lines.append(f"  received: {self.received}")
        if self.hint:
            lines.append(f"  hint: {self.hint}")
        for text, span in self.notes:
            lines.append(f"{span}: note: {text}" if span else f"note: {text}")
            lines += _excerpt(span, sources)
        return "\n".join(lines)

    def __str__(self) -> str:
        return f"{self.span}: {self.message}" if self.span else self.message


class ErrorGroup(NndslError):
    """Several independent errors found in one run (the parser and checker keep going)."""

    def __init__(self, errors: list[NndslError]) -> None:
        super().__init__(f"{len(errors)} errors", errors[0].span if errors else None)
        self.errors = errors

    def render(self, sources: SourceMap | None = None) -> str:
        return "\n".join(e.render(sources) for e in self.errors)


class ExecutionError(NndslError):
    """A backend failed while running a node; reported at the node's source position."""


class SourceMap(dict[str, str]):
    """file name -> source text, so errors can show the offending line."""


def _excerpt(span: Span | None, sources: SourceMap | None) -> list[str]:
    if span is None or sources is None or span.file not in sources:
        return []
    text_lines = sources[span.file].splitlines()
    if not 1 <= span.line <= len(text_lines):
        return []
    line = text_lines[span.line - 1].expandtabs(4).rstrip()
    same_line = span.end_line == span.line
    width = span.end_column - span.column if same_line else len(line) - span.column + 1
    width = max(1, min(width, max(1, len(line) - span.column + 1)))
    return [f"    {line}", "    " + " " * (span.column - 1) + "^" * width]


def require(ok: bool, name: str, value: Any, expected: str) -> None:
    """Raise a positioned-later `NndslError` saying `name` must be `expected` unless `ok` (the
    caller, which knows the setting's place, adds the span)."""
    if not ok:
        raise NndslError(f"`{name}` must be {expected}", expected=expected,
                         received=f"{name}={value!r}")


def did_you_mean(name: str, choices: Iterable[str]) -> str | None:
    """A 'did you mean' hint for a misspelt name, or None when nothing is close."""
    close = difflib.get_close_matches(name, sorted(set(choices)), n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'?" if close else None


@dataclass
class ErrorSink:
    """Collects errors so a pass can report all of them instead of stopping at the first."""

    errors: list[NndslError] = field(default_factory=list)

    def add(self, error: NndslError) -> None:
        if isinstance(error, ErrorGroup):
            self.errors.extend(error.errors)
        else:
            self.errors.append(error)

    def raise_if_any(self) -> None:
        if len(self.errors) == 1:
            raise self.errors[0]
        if self.errors:
            raise ErrorGroup(self.errors)
