"""What several commands share: loading a spec, printing errors, drawing a plain table."""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def collector_paused() -> Iterator[None]:
    """The cycle collector paused: a parse tree, AST and IR are many small objects that all
    stay alive, and its full passes over them made a 10,000-layer check 1.6x slower
    (super-linear; make bench, case 4)."""
    import gc

    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def load_spec(spec: str) -> Any:
    """The checked program and its sources (the cycle collector paused meanwhile)."""
    from nndsl.program import load

    with collector_paused():
        return load(Path(spec))


def print_error(error: Exception, sources: Any, spec: str | None) -> None:
    """An NndslError rendered with the spec's lines (read from disk when not loaded yet)."""
    from nndsl.errors import SourceMap

    if sources is None:
        sources = SourceMap()
        if spec is not None:
            try:
                sources[spec] = Path(spec).read_text(encoding="utf-8")
                sources[str(Path(spec).resolve())] = sources[spec]
            except (OSError, UnicodeDecodeError):
                pass
    text = error.render(sources)  # type: ignore[attr-defined]
    if sys.stderr.isatty():  # coloured only on a terminal: piped and captured text is plain
        from nndsl.editor.terminal import highlight_quoted_lines, wants_colour

        text = highlight_quoted_lines(text) if wants_colour(sys.stderr) else text
    print(text, file=sys.stderr)


def console() -> Any:
    """A rich console; printing to a file or pipe, tables keep their width (no wrapping)."""
    from rich.console import Console

    return Console(width=None if sys.stdout.isatty() else 200)


def box_table(title: str, header: Sequence[str], rows: Sequence[Sequence[str]],
              footer: Sequence[str]) -> str:
    """A title, then a table in box-drawing characters; the last column is right-aligned."""
    widths = [max(len(c) for c in column) for column in zip(header, *rows, footer, strict=True)]

    def line(left: str, fill: str, mid: str, right: str) -> str:
        return left + mid.join(fill * (w + 2) for w in widths) + right

    def cells(values: Sequence[str], bar: str) -> str:
        padded = [v.ljust(w) for v, w in zip(values[:-1], widths, strict=False)]
        padded.append(values[-1].rjust(widths[-1]))
        return bar + bar.join(f" {v} " for v in padded) + bar

    return "\n".join([title, line("┏", "━", "┳", "┓"), cells(header, "┃"),
                      line("┡", "━", "╇", "┩"), *(cells(row, "│") for row in rows),
                      line("├", "─", "┼", "┤"), cells(footer, "│"), line("└", "─", "┴", "┘")])
