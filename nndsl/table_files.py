"""CSV files read as text cells, each row with the file line it starts on: the training data
(`csv(...)`), rows to predict on and labelled rows to score all come through here, so every
error about a cell names the file's own line (the header line counts, a quoted field that
spans lines counts each of them) and, where the line has no quotes, the cell's column.
Columns become numbers on request, so a column that is not fed (a text label) may hold
anything. A header and no rows is 0 rows; callers that need rows say so."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nndsl.errors import NndslError, Span, did_you_mean


def is_number(cell: str) -> bool:
    """A cell holds a finite number (NaN, infinities and blanks are not)."""
    try:
        return math.isfinite(float(cell))
    except ValueError:
        return False


def visible(text: str, limit: int = 40) -> str:
    """A cell as a message can show it: characters a terminal would hide (NUL, other control
    characters) written as escapes, and at most `limit` characters."""
    shown = "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii")
                    for ch in text[:limit])
    return shown + (f"... ({len(text):,} characters)" if len(text) > limit else "")


def shown_cell(cell: str) -> str:
    return f"'{visible(cell)}'" if cell else "an empty cell"


def unknown_label(label: str, labels: list[str], whose: str = "run"
                  ) -> tuple[str, dict[str, str]]:
    """The message, and the expected and received lines, of the error for a class label outside
    `labels` (the run's or the model's stored list)."""
    return (f"{shown_cell(label)} is not one of the {whose}'s {len(labels)} class labels",
            {"expected": ", ".join(labels), "received": shown_cell(label)})


@dataclass
class Table:
    """Cells by row; `names` are the header's (or "0", "1", ... without one)."""

    file: Path
    names: list[str]
    header: bool
    rows: list[list[str]] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)  # the file line each row starts on
    texts: list[str] = field(default_factory=list)  # that line's text, to place a cell
    sep: str = ","

    def column(self, j: int) -> list[str]:
        return [row[j].strip() for row in self.rows]

    def label(self, j: int) -> str:
        """'column 3 ('name')' as messages say it."""
        return f"column {j + 1}" + (f" ('{visible(self.names[j])}')" if self.header else "")

    def numbers(self, columns: list[int]) -> np.ndarray:
        """The columns as float64 [rows, len(columns)]; a cell that is not a finite number is
        an error at its line and column."""
        out = np.zeros((len(self.rows), len(columns)))
        for i, row in enumerate(self.rows):
            for k, j in enumerate(columns):
                cell = row[j].strip()
                if not is_number(cell):
                    raise self.cell_error(i, j, f"{shown_cell(cell)} is not a number",
                                          expected="a finite number", received=shown_cell(cell),
                                          hint="nndsl does not fill in missing values: drop or "
                                          "impute those rows first")
                out[i, k] = float(cell)
        return out

    def cell_span(self, i: int, j: int) -> Span:
        """Where row i's cell j is: its own line (a quoted field before it may span lines), and
        its column when the row's line has no quotes (else the line's start)."""
        record = self.rows[i]
        line = self.lines[i] + sum(cell.count("\n") for cell in record[:j])
        text = self.texts[i]
        column = 1
        if '"' not in text and line == self.lines[i]:
            column = 1 + sum(len(cell) + len(self.sep) for cell in record[:j])
        return Span(str(self.file), line, column, line, column + max(1, len(record[j])))

    def cell_error(self, i: int, j: int, what: str, **details: Any) -> NndslError:
        return NndslError(f"data row {i + 1}, {self.label(j)}: {what}", self.cell_span(i, j),
                          **details)

    def index(self, name: str) -> int:
        """The column called `name` (a header name, or a 0-based number)."""
        if name in self.names:
            return self.names.index(name)
        if name.lstrip("-").isdigit() and -len(self.names) <= int(name) < len(self.names):
            return int(name) % len(self.names)
        raise NndslError(f"{self.file.name} has no column '{name}'",
                         expected=", ".join(self.names), received=name,
                         hint=did_you_mean(name, self.names) or "give a header name or a "
                         "0-based column number")


def read_text(file: Path, what: str = "data file") -> str:
    try:
        return file.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise NndslError(f"{what} '{file}' does not exist",
                         hint="relative paths are relative to the spec file's folder") from None
    except UnicodeDecodeError:
        raise NndslError(f"{what} '{file}' is not UTF-8 text") from None
    except OSError as e:
        raise NndslError(f"cannot read {what} '{file}': {e.strerror}") from None


def _records(reader: Any, file: Path) -> Iterable[tuple[int, list[str]]]:
    """(first line, record) for each record; the reader's own errors (a field over csv's limit
    of 131,072 characters, a newline in an unquoted field) as positioned errors."""
    while True:
        start = reader.line_num + 1
        try:
            record = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            line = reader.line_num
            raise NndslError(f"data file '{file}', line {line}: {e}",
                             Span(str(file), line, 1, line, 2),
                             hint="a CSV of numbers has short fields: check the file and its "
                             "delimiter") from None
        yield start, record


def parse_table(file: Path, text: str, header: bool | None = None, sep: str = ",") -> Table:
    """The file's rows, blank lines skipped. `header=None`: the first row is a header when any
    of its cells is not a number. Every row must have the header's number of fields."""
    lines = text.splitlines()
    table: Table | None = None
    for start, record in _records(csv.reader(io.StringIO(text), delimiter=sep), file):
        if not any(cell.strip() for cell in record):
            continue
        if table is None:
            named = header if header is not None else \
                not all(is_number(c.strip()) for c in record)
            table = Table(file, [c.strip() for c in record] if named else
                          [str(j) for j in range(len(record))], named, sep=sep)
            if named:
                continue
        if len(record) != len(table.names):
            first = "the header" if table.header else "the first row"
            end = len(lines[start - 1]) + 1 if start <= len(lines) else 2
            raise NndslError(
                f"data row {len(table.rows) + 1} has {len(record)} fields, {first} has "
                f"{len(table.names)}", Span(str(file), start, 1, start, end),
                expected=f"{len(table.names)} fields", received=f"{len(record)} fields",
                hint="every row needs the same number of fields")
        table.rows.append(record)
        table.lines.append(start)
        table.texts.append(lines[start - 1] if start <= len(lines) else "")
    return table or Table(file, [], header is not False, sep=sep)


def read_table(path: Path, header: bool | None = None, sep: str = ",") -> Table:
    """A file of rows to predict on or score (see `parse_table`)."""
    return parse_table(path, read_text(path, "file"), header, sep)
