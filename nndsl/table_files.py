"""CSV files of rows to predict on or score: read as text cells, columns turned into numbers on
request, so a column that is not fed (a text label) may hold anything. A file with a header
and no rows is 0 rows, an answer rather than an error. Errors name the file's own line."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nndsl.data.files import _is_number  # the training reader's notion of a number
from nndsl.errors import NndslError, Span


@dataclass
class Table:
    """Cells by row; `names` are the header's (or "0", "1", ... without one)."""

    file: Path
    names: list[str]
    header: bool
    rows: list[list[str]]
    lines: list[int]  # the file line of each row

    def numbers(self, columns: list[int]) -> np.ndarray:
        """The columns as float64 [rows, len(columns)]; a cell that is not a finite number is
        an error at its line and column."""
        out = np.zeros((len(self.rows), len(columns)))
        for i, row in enumerate(self.rows):
            for k, j in enumerate(columns):
                cell = row[j].strip()
                if not _is_number(cell):
                    self._bad_cell(i, j, cell)
                out[i, k] = float(cell)
        return out

    def column(self, j: int) -> list[str]:
        return [row[j].strip() for row in self.rows]

    def index(self, name: str) -> int:
        """The column called `name` (a header name, or a 0-based number)."""
        if name in self.names:
            return self.names.index(name)
        if name.lstrip("-").isdigit() and -len(self.names) <= int(name) < len(self.names):
            return int(name) % len(self.names)
        from nndsl.errors import did_you_mean

        raise NndslError(f"{self.file.name} has no column '{name}'",
                         expected=", ".join(self.names), received=name,
                         hint=did_you_mean(name, self.names) or "give a header name or a "
                         "0-based column number")

    def _bad_cell(self, i: int, j: int, cell: str) -> None:
        line = self.lines[i]
        column = f"column {j + 1}" + (f" ('{self.names[j]}')" if self.header else "")
        shown = f"'{cell}'" if cell else "an empty cell"
        raise NndslError(f"{column}: {shown} is not a number",
                         Span(str(self.file), line, 1, line, 2),
                         expected="a finite number", received=shown,
                         hint="nndsl does not fill in missing values or encode text here")


def read_table(path: Path) -> Table:
    """The file's rows; the first row is a header when any of its cells is not a number."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise NndslError(f"{path} is not UTF-8 text") from None
    except OSError as e:
        raise NndslError(f"cannot read {path}: {e.strerror}") from None
    reader = csv.reader(io.StringIO(text))
    names: list[str] | None = None
    header = False
    rows: list[list[str]] = []
    lines: list[int] = []
    for record in reader:
        if not any(cell.strip() for cell in record):
            continue
        if names is None:
            header = not all(_is_number(c.strip()) for c in record)
            names = [c.strip() for c in record] if header else [str(j) for j in
                                                                 range(len(record))]
            if header:
                continue
        if len(record) != len(names):
            first = "the header" if header else "the first row"
            raise NndslError(f"this row has {len(record)} fields, {first} has {len(names)}",
                             Span(str(path), reader.line_num, 1, reader.line_num, 2),
                             expected=f"{len(names)} fields", received=f"{len(record)} fields")
        rows.append(record)
        lines.append(reader.line_num)
    return Table(path, names or [], header, rows, lines)
